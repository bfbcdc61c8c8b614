// Branches that await and then request more effects: each branch runs its own chain while the others run
// theirs, and new requests follow completions in whatever order they happen. Identities stay per branch
// (root/parallel:0/0, root/parallel:0/1, ...), so the run replays exactly after a crash.
import { defineTask } from "tutti";

export const stage = defineTask("stage", (args) => ({
  kind: "shell",
  title: `${args.branch}/${args.stage}`,
  shell: { command: `sleep ${args.delay}; echo ${args.branch}-${args.stage}` },
}));

export async function process(inputs, ctx) {
  const branches = inputs?.branches ?? ["a", "b", "c"];
  const stages = inputs?.stages ?? 3;
  const chains = await ctx.parallel.all(
    branches.map((branch, i) => async () => {
      const seen = [];
      for (let s = 0; s < stages; s++) {
        // Different delays per branch make the completions interleave.
        const r = await ctx.task(stage, { branch, stage: s, delay: ((i + s) % 3) * 0.05 });
        seen.push(r.stdout.trim());
      }
      return seen;
    }),
  );
  const summary = await ctx.task(stage, { branch: "join", stage: chains.flat().length, delay: 0 });
  return { chains, joined: summary.stdout.trim() };
}
