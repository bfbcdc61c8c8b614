// The coordinator pattern: hand out work, react to each completion or failure in journal order (so the
// loop replays exactly after a restart), re-assign what failed to another member, then close the group.
import { defineTask } from "tutti";

export const attempt = defineTask("attempt", (args) => ({
  kind: "shell",
  title: `${args.job} (try ${args.tries})`,
  // Odd jobs fail on their first try.
  shell: { command: args.tries === 1 && args.job % 2 === 1 ? "echo flaky >&2; exit 1" : `echo done-${args.job}` },
}));

export async function process(inputs, ctx) {
  const crew = ctx.group("crew", { members: ["ann", "ben", "cat"] });
  const jobs = [1, 2, 3, 4, 5, 6];
  const queue = jobs.map((job) => ({ job, tries: 1 }));
  const results = {};
  const busy = new Map();
  const assign = () => {
    for (const m of crew.members) {
      if (busy.has(m.name) || queue.length === 0) continue;
      const work = queue.shift();
      busy.set(m.name, work);
      m.task(attempt, work).catch(() => {}); // outcomes arrive as group events
    }
  };
  assign();
  while (Object.keys(results).length < jobs.length) {
    const ev = await crew.next();
    const work = busy.get(ev.member);
    busy.delete(ev.member);
    if (ev.type === "completed" && ev.value.success) results[work.job] = `${ev.value.stdout.trim()} by ${ev.member}`;
    else queue.push({ job: work.job, tries: work.tries + 1 });
    assign();
  }
  crew.close();
  return results;
}
