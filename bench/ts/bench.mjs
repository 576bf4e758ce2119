// The TypeScript Letta Code SDK's side of bench/ts_sdk.py: one phase per run, JSON on stdout.
//   node bench.mjs <phase> <agent_id> <count>
// phases: warm (count turns on one session, after one warm-up), prompt (count sequential
// prompt() calls; the first is the cold start), resume (count default-conversation resumes,
// one turn each), concurrent (count sessions at once, one turn each).
// The CLI is $LETTA_CLI_PATH (the same letta.js lettabot runs), spawned by the SDK with `node`.
import { createSession, prompt, resumeSession } from "@letta-ai/letta-code-sdk";

const [phase, agentId, countText] = process.argv.slice(2);
const count = Number(countText);
const now = () => performance.now();
const out = { phase, node: process.version, times: [] };

function check(result, text) {
  if (!result.success || result.result !== `You said: ${text}`) {
    throw new Error(`unexpected answer to ${text}: ${JSON.stringify(result).slice(0, 500)}`);
  }
}

if (phase === "warm") {
  const session = createSession(agentId);
  try {
    check(await session.runTurn("warm up"), "warm up");
    for (let n = 0; n < count; n++) {
      const start = now();
      const result = await session.runTurn(`turn ${n}`);
      out.times.push(now() - start);
      check(result, `turn ${n}`);
    }
  } finally {
    session.close();
  }
} else if (phase === "prompt") {
  for (let n = 0; n < count; n++) {
    const start = now();
    const result = await prompt(`prompt ${n}`, agentId);
    out.times.push(now() - start);
    check(result, `prompt ${n}`);
  }
} else if (phase === "resume") {
  for (let n = 0; n < count; n++) {
    const start = now();
    const session = resumeSession(agentId);
    try {
      const result = await session.runTurn(`resume ${n}`);
      out.times.push(now() - start);
      check(result, `resume ${n}`);
    } finally {
      session.close();
    }
  }
} else if (phase === "concurrent") {
  const start = now();
  const sessions = Array.from({ length: count }, () => createSession(agentId));
  const settled = await Promise.allSettled(sessions.map(async (session, i) => {
    const result = await session.runTurn(`token-${i}-xyz`);
    return { conversation: session.conversationId, answer: result.result, ok: result.success };
  }));
  out.wall = now() - start;
  out.sessions = settled.map((s, i) => s.status === "fulfilled"
    ? { ...s.value, expected: `You said: token-${i}-xyz` }
    : { error: String(s.reason).slice(0, 300) });
  for (const session of sessions) session.close();
} else {
  throw new Error(`unknown phase ${phase}`);
}
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(0);
