//! Parallelism is real and bounded: branches of `ctx.parallel.all` run at the same time, and
//! `--max-parallel` caps how many run at once. Everything is read from the journal's timestamps and order.

use serde_json::Value;
use tutti_testkit::{Project, kind, of_kind, show};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

/// `inputs.n` shell tasks that each sleep `inputs.seconds`, all requested at once.
const NAPS: &str = r#"
import { defineTask } from "tutti";

export const nap = defineTask("nap", (args) => ({
  kind: "shell",
  title: `nap ${args.i}`,
  shell: { command: `sleep ${args.seconds}; echo ${args.i}` },
}));

export async function process(inputs, ctx) {
  const branches = Array.from({ length: inputs.n }, (_, i) => () => ctx.task(nap, { i, seconds: inputs.seconds }));
  const results = await ctx.parallel.all(branches);
  return results.map((r) => Number(r.stdout.trim()));
}
"#;

fn run_naps(project: &Project, n: usize, seconds: f64, max_parallel: u32) -> Vec<Value> {
    project.write("naps.js", NAPS);
    let inputs = format!(r#"{{"n": {n}, "seconds": {seconds}}}"#);
    let out = project.run(&["run", "naps.js", "--inputs", &inputs, "--max-parallel", &max_parallel.to_string()]);
    assert_eq!(out.code, 0, "{out}");
    let expected: Vec<usize> = (0..n).collect();
    assert_eq!(out.json(), serde_json::json!(expected), "results come back in branch order");
    project.events(&out.run_id())
}

/// The most effects the journal shows running at once (started +1, resolved -1).
fn most_running(events: &[Value]) -> i32 {
    let (mut running, mut most) = (0, 0);
    for e in events {
        match kind(e) {
            "effect_started" => running += 1,
            "effect_resolved" | "effect_cancelled" => running -= 1,
            _ => continue,
        }
        most = most.max(running);
    }
    most
}

#[test]
fn eight_one_second_tasks_finish_together_in_about_one_second() {
    let project = Project::new(TUTTI);
    let events = run_naps(&project, 8, 1.0, 8);
    let started = of_kind(&events, "effect_started");
    let resolved = of_kind(&events, "effect_resolved");
    assert_eq!((started.len(), resolved.len()), (8, 8), "{}", show(&events));

    let last_start = started.iter().map(|e| e["seq"].as_u64().unwrap()).max().unwrap();
    let first_resolve = resolved.iter().map(|e| e["seq"].as_u64().unwrap()).min().unwrap();
    assert!(last_start < first_resolve, "a task finished before all had started:\n{}", show(&events));

    let first_start_ms = started.iter().map(|e| e["ts_ms"].as_i64().unwrap()).min().unwrap();
    let last_resolve_ms = resolved.iter().map(|e| e["ts_ms"].as_i64().unwrap()).max().unwrap();
    let span = last_resolve_ms - first_start_ms;
    assert!(span < 1900, "8 parallel 1 s sleeps took {span} ms from first start to last result (serial would be 8 s)");
    assert!(span >= 1000, "a 1 s sleep cannot end after {span} ms");
}

#[test]
fn max_parallel_two_never_runs_a_third_task() {
    let project = Project::new(TUTTI);
    let events = run_naps(&project, 8, 0.2, 2);
    assert_eq!(of_kind(&events, "effect_resolved").len(), 8, "{}", show(&events));
    assert_eq!(most_running(&events), 2, "journal:\n{}", show(&events));
    let run_created = &of_kind(&events, "run_created")[0];
    assert_eq!(run_created["event"]["options"]["maxParallel"], 2, "the limit is journaled with the run");
}
