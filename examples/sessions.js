// Persistent members: each member's second task resumes the harness session of its first, so the agent
// remembers round 1. member.session holds the id once the first turn has run.
import { defineTask } from "tutti";

export const discuss = defineTask("discuss", (args) => ({
  kind: "agent",
  title: `round ${args.round}`,
  agent: { prompt: `Round ${args.round}: ${args.topic}` },
}));

export async function process(inputs, ctx) {
  const topic = inputs?.topic ?? "the retry policy";
  const panel = ctx.group("panel", { members: ["ann", "ben", "cy"], harness: ["memory-a", "memory-b", "memory-c"] });
  const first = await panel.all((m) => m.task(discuss, { round: 1, topic }));
  const sessions = panel.members.map((m) => m.session);
  if (inputs?.pause) await ctx.breakpoint({ question: "Go on to round 2?" });
  const second = await panel.all((m) => m.task(discuss, { round: 2, topic }));
  return {
    sameSession: second.map((r, i) => r.session === first[i].session && r.session === sessions[i]),
    remembered: second.map((r) => r.remembered),
    agents: second.map((r) => r.agent),
  };
}
