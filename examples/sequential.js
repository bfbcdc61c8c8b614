// A sequential chain: each step's output feeds the next one.
import { defineTask } from "tutti";

export const step = defineTask("step", (args) => ({
  kind: "shell",
  title: `step ${args.n}`,
  shell: { command: `echo $(( ${args.value} * 2 ))` },
}));

export async function process(inputs, ctx) {
  let value = inputs?.start ?? 1;
  const steps = inputs?.steps ?? 5;
  for (let n = 1; n <= steps; n++) {
    const r = await ctx.task(step, { n, value });
    value = Number(r.stdout.trim());
    ctx.log(`step ${n}: ${value}`);
  }
  return { value, steps };
}
