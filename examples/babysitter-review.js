/**
 * @process code-review
 * @description A babysitter-style process file, run unchanged: it imports defineTask from the babysitter SDK,
 * defines agent tasks with output schemas, fans out with ctx.parallel.all over promises, and asks for approval.
 * Its agent tasks are served by the `scripted` command harness configured in examples/tutti.toml.
 */
import { defineTask } from '@a5c-ai/babysitter-sdk';

export const analyzeTask = defineTask('analyze-module', (args, taskCtx) => ({
  kind: 'agent',
  title: `Analyze ${args.module}`,
  agent: {
    name: 'code-analyst',
    prompt: {
      role: 'senior software engineer',
      task: `Analyze the module ${args.module} for defects`,
      context: { module: args.module, runId: taskCtx.runId },
      instructions: ['List the defects you find', 'Rate the overall risk'],
      outputFormat: 'JSON',
    },
    outputSchema: {
      type: 'object',
      required: ['risk', 'defects'],
      properties: { risk: { type: 'string' }, defects: { type: 'array', items: { type: 'string' } } },
    },
  },
  io: { inputJsonPath: `tasks/${taskCtx.effectId}/input.json`, outputJsonPath: `tasks/${taskCtx.effectId}/result.json` },
  labels: ['agent', 'analysis', ' analysis '],
}));

export const summarizeTask = defineTask('summarize', async () => {}, {
  kind: 'agent',
  title: 'Summarize the review',
  agent: {
    name: 'writer',
    prompt: { role: 'tech writer', task: 'Summarize the findings', instructions: ['Be brief'] },
    outputSchema: { type: 'object', required: ['summary'], properties: { summary: { type: 'string' } } },
  },
});

export async function process(inputs, ctx) {
  const startedAt = ctx.now();
  ctx.log('info', `review ${ctx.runId} started`);
  const modules = inputs?.modules ?? ['parser', 'scheduler', 'journal'];
  const analyses = await ctx.parallel.all(modules.map((module) => ctx.task(analyzeTask, { module })));
  const approval = await ctx.breakpoint({
    question: `Publish the review of ${modules.length} modules?`,
    title: 'Review approval',
  });
  const summary = await ctx.task(summarizeTask, { analyses });
  return {
    success: true,
    approved: approval.approved,
    modules: modules.length,
    risks: analyses.map((a) => a.risk),
    summary: summary.summary,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
  };
}
