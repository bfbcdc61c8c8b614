//! Acting on a live run from outside its driver: approving or rejecting a breakpoint, posting results by
//! hand, cancelling, Ctrl-C and `tutti resume`, and the rule of one driver per run.

use std::time::Duration;

use serde_json::Value;
use tutti_testkit::{DEADLINE, Project, Spawned, kind, of_kind, process_is_gone, show, wait_for};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

/// Start `breakpoint.js` interactively and wait until the journal shows it asking for approval.
/// Returns the driver, the run id and the breakpoint's effect id.
fn run_until_breakpoint(project: &Project) -> (Spawned, String, String) {
    let driver = project.spawn(&["run", "breakpoint.js"]);
    let run = driver.run_id();
    let requested = project.wait_for_event(&run, "breakpoint request", |e| {
        kind(e) == "effect_requested" && e["event"]["kind"] == "breakpoint"
    });
    let effect = requested["event"]["effect"].as_str().expect("effect id").to_string();
    (driver, run, effect)
}

#[test]
fn approving_a_breakpoint_lets_the_run_deploy() {
    let project = Project::with_examples(TUTTI);
    let (driver, run, effect) = run_until_breakpoint(&project);

    // The user sees what the run waits on.
    let status = project.status(&run);
    assert_eq!(status["status"], "running", "{status}");
    assert_eq!(status["driverLive"], true, "{status}");
    assert_eq!(status["waiting"][0]["effect"], effect.as_str(), "{status}");

    let approve = project.run(&["approve", &run, &effect, "--response", "ok"]);
    assert_eq!(approve.code, 0, "{approve}");

    let out = driver.wait(DEADLINE);
    assert_eq!(out.code, 0, "{out}");
    let output = out.json();
    assert_eq!(output["deployed"], true, "{output}");
    assert_eq!(output["response"], "ok", "{output}");
    assert_eq!(project.status(&run)["status"], "completed");
}

#[test]
fn rejecting_a_breakpoint_stops_the_deploy() {
    let project = Project::with_examples(TUTTI);
    let (driver, run, effect) = run_until_breakpoint(&project);

    let reject = project.run(&["approve", &run, &effect, "--reject"]);
    assert_eq!(reject.code, 0, "{reject}");

    let out = driver.wait(DEADLINE);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json()["deployed"], false, "{out}");
    let deploys = of_kind(&project.events(&run), "effect_requested")
        .into_iter()
        .filter(|e| e["event"]["task_id"] == "deploy")
        .count();
    assert_eq!(deploys, 0, "a rejected deploy must not run");
}

#[test]
fn post_refuses_unknown_and_already_resolved_effects() {
    let project = Project::with_examples(TUTTI);
    let (driver, run, effect) = run_until_breakpoint(&project);

    let unknown = project.run(&["post", &run, "root/99", "--value", "{}"]);
    assert_eq!(unknown.code, 2, "{unknown}");
    assert!(unknown.stderr.contains("root/99"), "the message names the effect:\n{unknown}");

    // root/0 is the build, which finished before the breakpoint.
    let resolved = project.run(&["post", &run, "root/0", "--value", "{}"]);
    assert_eq!(resolved.code, 2, "{resolved}");
    assert!(resolved.stderr.contains("already resolved"), "{resolved}");

    // The refusals changed nothing: posting the approval by hand still finishes the run.
    let post = project.run(&["post", &run, &effect, "--value", r#"{"approved": true, "response": "by hand"}"#]);
    assert_eq!(post.code, 0, "{post}");
    let out = driver.wait(DEADLINE);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json()["response"], "by hand");
    let builds = of_kind(&project.events(&run), "effect_resolved")
        .into_iter()
        .filter(|e| e["event"]["effect"] == "root/0")
        .count();
    assert_eq!(builds, 1, "the build resolved exactly once");
}

/// Shell tasks that record their shell's and their sleep's pids, then sleep 30 s, unless `fast` exists.
const SLEEPERS: &str = r#"
import { defineTask } from "tutti";

export const sleeper = defineTask("sleeper", (args) => ({
  kind: "shell",
  title: `sleeper ${args.i}`,
  shell: {
    command: `if [ -f fast ]; then echo quick ${args.i}; else echo $$ > pids/sh-${args.i}; sleep 30 & echo $! > pids/sleep-${args.i}; wait; fi`,
  },
}));

export async function process(inputs, ctx) {
  const results = await ctx.parallel.all([0, 1, 2].map((i) => () => ctx.task(sleeper, { i })));
  return results.map((r) => r.stdout.trim());
}
"#;

/// Start the sleepers and wait until all three have written both pids. Returns the driver, run id and pids.
fn start_sleepers(project: &Project) -> (Spawned, String, Vec<u32>) {
    project.write("sleepers.js", SLEEPERS);
    project.write("pids/.keep", "");
    let driver = project.spawn(&["run", "sleepers.js"]);
    let run = driver.run_id();
    let names: Vec<String> = (0..3).flat_map(|i| [format!("pids/sh-{i}"), format!("pids/sleep-{i}")]).collect();
    let pid = |name: &String| project.read(name).and_then(|s| s.trim().parse::<u32>().ok());
    wait_for(DEADLINE, "all sleepers to record their pids", || names.iter().all(|n| pid(n).is_some()));
    (driver, run, names.iter().map(|n| pid(n).expect("recorded")).collect())
}

fn effects_of(events: &[Value], event_kind: &str) -> Vec<String> {
    let mut ids: Vec<String> =
        of_kind(events, event_kind).iter().map(|e| e["event"]["effect"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

const SLEEPER_EFFECTS: [&str; 3] = ["root/parallel:0/0", "root/parallel:1/0", "root/parallel:2/0"];

#[test]
fn cancel_kills_every_running_task_and_ends_the_run() {
    let project = Project::new(TUTTI);
    let (driver, run, pids) = start_sleepers(&project);

    let cancel = project.run(&["cancel", &run]);
    assert_eq!(cancel.code, 0, "{cancel}");
    assert!(cancel.stderr.contains("cancelled"), "{cancel}");

    let out = driver.wait(DEADLINE);
    assert_eq!(out.code, 1, "a cancelled run exits 1:\n{out}");
    let events = project.events(&run);
    assert_eq!(effects_of(&events, "effect_cancelled"), SLEEPER_EFFECTS, "{}", show(&events));
    assert_eq!(of_kind(&events, "run_cancelled").len(), 1, "{}", show(&events));
    assert_eq!(project.status(&run)["status"], "cancelled");
    wait_for(Duration::from_secs(10), "the sleepers' processes to be gone", || {
        pids.iter().all(|&p| process_is_gone(p))
    });
}

#[test]
fn ctrl_c_detaches_and_resume_finishes_the_interrupted_tasks() {
    let project = Project::new(TUTTI);
    let (driver, run, pids) = start_sleepers(&project);
    wait_for(DEADLINE, "three effect_started events", || of_kind(&project.events(&run), "effect_started").len() == 3);

    driver.signal(libc::SIGINT);
    let out = driver.wait(DEADLINE);
    assert_eq!(out.code, 130, "{out}");
    assert!(out.stderr.contains(&format!("tutti resume {run}")), "says how to continue:\n{out}");
    let events = project.events(&run);
    let detached = of_kind(&events, "driver_detached");
    assert_eq!(detached.len(), 1, "{}", show(&events));
    assert_eq!(detached[0]["event"]["interrupted"], serde_json::json!(SLEEPER_EFFECTS), "{}", show(&events));
    assert!(of_kind(&events, "effect_cancelled").is_empty(), "interrupted effects are not cancelled");
    wait_for(Duration::from_secs(10), "the interrupted processes to be gone", || {
        pids.iter().all(|&p| process_is_gone(p))
    });

    // Second attempt: the tasks find the marker and answer at once.
    project.write("fast", "");
    let resumed = project.run(&["resume", &run]);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert_eq!(resumed.json(), serde_json::json!(["quick 0", "quick 1", "quick 2"]));
    let events = project.events(&run);
    assert_eq!(effects_of(&events, "effect_redispatched"), SLEEPER_EFFECTS, "{}", show(&events));
    for e in of_kind(&events, "effect_redispatched") {
        assert_eq!(e["event"]["attempt"], 2, "{e}");
    }
    assert_eq!(events.last().map(kind), Some("run_completed"), "{}", show(&events));
}

#[test]
fn a_second_driver_is_refused_while_the_first_drives() {
    let project = Project::new(TUTTI);
    let (driver, run, _pids) = start_sleepers(&project);

    let second = project.run(&["resume", &run]);
    assert_eq!(second.code, 2, "{second}");
    assert!(second.stderr.contains("another tutti"), "{second}");
    assert!(second.stderr.contains(&run), "names the run:\n{second}");

    let events = project.events(&run);
    assert_eq!(of_kind(&events, "driver_attached").len(), 1, "the refused driver journaled nothing:\n{}", show(&events));

    let cancel = project.run(&["cancel", &run]);
    assert_eq!(cancel.code, 0, "{cancel}");
    assert_eq!(driver.wait(DEADLINE).code, 1);
}
