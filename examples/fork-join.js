// Fork-join: values the parent computed before the fork are plain JavaScript values, captured by the
// branches' closures — each branch and each group member reads them; the join collects what they made.
import { defineTask } from "tutti";

export const plan = defineTask("plan", () => ({ kind: "shell", title: "plan", shell: { command: "echo alpha beta gamma" } }));
export const build = defineTask("build", (args) => ({
  kind: "shell",
  title: `build ${args.part}`,
  shell: { command: `echo ${args.part}-built-with-${args.toolchain}` },
}));

export async function process(inputs, ctx) {
  const parts = (await ctx.task(plan, {})).stdout.trim().split(" ");
  const toolchain = inputs?.toolchain ?? "stable"; // computed before the fork, read by every branch
  const built = await ctx.parallel.map(parts, (part) => ctx.task(build, { part, toolchain }));
  const team = ctx.group("builders", { members: parts });
  const again = await team.all((m) => m.task(build, { part: m.name, toolchain }));
  return { branches: built.map((r) => r.stdout.trim()), members: again.map((r) => r.stdout.trim()) };
}
