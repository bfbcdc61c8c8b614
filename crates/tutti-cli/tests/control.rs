//! Acting on a live run from outside its driver: approving or rejecting a breakpoint, posting results by
//! hand, cancelling, Ctrl-C and `tutti resume` (also of a process stuck in a loop that never awaits), and the
//! rule of one driver per run.

use std::time::Duration;

use serde_json::Value;
use tutti_testkit::{DEADLINE, Project, Reaper, Spawned, kind, of_kind, process_is_gone, show, try_wait_for, wait_for};

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

/// `breakpoint.js` stopped by Ctrl-C while it waits for approval: the run id and the breakpoint's effect id.
fn detached_at_breakpoint(project: &Project) -> (String, String) {
    let (driver, run, effect) = run_until_breakpoint(project);
    driver.signal(libc::SIGINT);
    assert_eq!(driver.wait(DEADLINE).code, 130);
    (run, effect)
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

    let not_json = project.run(&["post", &run, &effect, "--value", "notjson"]);
    assert_eq!(not_json.code, 2, "{not_json}");
    assert!(not_json.stderr.contains("--value"), "{not_json}");
    let nameless = project.run(&["post", &run, &effect, "--error", r#"{"message": "no name"}"#]);
    assert_eq!(nameless.code, 2, "{nameless}");
    assert!(nameless.stderr.contains("--error") && nameless.stderr.contains("name"), "{nameless}");

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

/// Three shell tasks that record their shell's and their sleep's pids, then sleep 30 s, unless `fast`
/// exists. `prelude` runs first in each (e.g. `trap '' TERM` for tasks that ignore SIGTERM).
fn sleepers(prelude: &str) -> String {
    let command = format!(
        "{prelude} if [ -f fast ]; then echo quick ${{args.i}}; else echo $$ > pids/sh-${{args.i}}; \
         sleep 30 & echo $! > pids/sleep-${{args.i}}; wait; fi"
    );
    format!(
        r#"
import {{ defineTask }} from "tutti";

export const sleeper = defineTask("sleeper", (args) => ({{
  kind: "shell",
  title: `sleeper ${{args.i}}`,
  shell: {{ command: `{command}` }},
}}));

export async function process(inputs, ctx) {{
  const results = await ctx.parallel.all([0, 1, 2].map((i) => () => ctx.task(sleeper, {{ i }})));
  return results.map((r) => r.stdout.trim());
}}
"#
    )
}

/// Start `script` and wait until its three sleepers have written both pids and their starts are journaled.
/// Returns the driver, the run id and the sleepers' pids (killed when dropped, should the test fail).
fn start_sleepers(project: &Project, script: &str) -> (Spawned, String, Reaper) {
    project.write("sleepers.js", script);
    project.write("pids/.keep", "");
    let driver = project.spawn(&["run", "sleepers.js"]);
    let run = driver.run_id();
    let names: Vec<String> = (0..3).flat_map(|i| [format!("pids/sh-{i}"), format!("pids/sleep-{i}")]).collect();
    let pid = |name: &String| project.read(name).and_then(|s| s.trim().parse::<u32>().ok());
    wait_for(DEADLINE, "all sleepers to record their pids", || names.iter().all(|n| pid(n).is_some()));
    wait_for(DEADLINE, "three effect_started events", || of_kind(&project.events(&run), "effect_started").len() == 3);
    (driver, run, Reaper(names.iter().map(|n| pid(n).expect("recorded")).collect()))
}

/// How long stopped tasks may take to be gone: tutti's grace between SIGTERM and SIGKILL is 2 s.
const GONE_WITHIN: Duration = Duration::from_secs(8);

fn assert_all_gone(pids: &Reaper, what: &str) {
    let gone = try_wait_for(GONE_WITHIN, || pids.0.iter().all(|&p| process_is_gone(p)));
    let alive: Vec<u32> = pids.0.iter().copied().filter(|&p| !process_is_gone(p)).collect();
    assert!(gone, "{what}: processes {alive:?} still run {GONE_WITHIN:?} later");
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
    let (driver, run, pids) = start_sleepers(&project, &sleepers(""));

    let cancel = project.run(&["cancel", &run]);
    assert_eq!(cancel.code, 0, "{cancel}");
    assert!(cancel.stderr.contains("cancelled"), "{cancel}");

    let out = driver.wait(DEADLINE);
    assert_eq!(out.code, 1, "a cancelled run exits 1:\n{out}");
    let events = project.events(&run);
    assert_eq!(effects_of(&events, "effect_cancelled"), SLEEPER_EFFECTS, "{}", show(&events));
    assert_eq!(of_kind(&events, "run_cancelled").len(), 1, "{}", show(&events));
    assert_eq!(project.status(&run)["status"], "cancelled");
    assert_all_gone(&pids, "after cancel");
}

#[test]
fn ctrl_c_detaches_and_resume_finishes_the_interrupted_tasks() {
    let project = Project::new(TUTTI);
    let (driver, run, pids) = start_sleepers(&project, &sleepers(""));
    driver.signal(libc::SIGINT);
    let out = driver.wait(DEADLINE);
    assert_eq!(out.code, 130, "{out}");
    assert!(out.stderr.contains(&format!("tutti resume {run}")), "says how to continue:\n{out}");
    let events = project.events(&run);
    let detached = of_kind(&events, "driver_detached");
    assert_eq!(detached.len(), 1, "{}", show(&events));
    assert_eq!(detached[0]["event"]["interrupted"], serde_json::json!(SLEEPER_EFFECTS), "{}", show(&events));
    assert!(of_kind(&events, "effect_cancelled").is_empty(), "interrupted effects are not cancelled");
    assert_all_gone(&pids, "after Ctrl-C");

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
    let (driver, run, _pids) = start_sleepers(&project, &sleepers(""));

    let second = project.run(&["resume", &run]);
    assert_eq!(second.code, 2, "{second}");
    assert!(second.stderr.contains("another tutti"), "{second}");
    assert!(second.stderr.contains(&run), "names the run:\n{second}");

    let events = project.events(&run);
    assert_eq!(
        of_kind(&events, "driver_attached").len(),
        1,
        "the refused driver journaled nothing:\n{}",
        show(&events)
    );

    let cancel = project.run(&["cancel", &run]);
    assert_eq!(cancel.code, 0, "{cancel}");
    assert_eq!(driver.wait(DEADLINE).code, 1);
}

// Regression tests for a leak: tutti escalates from SIGTERM to SIGKILL on a thread of its own, so a task that
// ignores SIGTERM outlives a driver that exits before the grace period is over.

#[test]
fn cancel_kills_tasks_that_ignore_sigterm() {
    let project = Project::new(TUTTI);
    let (driver, run, pids) = start_sleepers(&project, &sleepers("trap '' TERM;"));

    let cancel = project.run(&["cancel", &run]);
    assert_eq!(cancel.code, 0, "{cancel}");
    assert_eq!(driver.wait(DEADLINE).code, 1);
    assert_all_gone(&pids, "cancelled tasks that ignore SIGTERM");
}

#[test]
fn ctrl_c_kills_tasks_that_ignore_sigterm_before_resume_runs_them_again() {
    let project = Project::new(TUTTI);
    let (driver, _run, pids) = start_sleepers(&project, &sleepers("trap '' TERM;"));

    driver.signal(libc::SIGINT);
    assert_eq!(driver.wait(DEADLINE).code, 130);
    // Otherwise `tutti resume` starts a second copy of each while the first still runs.
    assert_all_gone(&pids, "interrupted tasks that ignore SIGTERM");
}

#[test]
fn cancel_without_a_driver_ends_a_detached_run() {
    let project = Project::with_examples(TUTTI);
    let (run, effect) = detached_at_breakpoint(&project);
    assert_eq!(project.status(&run)["driverLive"], false);

    let cancel = project.run(&["cancel", &run, "--reason", "changed my mind"]);
    assert_eq!(cancel.code, 0, "{cancel}");
    let events = project.events(&run);
    let cancelled = of_kind(&events, "effect_cancelled");
    assert_eq!(cancelled.len(), 1, "{}", show(&events));
    assert_eq!(cancelled[0]["event"]["effect"], effect.as_str());
    assert_eq!(
        events.last().unwrap()["event"],
        serde_json::json!({"type": "run_cancelled", "reason": "changed my mind"})
    );

    let again = project.run(&["cancel", &run]);
    assert_eq!(again.code, 2, "{again}");
    assert!(again.stderr.contains("already cancelled"), "{again}");
    let resume = project.run(&["resume", &run]);
    assert_eq!(resume.code, 1, "resuming a cancelled run reports it as cancelled:\n{resume}");
}

#[test]
fn approval_given_while_detached_is_picked_up_by_resume() {
    let project = Project::with_examples(TUTTI);
    let (driver, run, effect) = run_until_breakpoint(&project);
    driver.signal(libc::SIGINT);
    let out = driver.wait(DEADLINE);
    assert_eq!(out.code, 130, "{out}");
    let detached = of_kind(&project.events(&run), "driver_detached")[0].clone();
    assert_eq!(detached["event"]["interrupted"], serde_json::json!([]), "a breakpoint has no process to stop");

    let approve = project.run(&["approve", &run, &effect, "--response", "later"]);
    assert_eq!(approve.code, 0, "{approve}");
    assert!(approve.stderr.contains("tutti resume"), "says the run needs a resume:\n{approve}");

    let resumed = project.run(&["resume", &run]);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert_eq!(resumed.json()["response"], "later");
    assert_eq!(resumed.json()["deployed"], true);
}

/// A process whose shell task tries to approve the breakpoint the run waits on. `prelude` runs first (e.g. to
/// unset every `TUTTI_` variable, as an agent could).
fn self_approval(prelude: &str) -> String {
    format!(
        r#"
import {{ defineTask }} from "tutti";

export const sneak = defineTask("sneak", () => ({{
  kind: "shell",
  title: "agent tries the gate",
  shell: {{ command: `run="$TUTTI_RUN_ID"; {prelude} tutti approve "$run" root/0 --response "approved by the agent itself" 2>&1; echo "rc=$?"` }},
}}));

export async function process(inputs, ctx) {{
  const gate = ctx.breakpoint({{ question: "ship it?" }});
  const tried = await ctx.task(sneak, {{}});
  const answer = await gate;
  return {{ tried: tried.stdout, answer }};
}}
"#
    )
}

/// The agent's attempt is refused, the run keeps waiting, and a person's approval completes it, journaled
/// with who gave it.
fn assert_only_a_person_passes_the_gate(prelude: &str, caught_by: &[&str]) {
    let project = Project::new(TUTTI);
    project.write("gate.js", self_approval(prelude));
    let driver = project.spawn(&["run", "gate.js"]);
    let run = driver.run_id();
    let tried = project.wait_for_event(&run, "the agent's attempt to end", |e| {
        kind(e) == "effect_resolved" && e["event"]["effect"] == "root/1"
    });
    let stdout = tried["event"]["outcome"]["value"]["inline"]["stdout"].as_str().unwrap_or_default().to_string();
    assert!(stdout.contains("refused") && stdout.contains("rc=2"), "the agent is refused with exit 2:\n{tried}");
    assert!(caught_by.iter().any(|by| stdout.contains(by)), "caught by one of {caught_by:?}:\n{stdout}");
    let status = project.status(&run);
    assert_eq!(status["waiting"][0]["effect"], "root/0", "the gate still waits:\n{status}");
    let events = project.events(&run);
    assert!(of_kind(&events, "control_applied").is_empty(), "{}", show(&events));

    let approve = project.run(&["approve", &run, "root/0", "--response", "a person said yes"]);
    assert_eq!(approve.code, 0, "{approve}");
    let out = driver.wait(DEADLINE);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json()["answer"], serde_json::json!({"approved": true, "response": "a person said yes"}));
    let events = project.events(&run);
    let control = of_kind(&events, "control_applied");
    assert_eq!(control.len(), 1, "{}", show(&events));
    let by = &control[0]["event"]["by"];
    assert_eq!(
        (control[0]["event"]["action"].as_str(), control[0]["event"]["effect"].as_str()),
        (Some("approve"), Some("root/0"))
    );
    assert_eq!(by["via"], "cli", "{by}");
    assert!(by["user"].as_str().is_some_and(|u| !u.is_empty()) && by["pid"].as_u64().is_some(), "{by}");
}

#[test]
fn an_agent_cannot_approve_the_breakpoint_its_run_waits_on() {
    assert_only_a_person_passes_the_gate("", &["its environment says so"]);
}

#[test]
fn an_agent_that_unsets_tuttis_variables_still_cannot_approve() {
    // An agent takes a moment before it acts; by then its start is journaled (an attempt's start waits at
    // most 20 ms for the next commit), so its own process tree gives it away.
    assert_only_a_person_passes_the_gate(
        r#"sleep 0.3; for v in $(env | grep -o '^TUTTI_[A-Z_]*'); do unset "$v"; done;"#,
        &["the process tree of an attempt"],
    );
    // One that acts at once, before its start is journaled, is still the driver's descendant (on a slow
    // machine its start may be journaled first: either way its ancestry gives it away).
    assert_only_a_person_passes_the_gate(
        r#"for v in $(env | grep -o '^TUTTI_[A-Z_]*'); do unset "$v"; done;"#,
        &["started by the tutti driver", "the process tree of an attempt"],
    );
}

#[test]
fn a_second_answer_to_a_breakpoint_is_refused_naming_the_first() {
    let project = Project::with_examples(TUTTI);
    let (run, effect) = detached_at_breakpoint(&project);

    let approve = project.run(&["approve", &run, &effect]);
    assert_eq!(approve.code, 0, "{approve}");
    let reject = project.run(&["approve", &run, &effect, "--reject"]);
    assert_eq!(reject.code, 2, "{reject}");
    assert!(reject.stderr.contains("already has an answer") && reject.stderr.contains("an approval"), "{reject}");

    let resumed = project.run(&["resume", &run]);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert_eq!(resumed.json()["deployed"], true, "the first answer wins:\n{resumed}");
}

#[test]
fn a_closed_terminal_stops_every_task_at_once_and_resume_finishes_the_run() {
    let project = Project::new(TUTTI);
    let script = sleepers("").replace("[0, 1, 2]", "Array.from({ length: 20 }, (_, i) => i)");
    project.write("sleepers.js", &script);
    project.write("pids/.keep", "");
    let driver = project.spawn(&["run", "sleepers.js", "--max-parallel", "20"]);
    let run = driver.run_id();
    let names: Vec<String> = (0..20).flat_map(|i| [format!("pids/sh-{i}"), format!("pids/sleep-{i}")]).collect();
    let pid = |name: &String| project.read(name).and_then(|s| s.trim().parse::<u32>().ok());
    wait_for(DEADLINE, "20 sleepers to record their pids", || names.iter().all(|n| pid(n).is_some()));
    let pids = Reaper(names.iter().map(|n| pid(n).expect("recorded")).collect());

    driver.signal(libc::SIGHUP);
    let hung_up = std::time::Instant::now();
    let gone = try_wait_for(Duration::from_secs(1), || pids.0.iter().all(|&p| process_is_gone(p)));
    assert!(gone, "every process tree is gone within 1 s of SIGHUP ({:?})", hung_up.elapsed());
    let out = driver.wait(DEADLINE);
    assert_eq!(out.code, 129, "{out}");
    let events = project.events(&run);
    let detached = of_kind(&events, "driver_detached");
    assert_eq!(detached.len(), 1, "{}", show(&events));
    assert_eq!(detached[0]["event"]["reason"], "the terminal was closed (SIGHUP)");
    assert_eq!(detached[0]["event"]["interrupted"].as_array().map(Vec::len), Some(20), "{}", show(&events));

    project.write("fast", "");
    let resumed = project.run(&["resume", &run]);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert_eq!(resumed.json().as_array().map(Vec::len), Some(20), "{resumed}");
}

#[test]
fn resume_journals_a_redispatch_only_for_effects_that_had_started() {
    let project = Project::new(TUTTI);
    project.write("sleepers.js", sleepers("").replace("[0, 1, 2]", "[0, 1, 2, 3, 4]"));
    project.write("pids/.keep", "");
    let driver = project.spawn(&["run", "sleepers.js", "--max-parallel", "1"]);
    let run = driver.run_id();
    wait_for(DEADLINE, "the first sleeper to start", || project.read("pids/sleep-0").is_some());
    driver.signal(libc::SIGINT);
    assert_eq!(driver.wait(DEADLINE).code, 130);
    let events = project.events(&run);
    assert_eq!(of_kind(&events, "effect_requested").len(), 5, "{}", show(&events));
    assert_eq!(of_kind(&events, "effect_started").len(), 1, "{}", show(&events));

    project.write("fast", "");
    let resumed = project.run(&["resume", &run]);
    assert_eq!(resumed.code, 0, "{resumed}");
    let events = project.events(&run);
    assert_eq!(effects_of(&events, "effect_redispatched"), ["root/parallel:0/0"], "{}", show(&events));
    let firsts = of_kind(&events, "effect_started").into_iter().filter(|e| e["event"]["attempt"] == 1).count();
    assert_eq!(firsts, 5, "the four that never started start as attempt 1:\n{}", show(&events));
}

#[test]
fn status_right_after_a_driver_is_killed_says_no_driver_is_attached() {
    let project = Project::with_examples(TUTTI);
    let (driver, run, _effect) = run_until_breakpoint(&project);
    assert_eq!(project.status(&run)["driverLive"], true);
    driver.signal(libc::SIGKILL);
    assert_eq!(driver.wait(DEADLINE).code, 128 + libc::SIGKILL);
    // The lease has not expired yet (10 s), but its holder is gone.
    let status = project.status(&run);
    assert_eq!(status["driverLive"], false, "{status}");
    let cancel = project.run(&["cancel", &run]);
    assert_eq!(cancel.code, 0, "a dead driver's lease does not block a cancel:\n{cancel}");
}

/// A process whose JavaScript never yields gives way to one Ctrl-C: the run fails (a process that never
/// yields is broken, and a resume would spin again) with an error naming the file and the cause.
#[test]
fn ctrl_c_stops_a_process_stuck_in_a_loop_that_never_awaits() {
    let project = Project::new(TUTTI);
    let file = project.write("loop.js", "export async function process() { while (true) {} }\n");
    let driver = project.spawn(&["run", "loop.js"]);
    let run = driver.run_id();
    // The loop never yields, so there is no event to wait for: give it a moment to spin.
    std::thread::sleep(Duration::from_millis(500));
    driver.signal(libc::SIGINT);
    let out = driver.wait(Duration::from_secs(2));
    assert_eq!(out.code, 1, "the run failed:\n{out}");
    let file = file.canonicalize().unwrap();
    let why = format!(
        "process {} did not yield: interrupted while running JavaScript (a loop that never awaits?)",
        file.display()
    );
    assert!(out.stderr.contains(&why), "names the file and the cause:\n{out}");
    let events = project.events(&run);
    let failed = of_kind(&events, "run_failed");
    assert_eq!(failed.len(), 1, "{}", show(&events));
    assert_eq!(failed[0]["event"]["error"]["name"], "ProcessDidNotYield", "{}", show(&events));
}

/// The same at module top level, before any run exists: exit 130 naming the file, and no run is created.
#[test]
fn ctrl_c_stops_a_process_file_whose_top_level_never_ends() {
    let project = Project::new(TUTTI);
    project.write("top.js", "for (;;) {}\nexport async function process() {}\n");
    let driver = project.spawn(&["run", "top.js"]);
    // Loading never finishes, so there is nothing to wait for: give it time to install its handlers and spin.
    std::thread::sleep(Duration::from_secs(1));
    driver.signal(libc::SIGINT);
    let out = driver.wait(Duration::from_secs(2));
    assert_eq!(out.code, 130, "{out}");
    assert!(out.stderr.contains("top.js did not finish loading: interrupted"), "{out}");
    assert!(!project.path(".tutti").exists(), "no run and no journal were created");
}

/// A running group whose driver is gone (kill -9, then Ctrl-C on a resumed run) is `interrupted`, not `running`,
/// in `status`, `ls` and `groups`, text and JSON, with the command that continues it; and its in-flight tasks are
/// listed with their harness and member.
#[test]
fn a_run_whose_driver_is_gone_is_interrupted_with_the_resume_command() {
    let project = Project::new(TUTTI);
    project.write(
        "team.js",
        r#"
import { defineTask } from "tutti";
const slow = defineTask("slow", (a) => ({ kind: "shell", title: `slow ${a.i}`, shell: { command: "sleep 30" } }));
export async function process(inputs, ctx) {
  const team = ctx.group("team", { members: 3 });
  return await team.all((m) => m.task(slow, { i: m.name }));
}
"#,
    );
    for (signal, resumed) in [(libc::SIGKILL, false), (libc::SIGINT, true)] {
        let driver = if resumed {
            let run = project.runs().last().expect("a run")["id"].as_str().expect("id").to_string();
            let mut command = project.tutti();
            command.args(["resume", &run]);
            project.spawn_command(command)
        } else {
            project.spawn(&["run", "team.js"])
        };
        let run = if resumed {
            project.runs().last().expect("a run")["id"].as_str().expect("id").to_string()
        } else {
            driver.run_id()
        };
        let started = |e: &Value| kind(e) == "effect_started";
        wait_for(DEADLINE, "three tasks started", || {
            project.events(&run).iter().filter(|e| started(e)).count() >= 3 * (1 + usize::from(resumed))
        });
        assert_eq!(project.status(&run)["status"], "running");
        driver.signal(signal);
        drop(driver.wait(DEADLINE));

        let resume = format!("tutti resume {run}");
        let status = project.status(&run);
        assert_eq!(status["status"], "interrupted", "{signal}: {status}");
        assert_eq!(status["resume"], resume.as_str());
        assert!(status["effects"].get("running").is_none(), "nothing runs without a driver: {status}");
        let text = project.run(&["status", &run]);
        assert!(text.stdout.contains("interrupted") && text.stdout.contains(&resume), "{signal}: {text}");
        if signal == libc::SIGKILL {
            // The journal still has them running: they are shown as stopped, with harness and member.
            assert_eq!(status["running"].as_array().map(Vec::len), Some(3), "{status}");
            assert_eq!(status["running"][0]["harness"], "shell");
            assert!(status["running"][0]["member"].as_str().is_some_and(|m| m.starts_with("team/")), "{status}");
            assert!(text.stdout.contains("stopped") && text.stdout.contains("member team/m1"), "{text}");
        }
        let ls = project.run(&["ls", "--json"]);
        let line: Value = serde_json::from_str(ls.stdout.lines().last().expect("a line")).expect("json");
        assert_eq!((line["status"].as_str(), line["resume"].as_str()), (Some("interrupted"), Some(resume.as_str())));
        let ls = project.run(&["ls"]);
        assert!(ls.stdout.contains("interrupted") && ls.stderr.contains(&resume), "{ls}");
        let groups = project.run(&["groups", "--json"]).json();
        if signal == libc::SIGKILL {
            assert_eq!(groups[0]["members"][0]["state"], "interrupted", "{groups}");
        }
        // `events` and `groups` default to the latest run.
        assert_eq!(project.run(&["events", "--json"]).stdout, project.run(&["events", &run, "--json"]).stdout);
    }
}
