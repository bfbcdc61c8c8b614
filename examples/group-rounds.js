// A named group whose members sit on three different harnesses and work two rounds. Member identities
// (group:reviewers/alice, ...) come from their names: the same in every round, after a restart and in the
// journal. Each member's tasks run in its own scope and on its own harness.
import { defineTask } from "tutti";

export const review = defineTask("review", (args) => ({
  kind: "agent",
  title: `review round ${args.round}`,
  agent: { prompt: { role: "reviewer", task: `Review ${args.file}, round ${args.round}`, context: args.notes ?? null } },
}));

export async function process(inputs, ctx) {
  const file = inputs?.file ?? "src/parser.rs";
  const team = ctx.group("reviewers", {
    members: ["alice", "bob", "carol"],
    harness: ["scripted", "scripted-b", "scripted-c"],
  });
  const first = await team.all((m) => m.task(review, { file, round: 1 }));
  // Round 2 sees what everyone said in round 1.
  const notes = first.map((r, i) => `${team.members[i].name}: ${r.summary}`);
  const second = await team.all((m) => m.task(review, { file, round: 2, notes }));
  return { round1: first.map((r) => r.agent), round2: second.map((r) => r.agent) };
}
