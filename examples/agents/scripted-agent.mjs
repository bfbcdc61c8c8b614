// A scripted agent for the `command` harness: reads one task as JSON on stdin and answers with JSON that
// fits the task's output schema. Stands in for an agent CLI in the examples and tests.
import { readFileSync, writeFileSync } from "node:fs";

const task = JSON.parse(readFileSync(0, "utf8"));

function sample(schema, hint) {
  if (!schema || typeof schema !== "object") return hint;
  switch (schema.type) {
    case "object": {
      const out = {};
      for (const [key, sub] of Object.entries(schema.properties ?? {})) out[key] = sample(sub, `${hint}.${key}`);
      return out;
    }
    case "array":
      return [sample(schema.items, `${hint}[0]`)];
    case "boolean":
      return true;
    case "number":
    case "integer":
      return hint.length;
    default:
      return schema.enum ? schema.enum[0] : `${hint}`;
  }
}

const agent = process.env.AGENT_NAME ?? "scripted";
const answer = task.outputSchema
  ? sample(task.outputSchema, task.title ?? task.taskId)
  : { agent, summary: `did: ${task.title ?? task.taskId}`, promptChars: task.prompt.length };
process.stderr.write(`scripted agent: ${task.effectId} (${task.taskId})\n`);
// What the turn cost, as an agent CLI reports it (AGENT_COST_USD set in tutti.toml).
if (process.env.AGENT_COST_USD && process.env.TUTTI_USAGE_FILE) {
  const usage = { input_tokens: task.prompt.length, output_tokens: 50, cost_usd: Number(process.env.AGENT_COST_USD) };
  writeFileSync(process.env.TUTTI_USAGE_FILE, JSON.stringify(usage));
}
console.log(JSON.stringify(answer));
