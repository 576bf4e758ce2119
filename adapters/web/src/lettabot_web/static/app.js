// lettabot web chat: one conversation per browser tab, live over a WebSocket.
// No build step, no dependencies. All text is put into the page with textContent (never
// innerHTML), so nothing a model or user writes can become markup or script.
"use strict";

const $ = (id) => document.getElementById(id);
const log = $("log"), input = $("input"), typingRow = $("typing");
const nodes = new Map(); // item id -> element
let typingTimer = null;

function newTabId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return "t" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
// A tab keeps its id (sessionStorage) across reloads. A duplicated tab starts with a copy
// of it: before connecting, ask the other open pages whether one already uses the id, and
// take a new one (a new conversation) if so.
const tabs = "BroadcastChannel" in window ? new BroadcastChannel("lettabot-tabs") : null;
let TAB = sessionStorage.getItem("lettabot-tab") || newTabId();
let claimed = false;
if (tabs) {
  tabs.onmessage = (e) => {
    const msg = e.data || {};
    if (msg.ask === TAB && claimed) tabs.postMessage({ taken: TAB });
    else if (msg.taken === TAB && !claimed) TAB = newTabId();
  };
}

function claimTab() {
  return new Promise((resolve) => {
    const done = () => {
      claimed = true;
      sessionStorage.setItem("lettabot-tab", TAB);
      document.body.dataset.tab = TAB;
      resolve(TAB);
    };
    if (!tabs) return done();
    tabs.postMessage({ ask: TAB });
    setTimeout(done, 250);
  });
}

// ---------- markdown (safe: builds DOM nodes from text) ----------

const INLINE = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\*[^*\s][^*\n]*\*)|\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)|(https?:\/\/[^\s<>)]+)/g;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function link(href, text) {
  const a = el("a", null, text);
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  return a;
}

function inline(parent, text) {
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) parent.append(text.slice(last, m.index));
    if (m[1]) parent.append(el("code", null, m[1].slice(1, -1)));
    else if (m[2]) parent.append(el("strong", null, m[2].slice(2, -2)));
    else if (m[3]) parent.append(el("em", null, m[3].slice(1, -1)));
    else if (m[4]) parent.append(link(m[5], m[4]));
    else parent.append(link(m[6], m[6]));
    last = m.index + m[0].length;
  }
  if (last < text.length) parent.append(text.slice(last));
}

function renderMarkdown(src) {
  const root = document.createDocumentFragment();
  const lines = src.replace(/\r\n/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*(```|~~~)\s*([\w+-]*)/);
    if (fence) { // a code block; an unclosed fence (still streaming) runs to the end
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i++;
      const pre = el("pre");
      const code = el("code", null, body.join("\n"));
      if (fence[2]) code.dataset.lang = fence[2];
      pre.append(code);
      root.append(pre);
      continue;
    }
    const bullet = /^\s*[-*+]\s+/, numbered = /^\s*\d+[.)]\s+/;
    if (bullet.test(line) || numbered.test(line)) {
      const kind = bullet.test(line) ? bullet : numbered;
      const list = el(kind === bullet ? "ul" : "ol");
      while (i < lines.length && kind.test(lines[i])) {
        const li = el("li");
        inline(li, lines[i].replace(kind, ""));
        list.append(li);
        i++;
      }
      root.append(list);
      continue;
    }
    if (!line.trim()) { i++; continue; }
    const para = [];
    while (i < lines.length && lines[i].trim() && !/^\s*(```|~~~)/.test(lines[i])
           && !bullet.test(lines[i]) && !numbered.test(lines[i])) para.push(lines[i++]);
    const p = el("p");
    para.forEach((l, n) => {
      const heading = l.match(/^#{1,6}\s+(.*)$/);
      if (heading) { const s = el("strong"); inline(s, heading[1]); p.append(s); }
      else inline(p, l);
      if (n < para.length - 1) p.append(el("br"));
    });
    root.append(p);
  }
  return root;
}

// ---------- rendering items ----------

function renderMessage(item) {
  const row = el("div", "msg " + item.kind);
  const bubble = el("div", "bubble");
  if (item.kind === "user") bubble.textContent = item.text;
  else bubble.append(renderMarkdown(item.text));
  if (item.file) bubble.append(renderFile(item.file));
  row.append(bubble);
  if (item.reactions && item.reactions.length) row.append(el("div", "reactions", item.reactions.join(" ")));
  if (item.kind === "bot" && item.feedback) row.append(renderFeedback(item));
  return row;
}

// A file the agent sent: a download link (the server always serves it as an attachment).
function renderFile(file) {
  const a = el("a", "file", "📎 " + file.name + " (" + file.size.toLocaleString() + " bytes)");
  a.href = "/api/file/" + encodeURIComponent(file.id) + "?tab=" + encodeURIComponent(TAB);
  a.setAttribute("download", file.name);
  return a;
}

// 👍 / 👎 under a final answer; the latest click counts and is shown.
function renderFeedback(item) {
  const bar = el("div", "feedback");
  for (const [rating, label, title] of [["good", "👍", "Good answer"], ["bad", "👎", "Bad answer"]]) {
    const b = el("button", "fb" + (item.feedback === rating ? " chosen" : ""), label);
    b.type = "button";
    b.title = title;
    b.dataset.rating = rating;
    b.addEventListener("click", async () => {
      try { await post("/api/feedback", { tab: TAB, item: item.id, rating }); }
      catch (e) { toast("Feedback not saved: " + e.message, "error"); }
    });
    bar.append(b);
  }
  return bar;
}

function renderApproval(item) {
  const card = el("div", "card");
  card.dataset.requestId = item.request_id;
  card.append(el("div", "title", "Approval needed: " + item.tool));
  if (item.input) card.append(el("pre", "input", item.input));
  if (item.diff) {
    const d = el("details");
    d.append(el("summary", null, "Show the change"));
    d.append(el("pre", "diff", item.diff));
    card.append(d);
  }
  if (item.status) {
    const s = el("div", "status", item.status);
    card.append(s);
    const low = item.status.toLowerCase();
    card.classList.add(/deni|reject|timed out|expired|cancel/.test(low) ? "denied" : "approved");
    return card;
  }
  const actions = el("div", "actions");
  const button = (label, decision, cls) => {
    const b = el("button", cls, label);
    b.type = "button";
    b.dataset.decision = decision;
    b.addEventListener("click", () => decide(item.request_id, decision, actions));
    actions.append(b);
  };
  button("Approve", "approve", "approve");
  button("Deny", "deny", "deny");
  if (item.allow_always !== false) button("Always allow", "always", "always secondary");
  card.append(actions);
  if (item.allow_always !== false && item.covers) {
    card.append(el("div", "covers", "Always allow covers: " + item.covers));
  }
  return card;
}

function renderItem(item) {
  let node;
  if (item.kind === "approval") { node = el("div", "msg bot"); node.append(renderApproval(item)); }
  else if (item.kind === "system" && item.reset) node = el("div", "system reset", item.text);
  else if (item.kind === "system") { node = el("div", "system note"); node.append(renderMarkdown(item.text)); }
  else node = renderMessage(item);
  node.dataset.id = item.id;
  node.dataset.kind = item.kind;
  return node;
}

function upsert(item) {
  const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  const node = renderItem(item);
  const old = nodes.get(item.id);
  if (old) {
    if (old.classList.contains("queued")) node.classList.add("queued");
    old.replaceWith(node);
  } else {
    // Sent while the agent works (or waits for a click): it waits its turn (see "done").
    if (item.kind === "user" && !item.restored && (busy() || waitingForClick())) {
      node.classList.add("queued");
    }
    log.append(node);
  }
  nodes.set(item.id, node);
  $("empty").hidden = true;
  if (stick || !old) log.scrollTop = log.scrollHeight;
  showState();
}

function busy() { return document.body.dataset.busy === "1"; }
function waitingForClick() { return log.querySelector(".card:not(.approved):not(.denied)") !== null; }

// "working…" only while the agent works; while a card waits for a click, say that instead.
function showState() {
  const waiting = waitingForClick();
  $("waiting").hidden = !waiting;
  typingRow.hidden = waiting || !busy();
}

function clearLog() {
  for (const node of nodes.values()) node.remove();
  nodes.clear();
  $("empty").hidden = false;
  showState();
}

// The runtime repeats "typing" every few seconds while a turn runs and sends "done" at its end.
function setTyping(on) {
  clearTimeout(typingTimer);
  document.body.dataset.busy = on ? "1" : "";
  if (on) typingTimer = setTimeout(() => setTyping(false), 10000);
  showState();
}

function toast(text, kind) {
  const t = el("div", "toast" + (kind ? " " + kind : ""), text);
  $("toasts").append(t);
  setTimeout(() => t.remove(), 8000);
}

// ---------- talking to the server ----------

async function post(path, payload) {
  const r = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload),
    credentials: "same-origin",
  });
  let data = {};
  try { data = await r.json(); } catch (e) { /* not JSON */ }
  if (!r.ok) throw new Error(data.error || (r.status + " " + r.statusText));
  return data;
}

// Files picked with 📎 are uploaded at once and go with the next message.
let attached = [];
function showAttached() {
  const box = $("attached");
  box.replaceChildren(...attached.map((f) => el("span", "chip", "📎 " + f.name)));
}
$("file").addEventListener("change", async (e) => {
  for (const file of e.target.files) {
    if (file.size > 10_000_000) { toast(file.name + " is over 10 MB", "error"); continue; }
    const bytes = new Uint8Array(await file.arrayBuffer());
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    try {
      const r = await post("/api/upload", { tab: TAB, name: file.name, type: file.type, data: btoa(binary) });
      attached.push({ id: r.id, name: r.name });
      showAttached();
    } catch (err) { toast("Upload failed: " + err.message, "error"); }
  }
  e.target.value = "";
});

async function send(text) {
  const id = newTabId();
  const files = attached.map((f) => f.id);
  attached = [];
  showAttached();
  try {
    await post("/api/send", { tab: TAB, text, id, files });
  } catch (e) {
    toast("Not sent: " + e.message, "error");
    if (!input.value) input.value = text;
  }
}

async function decide(requestId, decision, actions) {
  for (const b of actions.querySelectorAll("button")) b.disabled = true;
  try {
    const outcome = await post("/api/decide", { request_id: requestId, decision });
    if (outcome.status !== "decided") {
      toast(outcome.message, "error");
      if (outcome.status === "not_authorized") for (const b of actions.querySelectorAll("button")) b.disabled = false;
    }
  } catch (e) {
    toast("Decision failed: " + e.message, "error");
    for (const b of actions.querySelectorAll("button")) b.disabled = false;
  }
}

let retryDelay = 500;
let socket = null, retryTimer = null;

function connect() {
  const conn = $("conn");
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + "/api/live?tab=" + encodeURIComponent(TAB));
  socket = ws;
  ws.onopen = () => {
    retryDelay = 500;
    conn.textContent = "connected";
    conn.classList.add("live");
  };
  ws.onclose = () => {
    if (ws !== socket) return;  // left for another conversation
    conn.textContent = "reconnecting…";
    conn.classList.remove("live");
    setTyping(false);
    retryTimer = setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 5000);
  };
  ws.onmessage = (m) => {
    if (ws !== socket) return;
    const ev = JSON.parse(m.data);
    switch (ev.type) {
      case "hello":
        demo = ev.demo;
        $("demo-badge").hidden = !ev.demo;
        $("demo-banner").hidden = !ev.demo || bannerDismissed();
        document.title = ev.demo ? "lettabot (demo)" : "lettabot";
        break;
      case "snapshot": clearLog(); ev.items.forEach(upsert); break;
      case "item": upsert(ev.item); break;
      case "clear": clearLog(); break;
      case "typing": setTyping(true); break;
      case "done": {  // a turn ended: the oldest queued message's turn starts now
        const next = log.querySelector(".msg.user.queued");
        if (next) next.classList.remove("queued");
        setTyping(false);
        break;
      }
      case "notice": toast(ev.text); break;
    }
  };
}

// ---------- the composer ----------

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = input.value.trim();
  if (!text && !attached.length) return;
  input.value = "";
  autosize();
  send(text);
});
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});
function autosize() {
  input.style.height = "auto";
  input.style.height = Math.min(input.scrollHeight + 2, 200) + "px";
}
input.addEventListener("input", autosize);
if (window.matchMedia("(max-width: 600px)").matches) input.placeholder = "Message lettabot";  // a phone: one line
$("stop").addEventListener("click", async () => {
  try { const r = await post("/api/stop", { tab: TAB }); if (r && r.text) toast(r.text); }
  catch (e) { toast("Stop failed: " + e.message, "error"); }
});
// ---------- conversations: each is a tab id (a scope), listed by the server ----------

// Show another conversation in this tab: its id becomes the tab's, and the page reconnects.
function switchTo(tab) {
  closeList();
  if (tab === TAB) return;
  TAB = tab;
  sessionStorage.setItem("lettabot-tab", TAB);
  document.body.dataset.tab = TAB;
  attached = [];
  showAttached();
  clearLog();
  setTyping(false);
  clearTimeout(retryTimer);
  const old = socket;
  socket = null;
  if (old) old.close();
  connect();
}

// A new conversation is a new tab id: the one left stays in the list, to be reopened.
async function newConversation() {
  const tab = newTabId();
  try { await post("/api/new", { tab }); }
  catch (e) { toast("New conversation failed: " + e.message, "error"); return; }
  switchTo(tab);
  input.focus();
}

const list = $("convs");
function closeList() {
  list.hidden = true;
  $("convs-toggle").setAttribute("aria-expanded", "false");
}
async function openList() {
  list.hidden = false;
  $("convs-toggle").setAttribute("aria-expanded", "true");
  await loadList();
}

async function loadList() {
  let data;
  try {
    const r = await fetch("/api/conversations", { credentials: "same-origin" });
    if (!r.ok) throw new Error(r.status + " " + r.statusText);
    data = await r.json();
  } catch (e) { toast("Could not load the conversations: " + e.message, "error"); return; }
  const rows = data.conversations.map(renderConversation);
  if (!rows.length) rows.push(el("li", "none", "No conversations yet: what you write here starts one."));
  $("conv-list").replaceChildren(...rows);
}

function renderConversation(c) {
  const li = el("li", "conv" + (c.tab === TAB ? " current" : ""));
  li.dataset.tab = c.tab;
  const open = el("button", "open", c.title);
  open.type = "button";
  open.title = c.updated ? "Last used " + new Date(c.updated * 1000).toLocaleString() : "";
  open.addEventListener("click", () => switchTo(c.tab));
  const rename = el("button", "rename icon", "✎");
  rename.type = "button";
  rename.title = "Rename";
  rename.setAttribute("aria-label", "Rename " + c.title);
  rename.addEventListener("click", () => editTitle(li, open, c));
  li.append(open, rename);
  return li;
}

function editTitle(li, open, c) {
  const field = el("input", "title-edit");
  field.value = c.title;
  field.maxLength = 80;
  field.setAttribute("aria-label", "New name");
  let done = false;
  field.addEventListener("keydown", async (e) => {
    if (e.key === "Escape") { done = true; loadList(); }
    if (e.key !== "Enter" || done) return;
    e.preventDefault();
    done = true;
    const title = field.value.trim();
    if (title && title !== c.title) {
      try { await post("/api/conversations/rename", { tab: c.tab, title }); }
      catch (err) { toast("Not renamed: " + err.message, "error"); }
    }
    loadList();
  });
  open.replaceWith(field);
  field.focus();
  field.select();
}

$("convs-toggle").addEventListener("click", () => (list.hidden ? openList() : closeList()));
$("convs-close").addEventListener("click", closeList);
$("convs-new").addEventListener("click", newConversation);
$("reset").addEventListener("click", newConversation);
document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !list.hidden) closeList(); });

// ---------- the demo note: dismissed once, for this browser; the DEMO badge shows it again ----------

let demo = false;
function bannerDismissed() {
  try { return localStorage.getItem("lettabot-demo-note") === "hidden"; } catch (e) { return false; }
}
$("demo-dismiss").addEventListener("click", () => {
  try { localStorage.setItem("lettabot-demo-note", "hidden"); } catch (e) { /* private mode */ }
  $("demo-banner").hidden = true;
});
$("demo-badge").addEventListener("click", () => {
  try { localStorage.removeItem("lettabot-demo-note"); } catch (e) { /* private mode */ }
  $("demo-banner").hidden = !demo;
});
for (const chip of document.querySelectorAll("[data-try]")) {
  chip.addEventListener("click", () => { input.value = chip.dataset.try; autosize(); input.focus(); });
}

claimTab().then(connect);
input.focus();
