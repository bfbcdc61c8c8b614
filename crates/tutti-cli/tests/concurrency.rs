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

/// Group A maps 200 one-second items over 40 members under `--max-parallel 4`, so dozens of its tasks wait.
/// Requested later, a root task with `priority: 10` goes first and group B's 4 tasks take slots before A's
/// (the share with the fewest running goes next). A's four slots turn over together each second, so of the
/// five newcomers four start at the next turnover and the last at the one after: each within two items'
/// durations of its request. First come first served would put them behind A's ~36 queued items (≥ 9 s).
#[test]
fn groups_take_turns_for_the_slots_and_a_priority_task_goes_first() {
    let project = Project::new(TUTTI);
    project.write(
        "fair.js",
        r#"
import { defineTask } from "tutti";
const item = defineTask("item", (a) => ({ kind: "shell", title: `${a.g} ${a.i}`, shell: { command: "sleep 1" } }));
const quick = defineTask("quick", () => ({ kind: "shell", title: "quick", shell: { command: "true" } }));
export async function process(inputs, ctx) {
  const a = ctx.group("A", { members: 40 });
  const wide = a.map(Array.from({ length: 200 }, (_, i) => i), (i, m) => m.task(item, { g: "A", i }));
  await ctx.task(quick, {});
  const b = ctx.group("B", { members: 4 });
  const [small, urgent] = await Promise.all([
    b.all((m) => m.task(item, { g: "B", i: m.name })),
    ctx.task(item, { g: "root", i: 0 }, { priority: 10 }),
  ]);
  return { small: small.length, urgent: urgent.success };
}
"#,
    );
    let out = project.run(&["run", "fair.js", "--max-parallel", "4"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), serde_json::json!({ "small": 4, "urgent": true }));
    let events = project.events(&out.run_id());
    let at = |kind_: &str, effect: &str| {
        events
            .iter()
            .find(|e| kind(e) == kind_ && e["event"]["effect"] == effect)
            .and_then(|e| e["ts_ms"].as_i64())
            .unwrap_or_else(|| panic!("no {kind_} of {effect}: {}", show(&events)))
    };
    let later: Vec<String> = of_kind(&events, "effect_requested")
        .iter()
        .filter(|e| e["event"]["title"].as_str().is_some_and(|t| t.starts_with("B ") || t.starts_with("root ")))
        .filter_map(|e| e["event"]["effect"].as_str().map(String::from))
        .collect();
    assert_eq!(later.len(), 5, "{}", show(&events));
    let waits: Vec<(String, i64)> =
        later.iter().map(|e| (e.clone(), at("effect_started", e) - at("effect_requested", e))).collect();
    assert!(waits.iter().all(|(_, w)| *w <= 2_500), "waited behind group A's queue: {waits:?}");
    let urgent_wait = waits.iter().find(|(e, _)| !e.starts_with("group:")).map(|(_, w)| *w);
    assert!(urgent_wait.is_some_and(|w| w <= 1_300), "the priority task waits one turnover at most: {waits:?}");
    let requested = |prefix: &str| {
        of_kind(&events, "effect_requested")
            .iter()
            .filter(|e| e["event"]["effect"].as_str().is_some_and(|id| id.starts_with(prefix)))
            .count()
    };
    assert!(
        requested("group:A/") < 100,
        "A was still far from drained: {} of its items requested",
        requested("group:A/")
    );
    let urgent = later.iter().find(|e| !e.starts_with("group:")).expect("the root task");
    let priority = of_kind(&events, "effect_requested")
        .iter()
        .find(|e| e["event"]["effect"] == urgent.as_str())
        .map(|e| e["event"]["task"]["inline"]["priority"].clone());
    assert_eq!(priority, Some(serde_json::json!(10)), "the priority is journaled with the task");
}
