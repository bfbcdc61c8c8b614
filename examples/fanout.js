// A parallel fan-out: ctx.parallel.map over N shell tasks, at most `maxConcurrency` at once, then a fan-in.
import { defineTask } from "tutti";

export const work = defineTask("work", (args) => ({
  kind: "shell",
  title: `item ${args.item}`,
  shell: { command: `sleep ${args.seconds}; echo $(( ${args.item} * ${args.item} ))` },
}));

export async function process(inputs, ctx) {
  const n = inputs?.n ?? 24;
  const items = Array.from({ length: n }, (_, i) => i + 1);
  const results = await ctx.parallel.map(items, (item) => ctx.task(work, { item, seconds: inputs?.seconds ?? 0.2 }), {
    maxConcurrency: inputs?.maxConcurrency ?? 6,
  });
  const squares = results.map((r) => Number(r.stdout.trim()));
  return { count: squares.length, sum: squares.reduce((a, b) => a + b, 0) };
}
