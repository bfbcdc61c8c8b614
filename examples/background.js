// Background effects and races: ctx.spawn starts an effect and lets the process go on; ctx.race takes the
// first to finish and cancels the others (their process trees are killed and journaled as cancelled).
import { defineTask } from "tutti";

export const nap = defineTask("nap", (args) => ({
  kind: "shell",
  title: args.name,
  shell: { command: `sleep ${args.seconds}; echo ${args.name}` },
}));

export async function process(inputs, ctx) {
  const indexer = ctx.spawn(nap, { name: "index", seconds: 0.6 });
  const lint = await ctx.task(nap, { name: "lint", seconds: 0.2 });
  const test = await ctx.task(nap, { name: "test", seconds: 0.2 });
  const mirror = await ctx.race([
    ctx.task(nap, { name: "mirror-eu", seconds: 0.1 }),
    ctx.task(nap, { name: "mirror-us", seconds: 30 }),
  ]);
  return { foreground: [lint.stdout.trim(), test.stdout.trim()], background: (await indexer).stdout.trim(), mirror: mirror.stdout.trim() };
}
