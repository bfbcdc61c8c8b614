//! The journal in PostgreSQL (`--store postgres://…`), against a real server: a run is seen, controlled and
//! resumed from another folder, a driver killed with SIGKILL is resumed elsewhere with nothing run twice
//! unjournaled, and bad store URLs are refused with a message that names them.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;

use tutti_testkit::{DEADLINE, Output, Project, kind, of_kind};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

const PROCESS: &str = r#"
import { defineTask } from "tutti";
const step = defineTask("step", (a) => ({
  kind: "shell",
  title: `${a.b}-${a.s}`,
  shell: { command: `echo "$TUTTI_EFFECT_ID" >> "$LOG"; echo ${a.b}${a.s}` },
}));
export async function process(inputs, ctx) {
  const out = await ctx.parallel.all(["a", "b", "c"].map((b) => async () => {
    const seen = [];
    for (let s = 0; s < 4; s++) seen.push((await ctx.task(step, { b, s })).stdout.trim());
    return seen.join(",");
  }));
  return { out };
}
"#;

/// `tutti ARGS` in `project` on the journal at `url`, run to its end.
fn tutti(project: &Project, url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = project.tutti();
    command.arg("--store").arg(url).args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run tutti");
    Output {
        code: out.status.code().unwrap_or(128 + out.status.signal().unwrap_or(0)),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn events(project: &Project, url: &str, run: &str) -> Vec<serde_json::Value> {
    try_events(project, url, run).unwrap_or_else(|out| panic!("tutti events {run} --json failed:\n{out}"))
}

/// [`events`], or how `tutti events` failed (the run is not journaled yet, while it starts).
fn try_events(project: &Project, url: &str, run: &str) -> Result<Vec<serde_json::Value>, tutti_testkit::Output> {
    tutti_testkit::events_in(tutti(project, url, &["events", run, "--json"], &[]))
}

#[test]
fn a_run_in_postgres_is_listed_and_shown_from_another_folder_that_is_no_project() {
    let url = tutti_testkit::postgres::schema_url("cli_seen");
    let (a, b) = (Project::new(TUTTI), Project::new(TUTTI));
    a.write("p.js", PROCESS);
    let log = a.path("ran.log");
    let out = tutti(&a, &url, &["run", "p.js"], &[("LOG", log.to_str().unwrap())]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json()["out"][2], "c0,c1,c2,c3");
    let run = out.run_id();

    let ls = tutti(&b, &url, &["ls", "--json"], &[]);
    assert_eq!(ls.code, 0, "{ls}");
    assert!(ls.stdout.contains(&run), "{ls}");
    let status = tutti(&b, &url, &["status", &run, "--json"], &[]);
    assert_eq!(status.json()["status"], "completed", "{status}");
    assert!(!b.path(".tutti").exists(), "reading a run in PostgreSQL leaves the folder alone");
    // The project's own SQLite journal knows nothing of it.
    let local = b.run(&["ls"]);
    assert_ne!(local.code, 0, "{local}");
}

#[test]
fn a_driver_killed_mid_run_is_resumed_from_another_folder() {
    for kill_after in [2, 5] {
        let url = tutti_testkit::postgres::schema_url("cli_resume");
        let (a, b) = (Project::new(TUTTI), Project::new(TUTTI));
        a.write("p.js", PROCESS);
        let log = a.path("ran.log");
        let env = [("LOG", log.to_str().unwrap())];
        let kill = kill_after.to_string();
        let killed = tutti(&a, &url, &["run", "p.js"], &[env[0], ("TUTTI_FAULT_KILL_AFTER_COMMITS", &kill)]);
        assert_eq!(killed.code, 128 + libc::SIGKILL, "killed after {kill_after} commits: {killed}");
        let run = killed.run_id();

        let resumed = tutti(&b, &url, &["resume", &run], &env);
        assert_eq!(resumed.code, 0, "kill point {kill_after}: {resumed}");
        assert_eq!(resumed.json()["out"][0], "a0,a1,a2,a3", "{resumed}");

        let evs = events(&b, &url, &run);
        let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "no gaps");
        assert_eq!(of_kind(&evs, "effect_resolved").len(), 12, "each effect resolved once");
        assert_eq!(of_kind(&evs, "run_completed").len(), 1);
        // An effect ran twice only where the journal says it was dispatched again.
        let mut ran: BTreeMap<String, usize> = BTreeMap::new();
        for line in std::fs::read_to_string(&log).unwrap_or_default().lines() {
            *ran.entry(line.to_string()).or_default() += 1;
        }
        let again: Vec<&str> = evs
            .iter()
            .filter(|e| kind(e) == "effect_redispatched")
            .filter_map(|e| e["event"]["effect"].as_str())
            .collect();
        for (effect, n) in ran {
            assert!(n == 1 || again.contains(&effect.as_str()), "{effect} ran {n} times, re-dispatch unjournaled");
        }
    }
}

#[test]
fn a_breakpoint_is_approved_from_another_folder() {
    let url = tutti_testkit::postgres::schema_url("cli_approve");
    let (a, b) = (Project::with_examples(TUTTI), Project::new(TUTTI));
    let mut command = a.tutti();
    command.arg("--store").arg(&url).args(["run", "breakpoint.js"]);
    let driver = a.spawn_command(command);
    let run = driver.run_id();
    let mut effect = String::new();
    tutti_testkit::wait_for(DEADLINE, "the breakpoint's request", || {
        let evs = try_events(&b, &url, &run).unwrap_or_default();
        let found = evs.iter().find(|e| kind(e) == "effect_requested" && e["event"]["kind"] == "breakpoint");
        effect = found.and_then(|e| e["event"]["effect"].as_str()).unwrap_or_default().to_string();
        !effect.is_empty()
    });
    let approve = tutti(&b, &url, &["approve", &run, &effect, "--response", "ok"], &[]);
    assert_eq!(approve.code, 0, "{approve}");
    let out = driver.wait(DEADLINE);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json()["deployed"], true, "{out}");
}

#[test]
fn store_urls_tutti_cannot_use_are_refused_by_name() {
    let project = Project::new(TUTTI);
    let out = tutti(&project, "mysql://ann:pw@db/x", &["ls"], &[]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("--store") && out.stderr.contains("PostgreSQL URL"), "{out}");
    assert!(!out.stderr.contains("pw@"), "the password is not shown: {out}");

    project.write("tutti.toml", "[store]\nurl = \"sqlite:x.db\"\n");
    let out = project.run(&["ls"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("tutti.toml: [store] url"), "{out}");

    let out = tutti(&project, "postgres://ann:secret@127.0.0.1:1/x?connect_timeout=2", &["ls"], &[]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("cannot connect to the PostgreSQL journal at postgres://ann:***@127.0.0.1:1"), "{out}");
    assert!(!out.stderr.contains("secret"), "{out}");
}
