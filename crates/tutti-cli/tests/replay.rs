//! Replay divergence: a process edited under a stopped run so that a call changes makes `tutti resume` fail
//! with the non-determinism error naming both calls, and leaves the journal untouched.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const V1: &str = r#"import { defineTask } from "tutti";
const t = defineTask("t", (a) => ({ kind: "shell", shell: { command: `echo ${a.n}` } }));
export async function process(inputs, ctx) {
  const a = await ctx.task(t, { n: 1 });
  await ctx.breakpoint({ question: "go on?" });
  const b = await ctx.task(t, { n: 2 });
  return [a.stdout.trim(), b.stdout.trim()];
}
"#;

fn tutti(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tutti"));
    c.arg("--home").arg(home).current_dir(home);
    c
}

fn journal(home: &Path, run: &str) -> String {
    let out = tutti(home).args(["events", run, "--json"]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn only_run(home: &Path) -> String {
    let out = tutti(home).args(["ls", "--json"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let run: serde_json::Value = serde_json::from_str(text.lines().next().expect("a run")).unwrap();
    run["id"].as_str().unwrap().to_string()
}

#[test]
fn edited_call_fails_resume_with_nondeterminism_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    std::fs::write(home.join("p.js"), V1).unwrap();
    let mut child = tutti(home).args(["run", "p.js"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let run = loop {
        assert!(Instant::now() < deadline, "the run never reached its breakpoint");
        if home.join(".tutti/tutti.db").exists() {
            let out = tutti(home).args(["ls", "--json"]).output().unwrap();
            if !out.stdout.is_empty() {
                let run = only_run(home);
                if journal(home, &run).contains("\"kind\":\"breakpoint\"") {
                    break run;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let before = journal(home, &run);

    std::fs::write(home.join("p.js"), V1.replace("{ n: 1 }", "{ n: 100 }")).unwrap();
    let out = tutti(home).args(["resume", &run]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("non-determinism at effect root/0"), "{err}");
    assert!(err.matches("task \"t\"").count() == 2, "both calls must be named: {err}");
    assert!(err.contains("p.js:4:"), "the call site must be named: {err}");
    assert_eq!(journal(home, &run), before, "a failed replay must not touch the journal");

    // Put the file back: the same run resumes and finishes.
    std::fs::write(home.join("p.js"), V1).unwrap();
    let out = tutti(home).args(["resume", &run, "--non-interactive"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value, serde_json::json!(["1", "2"]));
}
