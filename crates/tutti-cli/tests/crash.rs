//! Crash tests: the orchestrator is killed with SIGKILL at many points of a run with parallel branches, and
//! `tutti resume` must finish every such run with the same output as an uninterrupted one, lose no event,
//! and never run an effect again without journaling the re-dispatch.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const PROCESS: &str = r#"
import { defineTask } from "tutti";
const step = defineTask("step", (a) => ({
  kind: "shell",
  title: `${a.b}-${a.s}`,
  shell: { command: `echo "$TUTTI_EFFECT_ID" >> ran.log; echo ${a.b}${a.s}` },
}));
export async function process(inputs, ctx) {
  const out = await ctx.parallel.all(["a", "b", "c", "d"].map((b) => async () => {
    const seen = [];
    for (let s = 0; s < 5; s++) seen.push((await ctx.task(step, { b, s })).stdout.trim());
    return seen.join(",");
  }));
  const fin = await ctx.task(step, { b: "z", s: out.length });
  return { out, fin: fin.stdout.trim() };
}
"#;

fn tutti(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tutti"));
    c.arg("--home").arg(home).current_dir(home).env_remove("TUTTI_FAULT_KILL_AFTER_COMMITS");
    c
}

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.js"), PROCESS).unwrap();
    dir
}

fn run_id(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.starts_with("tutti: run ")).unwrap_or_else(|| panic!("no run id in {err}"));
    line.split_whitespace().nth(2).unwrap().to_string()
}

fn events(home: &Path, run: &str) -> Vec<Value> {
    let out = tutti(home).args(["events", run, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn ran(home: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(home.join("ran.log")).unwrap_or_default().lines() {
        *counts.entry(line.to_string()).or_default() += 1;
    }
    counts
}

fn field<'a>(e: &'a Value, key: &str) -> &'a str {
    e["event"][key].as_str().unwrap_or("")
}

/// Check one killed-and-resumed run against the journal and the side-effect log.
fn check_resumed(home: &Path, run: &str, k: u64) {
    let evs = events(home, run);
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "kill point {k}: journal has gaps");
    // Killed after the commit that ended the run: resume only reports the journaled end.
    let ended = evs.iter().any(|e| field(e, "type") == "run_completed");
    let boundary = evs
        .iter()
        .position(|e| field(e, "type") == "driver_attached" && e["event"]["resumed"] == true)
        .unwrap_or_else(|| {
            assert!(ended, "kill point {k}: neither resumed nor ended");
            evs.len()
        });
    let resolved_before: BTreeSet<&str> =
        evs[..boundary].iter().filter(|e| field(e, "type") == "effect_resolved").map(|e| field(e, "effect")).collect();
    let redispatched: BTreeSet<&str> = evs[boundary..]
        .iter()
        .filter(|e| field(e, "type") == "effect_redispatched")
        .map(|e| field(e, "effect"))
        .collect();
    let requested: Vec<&str> =
        evs.iter().filter(|e| field(e, "type") == "effect_requested").map(|e| field(e, "effect")).collect();
    let resolutions: Vec<&str> =
        evs.iter().filter(|e| field(e, "type") == "effect_resolved").map(|e| field(e, "effect")).collect();
    let mut once: Vec<&str> = resolutions.clone();
    once.sort();
    once.dedup();
    assert_eq!(once.len(), resolutions.len(), "kill point {k}: an effect was resolved twice");
    assert_eq!(requested.len(), resolutions.len(), "kill point {k}: requests without results");
    for (effect, n) in ran(home) {
        if resolved_before.contains(effect.as_str()) {
            assert_eq!(n, 1, "kill point {k}: {effect} completed before the kill but ran again");
        } else if n > 1 {
            assert!(redispatched.contains(effect.as_str()), "kill point {k}: {effect} ran {n} times unjournaled");
        }
    }
}

#[test]
fn kill_9_at_every_commit_then_resume_gives_the_uninterrupted_result() {
    let reference = project();
    let out = tutti(reference.path()).args(["run", "p.js"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = out.stdout;
    assert!(String::from_utf8_lossy(&expected).contains("a0,a1,a2,a3,a4"));

    let mut kills = 0;
    for k in 1.. {
        let dir = project();
        let home = dir.path();
        let first = tutti(home).args(["run", "p.js"]).env("TUTTI_FAULT_KILL_AFTER_COMMITS", k.to_string()).output().unwrap();
        if first.status.success() {
            assert_eq!(first.stdout, expected, "a run that outlived kill point {k} differs");
            break;
        }
        assert_eq!(first.status.signal(), Some(libc::SIGKILL), "kill point {k}: {:?}", first.status);
        kills += 1;
        let run = run_id(&first);
        let resumed = tutti(home).args(["resume", &run]).output().unwrap();
        assert!(resumed.status.success(), "kill point {k}: {}", String::from_utf8_lossy(&resumed.stderr));
        assert_eq!(resumed.stdout, expected, "kill point {k}: resumed output differs");
        check_resumed(home, &run, k);
    }
    assert!(kills >= 20, "only {kills} distinct kill points");
}
