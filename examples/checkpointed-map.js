// Fan-out / fan-in over a pool of members: each item goes to a free member, partial results are journaled
// every 5 completions (after a crash, finished items are not redone), and `completion` can end the fan-in
// early — here as soon as 8 items succeed; the rest are cancelled and their process trees killed.
import { defineTask } from "tutti";

export const check = defineTask("check", (args) => ({
  kind: "shell",
  title: `check ${args.item}`,
  shell: { command: `sleep ${args.seconds}; echo ${args.item}` },
}));

export async function process(inputs, ctx) {
  const pool = ctx.group("pool", { members: inputs?.members ?? 4 });
  const items = Array.from({ length: inputs?.items ?? 12 }, (_, i) => i + 1);
  const all = await pool.map(items, (item, m) => m.task(check, { item, seconds: 0.05 }), { checkpointEvery: 5 });
  const early = await pool.map(items, (item, m) => m.task(check, { item, seconds: item <= 8 ? 0.05 : 30 }), {
    completion: { minSuccessful: 8 },
  });
  return {
    all: all.map((r) => Number(r.stdout.trim())),
    early: { succeeded: early.succeeded, cancelled: early.cancelled },
  };
}
