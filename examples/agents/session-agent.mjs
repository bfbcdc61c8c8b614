// A scripted agent with real sessions, for the `command` harness: each turn is appended to a session kept
// in .sessions/ID.json; a turn that gets `session` in its input resumes that conversation, and the agent
// reports its session id through $TUTTI_SESSION_FILE. Its answer shows what it remembers.
import { readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { randomUUID } from "node:crypto";

const task = JSON.parse(readFileSync(0, "utf8"));
const dir = process.env.SESSIONS_DIR ?? ".sessions";
mkdirSync(dir, { recursive: true });
const id = task.session ?? `${process.env.AGENT_NAME ?? "agent"}-${randomUUID()}`;
const file = `${dir}/${id}.json`;
const history = existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) : [];
const remembered = history.map((turn) => turn.prompt);
history.push({ prompt: task.prompt, effect: task.effectId });
writeFileSync(file, JSON.stringify(history));
if (process.env.TUTTI_SESSION_FILE) writeFileSync(process.env.TUTTI_SESSION_FILE, id);
console.log(JSON.stringify({ agent: process.env.AGENT_NAME ?? "agent", session: id, turn: history.length, remembered }));
