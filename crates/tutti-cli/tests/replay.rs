//! Replay divergence: a process edited under a stopped run so that a call changes makes `tutti resume` fail
//! with the non-determinism error naming both calls, and leaves the journal untouched; `tutti resume
//! --accept-changes` takes the edit, runs the changed task and every task after it again, and journals it.

use std::time::Duration;

use serde_json::{Value, json};
use tutti_testkit::{DEADLINE, Project, of_kind, wait_for};

const V1: &str = r#"import { defineTask } from "tutti";
const t = defineTask("t", (a) => ({ kind: "shell", shell: { command: `echo ${a.n}` } }));
export async function process(inputs, ctx) {
  const a = await ctx.task(t, { n: 1 });
  await ctx.breakpoint({ question: "go on?" });
  const b = await ctx.task(t, { n: 2 });
  return [a.stdout.trim(), b.stdout.trim()];
}
"#;

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

/// The journal exactly as `tutti events --json` prints it.
fn journal(project: &Project, run: &str) -> String {
    let out = project.run(&["events", run, "--json"]);
    assert_eq!(out.code, 0, "{out}");
    out.stdout
}

#[test]
fn edited_call_fails_resume_with_nondeterminism_and_touches_nothing() {
    let project = Project::new(TUTTI);
    project.write("p.js", V1);
    let driver = project.spawn(&["run", "p.js"]);
    let run = driver.run_id();
    project.wait_for_event(&run, "the breakpoint", |e| e["event"]["kind"] == "breakpoint");
    driver.signal(libc::SIGINT);
    assert_eq!(driver.wait(Duration::from_secs(30)).code, 130);
    let before = journal(&project, &run);

    project.write("p.js", V1.replace("{ n: 1 }", "{ n: 100 }"));
    let out = project.run(&["resume", &run]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("non-determinism at effect root/0"), "{out}");
    assert_eq!(out.stderr.matches("task \"t\"").count(), 2, "both calls must be named: {out}");
    assert_eq!(out.stderr.matches("p.js:4:").count(), 2, "both call sites must be named: {out}");
    assert!(out.stderr.contains(r#"{"n":1}"#) && out.stderr.contains(r#"{"n":100}"#), "both argument values: {out}");
    assert!(out.stderr.contains("Restore the process file"), "what to do: {out}");
    assert_eq!(journal(&project, &run), before, "a failed replay must not touch the journal");

    // Put the file back: the same run resumes and finishes.
    project.write("p.js", V1);
    let out = project.run(&["resume", &run, "--non-interactive"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), serde_json::json!(["1", "2"]));
}

/// Three shell tasks that each append their `n` to `side.txt`; the third's `n` comes from the second's result.
const CHAIN: &str = r#"import { defineTask } from "tutti";
const t = defineTask("t", (a) => ({ kind: "shell", shell: { command: `echo ${a.n} >> side.txt && echo ${a.n}` } }));
export async function process(inputs, ctx) {
  const a = await ctx.task(t, { n: 1 });
  const b = await ctx.task(t, { n: 2 });
  const c = await ctx.task(t, { n: Number(b.stdout.trim()) + 1 });
  await ctx.breakpoint({ question: "go on?" });
  return [a, b, c].map((r) => r.stdout.trim());
}
"#;

fn breakpoints(project: &Project, run: &str) -> usize {
    let events = project.events(run);
    of_kind(&events, "effect_requested").iter().filter(|e| e["event"]["kind"] == "breakpoint").count()
}

/// Run the chain up to its breakpoint, stop it, and edit the second task's arguments from 2 to 20; returns the
/// run id. The plain resume refuses the edit, showing both values, and appends nothing.
fn edited_chain(project: &Project) -> String {
    project.write("p.js", CHAIN);
    let driver = project.spawn(&["run", "p.js"]);
    let run = driver.run_id();
    wait_for(DEADLINE, "the breakpoint", || breakpoints(project, &run) == 1);
    driver.signal(libc::SIGINT);
    assert_eq!(driver.wait(Duration::from_secs(30)).code, 130);
    assert_eq!(project.read("side.txt").as_deref(), Some("1\n2\n3\n"));
    let before = journal(project, &run);

    project.write("p.js", CHAIN.replace("{ n: 2 }", "{ n: 20 }"));
    let out = project.run(&["resume", &run]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("non-determinism at effect root/1"), "{out}");
    assert!(out.stderr.contains(r#"{"n":2}"#) && out.stderr.contains(r#"{"n":20}"#), "both argument values: {out}");
    assert!(out.stderr.contains("--accept-changes"), "what to do: {out}");
    assert_eq!(journal(project, &run), before, "a refused change must not touch the journal");
    run
}

/// The journaled acceptance: the changed effect's old and new arguments and what runs again.
fn acceptance(project: &Project, run: &str) -> Value {
    let events = project.events(run);
    let accepted = of_kind(&events, "changes_accepted");
    assert_eq!(accepted.len(), 1, "one change accepted: {events:?}");
    accepted[0]["event"].clone()
}

#[test]
fn accept_changes_reruns_the_changed_task_and_those_after_it_and_journals_it() {
    let project = Project::new(TUTTI);
    let run = edited_chain(&project);

    let out = project.run(&["resume", &run, "--accept-changes", "--non-interactive"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), json!(["1", "20", "21"]));
    assert!(out.stderr.contains("accepted the change at root/1"), "{out}");
    assert_eq!(
        project.read("side.txt").as_deref(),
        Some("1\n2\n3\n20\n21\n"),
        "the changed task and the one after it ran again, the first did not"
    );
    let accepted = acceptance(&project, &run);
    assert_eq!(accepted["effect"], "root/1");
    assert_eq!(
        (&accepted["old_args"]["inline"], &accepted["new_args"]["inline"]),
        (&json!({"n": 2}), &json!({"n": 20}))
    );
    assert_eq!(accepted["superseded"], json!(["root/1", "root/2", "root/3"]));
    let text = project.run(&["events", &run]);
    assert_eq!(text.code, 0, "{text}");
    let line = text.stdout.lines().find(|l| l.contains("changes_accepted")).unwrap_or_default();
    assert!(line.contains(r#"root/1 task=t args {"n":2} -> {"n":20}; runs again: root/1, root/2, root/3"#), "{text}");

    // The ended run stays as it ended.
    let again = project.run(&["resume", &run]);
    assert_eq!((again.code, again.json()), (0, json!(["1", "20", "21"])), "{again}");
    let status = project.status(&run);
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(project.read("side.txt").as_deref(), Some("1\n2\n3\n20\n21\n"));
}

#[test]
fn a_resume_after_an_accepted_change_replays_the_new_results() {
    let project = Project::new(TUTTI);
    let run = edited_chain(&project);

    // Accept the change, and stop at the breakpoint it asks again.
    let driver = project.spawn(&["resume", &run, "--accept-changes"]);
    wait_for(DEADLINE, "the breakpoint asked again", || breakpoints(&project, &run) == 2);
    driver.signal(libc::SIGINT);
    assert_eq!(driver.wait(Duration::from_secs(30)).code, 130);
    assert_eq!(project.read("side.txt").as_deref(), Some("1\n2\n3\n20\n21\n"));
    acceptance(&project, &run);

    // A plain resume replays the re-run results: nothing runs again, and nothing is left to accept.
    let out = project.run(&["resume", &run, "--non-interactive"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), json!(["1", "20", "21"]));
    assert_eq!(project.read("side.txt").as_deref(), Some("1\n2\n3\n20\n21\n"));
    acceptance(&project, &run);
}

/// Regression: a run whose driver died before its first commit holds only `run_created`. Resuming it replayed
/// nothing, yet the host left the task descriptions out of the requests as it does while replaying, so the
/// first tasks were journaled without them and failed ("has no `shell.command`").
#[test]
fn a_run_with_only_its_creation_journaled_resumes_with_its_tasks_described() {
    let project = Project::new(TUTTI);
    project.write("p.js", V1);
    let out = project.run(&["run", "p.js", "--non-interactive"]);
    assert_eq!(out.code, 0, "{out}");
    let run = out.run_id();
    let exported = project.run(&["export", &run]);
    assert_eq!(exported.code, 0, "{exported}");
    let mut lines = exported.stdout.lines();
    let mut header: Value = serde_json::from_str(lines.next().expect("a header")).expect("json");
    header["run"]["events"] = json!(1);
    header["run"]["status"] = json!("running");
    let created = lines.next().expect("run_created");
    let fresh = Project::new(TUTTI);
    fresh.write("only-created.ndjson", format!("{header}\n{created}\n"));
    let imported = fresh.run(&["import", "only-created.ndjson"]);
    assert_eq!(imported.code, 0, "{imported}");
    let resumed = fresh.run(&["resume", &run, "--non-interactive"]);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert_eq!(resumed.json(), json!(["1", "2"]));
    let events = fresh.events(&run);
    let tasks: Vec<&Value> = of_kind(&events, "effect_requested").iter().map(|e| &e["event"]["task"]).collect();
    assert!(tasks.iter().all(|t| !t["inline"].is_null()), "every request has its task: {tasks:?}");
}
