"use strict";
// lettabot's start gate, preloaded into a Letta CLI (NODE_OPTIONS=--require) that the
// subprocess transport starts. The CLI boots (the costly part: loading its bundle) at
// once, but its first touch of the Letta home (~/.letta, the local backend folder) waits
// here until lettabot holds the start lock and writes one byte to the pipe
// LETTABOT_START_GATE_FD; end of file there (lettabot gave up) ends the process. The
// gate then takes itself out (originals back, NODE_OPTIONS cleaned, so the CLI's own
// child processes never see it). See start_lock.py.
const fs = require("node:fs");
const fsp = require("node:fs/promises");
const os = require("node:os");
const path = require("node:path");
const mod = require("node:module");
const fd = Number(process.env.LETTABOT_START_GATE_FD);
const me = process.env.LETTABOT_START_GATE_REQUIRE || "";
delete process.env.LETTABOT_START_GATE_FD;
delete process.env.LETTABOT_START_GATE_REQUIRE;
if (process.env.NODE_OPTIONS !== undefined) {
  const rest = process.env.NODE_OPTIONS.replace(me, "").trim();
  if (rest) process.env.NODE_OPTIONS = rest; else delete process.env.NODE_OPTIONS;
}
const home = process.env.HOME || os.homedir();
const roots = [path.resolve(home, ".letta")];
if (process.env.LETTA_LOCAL_BACKEND_DIR) roots.push(path.resolve(process.env.LETTA_LOCAL_BACKEND_DIR));
const originals = [];
let open = !Number.isInteger(fd) || fd < 0;
function inHome(p) {
  if (typeof p !== "string" && !(p instanceof URL) && !Buffer.isBuffer(p)) return false;
  let s;
  try { s = path.resolve(p instanceof URL ? p.pathname : String(p)); } catch { return false; }
  return roots.some((r) => s === r || s.startsWith(r + path.sep));
}
function gate() {
  open = true;
  const buf = Buffer.alloc(1);
  const nap = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    let n = 0;
    try { n = fs.readSync(fd, buf, 0, 1, null); }
    catch (e) { if (e.code === "EAGAIN") { Atomics.wait(nap, 0, 0, 5); continue; } }
    if (n === 1) break;
    process.exit(75);  // lettabot closed the gate without opening it
  }
  try { fs.closeSync(fd); } catch {}
  for (const [obj, name, orig] of originals) obj[name] = orig;
  mod.syncBuiltinESMExports();
}
function wrap(obj, name) {
  const orig = obj[name];
  if (typeof orig !== "function") return;
  originals.push([obj, name, orig]);
  const wrapper = function (p, ...rest) {
    if (!open && inHome(p)) gate();
    return orig.call(this, p, ...rest);
  };
  for (const key of Reflect.ownKeys(orig)) {  // realpathSync.native, promisify.custom, ...
    if (key !== "length" && key !== "name" && key !== "prototype") {
      Object.defineProperty(wrapper, key, Object.getOwnPropertyDescriptor(orig, key));
    }
  }
  obj[name] = wrapper;
}
if (!open) {
  for (const name of ["readFileSync", "writeFileSync", "existsSync", "statSync", "lstatSync",
    "openSync", "mkdirSync", "readdirSync", "accessSync", "renameSync", "rmSync", "unlinkSync",
    "appendFileSync", "copyFileSync", "readFile", "writeFile", "stat", "lstat", "open", "mkdir",
    "readdir", "access", "rename", "rm", "unlink", "appendFile", "exists", "createReadStream",
    "createWriteStream", "watch", "realpathSync"]) wrap(fs, name);
  for (const name of ["readFile", "writeFile", "stat", "lstat", "open", "mkdir", "readdir",
    "access", "rename", "rm", "unlink", "appendFile", "realpath"]) wrap(fsp, name);
  mod.syncBuiltinESMExports();
}
