//! When work fails: a process that throws fails its run (exit 1); a task that fails or times out rejects its
//! `ctx.task`, which the process may catch and carry on.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tutti_testkit::{Project, Reaper, kind, of_kind, process_is_gone, show, try_wait_for, wait_for};

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

/// Regression test for a leak: a timed-out task that ignores SIGTERM outlived a run that ended right after
/// the timeout, because the SIGKILL that follows SIGTERM after a grace period died with the driver.
#[test]
fn a_timed_out_task_that_ignores_sigterm_does_not_outlive_the_run() {
    let project = Project::new(TUTTI);
    project.write(
        "stubborn.js",
        r#"
import { defineTask } from "tutti";
export const stubborn = defineTask("stubborn", () => ({
  kind: "shell", timeoutMs: 300, shell: { command: "trap '' TERM; sleep 30 & echo $! > stubborn.pid; wait" },
}));
export async function process(inputs, ctx) {
  try { await ctx.task(stubborn, {}); return "finished"; } catch (e) { return e.name; }
}
"#,
    );
    let out = project.run(&["run", "stubborn.js"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), json!("Timeout"));
    let pid: u32 = project.read("stubborn.pid").expect("the task recorded its sleep's pid").trim().parse().unwrap();
    let _reaper = Reaper(vec![pid]);
    let gone = try_wait_for(Duration::from_secs(8), || process_is_gone(pid));
    assert!(gone, "the timed-out sleep (pid {pid}) still runs 8 s after its run ended");
}

#[test]
fn misbehaving_shell_tasks_still_resolve() {
    let project = Project::new(TUTTI);
    project.write(
        "odd.js",
        r#"
import { defineTask } from "tutti";
export const binary = defineTask("binary", () => ({ kind: "shell", shell: { command: "printf 'ok \\377\\376 end'" } }));
export const forks = defineTask("forks", () => ({
  kind: "shell", shell: { command: "(sleep 30; echo late) & echo $! > forked.pid; echo parent done" },
}));
export const floods = defineTask("floods", () => ({
  kind: "shell", shell: { command: "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo tail-marker" },
}));
export async function process(inputs, ctx) {
  const a = await ctx.task(binary, {});
  const b = await ctx.task(forks, {});
  const c = await ctx.task(floods, {});
  return { binary: a.stdout, forks: b.stdout.trim(), floodTail: c.stdout.slice(-12), floodKept: c.stdout.length };
}
"#,
    );
    let began = Instant::now();
    let out = project.run(&["run", "odd.js"]);
    assert_eq!(out.code, 0, "{out}");
    let output = out.json();
    assert_eq!(output["binary"], "ok \u{fffd}\u{fffd} end", "non-UTF-8 bytes are replaced, not fatal");
    assert_eq!(output["forks"], "parent done");
    assert!(began.elapsed() < Duration::from_secs(15), "a background child holding the pipes must not hang the task");
    let forked: u32 = project.read("forked.pid").expect("forked pid").trim().parse().unwrap();
    let _reaper = Reaper(vec![forked]);
    assert!(process_is_gone(forked), "the task's background child ends with the task");
    assert_eq!(output["floodTail"], "tail-marker\n", "the end of a flood is kept");
    let kept = output["floodKept"].as_u64().unwrap();
    assert!(kept < 3_000_000, "output is capped, not all {kept} bytes kept");

    // A result that large lives out of line in the blob store, not inside the event.
    let events = project.events(&out.run_id());
    let flood = resolution(&events, "root/2");
    assert!(flood["value"]["blob"]["hash"].is_string(), "{}", flood.to_string().chars().take(300).collect::<String>());
}

#[test]
fn a_process_awaiting_a_promise_nothing_settles_fails_instead_of_hanging() {
    let project = Project::new(TUTTI);
    project.write(
        "stuck.js",
        r#"
import { defineTask } from "tutti";
export const probe = defineTask("probe", () => ({ kind: "shell", shell: { command: "true" } }));
export async function process(inputs, ctx) {
  await ctx.task(probe, {});
  await new Promise(() => {});
}
"#,
    );
    let started = Instant::now();
    let out = project.run(&["run", "stuck.js"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("Deadlock") && out.stderr.contains("nothing will settle"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(20), "it must not hang");
    let events = project.events(&out.run_id());
    assert_eq!(events.last().map(kind), Some("run_failed"), "{}", show(&events));
}
