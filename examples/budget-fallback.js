// Staying within a budget: every file goes to the senior reviewer first, on the expensive harness (`pricey`,
// which may spend $1.00 in all: `budget_usd` in tutti.toml). Once that harness has no room for another turn,
// the task fails with BudgetExceeded before anything starts, the coordinator catches it, and the junior
// reviewer on the cheap harness (`thrifty`) takes the file instead. Every decision is in the journal
// (`budget_reserved`, `budget_exceeded`); `tutti status` shows the harness's spend against its limit.
import { defineTask } from "tutti";

export const review = defineTask("review", (args) => ({
  kind: "agent",
  title: `review ${args.file}`,
  agent: { prompt: `Review ${args.file} and list what to fix.` },
}));

export async function process(inputs, ctx) {
  const files = inputs?.files ?? ["parser.rs", "lexer.rs", "eval.rs", "gc.rs", "repl.rs"];
  const team = ctx.group("reviewers", { members: ["senior", "junior"], harness: ["pricey", "thrifty"] });
  const [senior, junior] = team.members;
  const reviewedBy = {};
  for (const file of files) {
    try {
      await senior.task(review, { file });
      reviewedBy[file] = "senior";
    } catch (e) {
      if (e.name !== "BudgetExceeded") throw e;
      ctx.log(`${file}: ${e.scope} has spent $${e.spent.toFixed(2)} of $${e.limit.toFixed(2)}; the junior reviewer takes it`);
      await junior.task(review, { file });
      reviewedBy[file] = "junior";
    }
  }
  team.close();
  return reviewedBy;
}
