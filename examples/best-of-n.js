// Best of n: the same task goes at once to agents on three different CLIs (claude, codex, gemini), members of
// one group; then a fourth member, the judge, reads their answers and picks the best one, with its reasons.
// Each CLI needs its API key, or a `base_url` in its [harness.NAME] table (see docs/harnesses.md):
//   tutti --home examples run examples/best-of-n.js --inputs '{"task": "Name a tool that runs agents side by side."}'
import { defineTask } from "tutti";

export const solve = defineTask("solve", (args) => ({
  kind: "agent",
  title: `solve on ${args.cli}`,
  agent: { prompt: args.task },
}));

export const judge = defineTask("judge", (args) => ({
  kind: "agent",
  title: "judge the answers",
  agent: {
    prompt: {
      role: "impartial reviewer",
      task: `Pick the best answer to this task: ${args.task}`,
      context: args.candidates,
      instructions: [
        "Read every answer; the keys are who wrote them.",
        "Pick the one that answers the task best: correct first, then clear, then short.",
        "Give your reasons in two or three sentences.",
      ],
    },
    outputSchema: {
      type: "object",
      required: ["best", "reasons"],
      properties: { best: { enum: Object.keys(args.candidates) }, reasons: { type: "string" } },
    },
  },
}));

export async function process(inputs, ctx) {
  const task = inputs?.task ?? "Propose a name for a tool that runs several coding agents side by side, and say why.";
  const clis = inputs?.clis ?? ["claude", "codex", "gemini"];
  // The judge is one more member; by default on the first CLI, in a session of its own.
  const panel = ctx.group("best-of-n", { members: [...clis, "judge"], harness: [...clis, inputs?.judge ?? clis[0]] });
  const contestants = panel.members.filter((m) => m.name !== "judge");
  const answers = await ctx.parallel.all(contestants.map((m) => m.task(solve, { task, cli: m.name })));
  const candidates = Object.fromEntries(contestants.map((m, i) => [m.name, answers[i].text]));
  const verdict = await panel.member("judge").task(judge, { task, candidates });
  panel.close();
  return { candidates, best: verdict.best, reasons: verdict.reasons, answer: candidates[verdict.best] };
}
