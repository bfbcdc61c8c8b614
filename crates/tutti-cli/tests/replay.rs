//! Replay divergence: a process edited under a stopped run so that a call changes makes `tutti resume` fail
//! with the non-determinism error naming both calls, and leaves the journal untouched.

use std::time::Duration;

use tutti_testkit::Project;

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
