// A human approval in the middle of a run. Interactive runs wait for `tutti approve RUN EFFECT`
// (or `--reject`); `--non-interactive` approves by itself.
import { defineTask } from "tutti";

export const build = defineTask("build", () => ({ kind: "shell", title: "build", shell: { command: "echo built" } }));
export const deploy = defineTask("deploy", () => ({ kind: "shell", title: "deploy", shell: { command: "echo deployed" } }));

export async function process(inputs, ctx) {
  const built = await ctx.task(build, {});
  const decision = await ctx.breakpoint({ question: "Deploy the build?", build: built.stdout.trim() });
  if (!decision.approved) return { deployed: false, reason: decision.response ?? "rejected" };
  const deployed = await ctx.task(deploy, {});
  return { deployed: true, output: deployed.stdout.trim(), response: decision.response ?? null };
}
