//! When work fails: a process that throws fails its run (exit 1); a task that fails or times out rejects its
//! `ctx.task`, which the process may catch and carry on.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tutti_testkit::{Project, kind, of_kind, process_is_gone, show, wait_for};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

#[test]
fn a_process_that_throws_fails_the_run() {
    let project = Project::new(TUTTI);
    project.write(
        "throws.js",
        r#"
import { defineTask } from "tutti";
export const probe = defineTask("probe", () => ({ kind: "shell", shell: { command: "echo 41" } }));
export async function process(inputs, ctx) {
  const r = await ctx.task(probe, {});
  throw new Error(`the plan is impossible after ${r.stdout.trim()}`);
}
"#,
    );
    let out = project.run(&["run", "throws.js"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("the plan is impossible after 41"), "{out}");
    let run = out.run_id();

    let status = project.status(&run);
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(status["error"]["message"], "the plan is impossible after 41", "{status}");
    let events = project.events(&run);
    assert_eq!(events.last().map(kind), Some("run_failed"), "{}", show(&events));
}

#[test]
fn a_failing_harness_rejects_the_task_and_the_process_can_recover() {
    let project = Project::new(TUTTI);
    project.write("tutti.toml", "[harness.flaky]\ncommand = [\"sh\", \"-c\", \"echo giving up >&2; exit 3\"]\n");
    project.write(
        "recovers.js",
        r#"
import { defineTask } from "tutti";
export const ask = defineTask("ask", () => ({ kind: "agent", title: "ask", agent: { prompt: { task: "answer" } } }));
export const fallback = defineTask("fallback", () => ({ kind: "shell", shell: { command: "echo plan B" } }));
export async function process(inputs, ctx) {
  try {
    await ctx.task(ask, {});
    return { recovered: false };
  } catch (e) {
    const r = await ctx.task(fallback, {});
    return { recovered: true, name: e.name, message: e.message, then: r.stdout.trim() };
  }
}
"#,
    );
    let out = project.run(&["run", "recovers.js", "--harness", "flaky"]);
    assert_eq!(out.code, 0, "{out}");
    let output = out.json();
    assert_eq!(output["recovered"], true, "{output}");
    assert_eq!(output["then"], "plan B", "{output}");
    assert!(output["message"].as_str().unwrap().contains("exited with code 3"), "{output}");

    let events = project.events(&out.run_id());
    let failed = resolution(&events, "root/0");
    assert_eq!(failed["status"], "error", "{failed}");
    assert_eq!(failed["error"]["data"]["exitCode"], 3, "{failed}");
    assert!(failed["error"]["data"]["stderr"].as_str().unwrap().contains("giving up"), "{failed}");
    assert_eq!(events.last().map(kind), Some("run_completed"), "{}", show(&events));
}

#[test]
fn a_task_over_its_timeout_is_stopped_and_rejected() {
    let project = Project::new(TUTTI);
    project.write(
        "slow.js",
        r#"
import { defineTask } from "tutti";
export const slow = defineTask("slow", () => ({ kind: "shell", timeoutMs: 300, shell: { command: "sleep 30 & echo $! > slow.pid; wait" } }));
export async function process(inputs, ctx) {
  try {
    await ctx.task(slow, {});
    return { timedOut: false };
  } catch (e) {
    return { timedOut: true, name: e.name };
  }
}
"#,
    );
    let began = Instant::now();
    let out = project.run(&["run", "slow.js"]);
    let took = began.elapsed();
    assert_eq!(out.code, 0, "{out}");
    assert!(took < Duration::from_secs(15), "a 300 ms timeout took {took:?} to end a 30 s sleep");
    let output = out.json();
    assert_eq!(output["timedOut"], true, "{output}");

    let events = project.events(&out.run_id());
    let error = &resolution(&events, "root/0")["error"];
    assert!(error["name"].as_str().unwrap().contains("Timeout"), "{error}");
    assert_eq!(output["name"], error["name"], "the process sees the journaled error");
    let started = of_kind(&events, "effect_started")[0]["ts_ms"].as_i64().unwrap();
    let resolved = of_kind(&events, "effect_resolved")[0]["ts_ms"].as_i64().unwrap();
    assert!((300..5000).contains(&(resolved - started)), "timed out after {} ms, not ~300", resolved - started);
    let pid: u32 = project.read("slow.pid").expect("the task recorded its sleep's pid").trim().parse().unwrap();
    wait_for(Duration::from_secs(10), "the timed-out sleep to be killed", || process_is_gone(pid));
}

/// The outcome journaled for `effect` (`{status, value | error}`).
fn resolution<'a>(events: &'a [Value], effect: &str) -> &'a Value {
    let resolved = of_kind(events, "effect_resolved");
    let found = resolved.iter().find(|e| e["event"]["effect"] == json!(effect));
    &found.unwrap_or_else(|| panic!("{effect} never resolved:\n{}", show(events)))["event"]["outcome"]
}
