//! Crash tests: the orchestrator is killed with SIGKILL at many points of a run with parallel branches, and
//! `tutti resume` must finish every such run with the same output as an uninterrupted one, lose no event,
//! and never run an effect again without journaling the re-dispatch.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;

use serde_json::Value;
use tutti_testkit::{Output, Project, kind};

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

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

fn project() -> Project {
    let project = Project::new(TUTTI);
    project.write("p.js", PROCESS);
    project
}

/// `tutti run p.js`, SIGKILLed right after its `k`th commit.
fn run_killed_after(project: &Project, k: u64) -> Output {
    let mut command = project.tutti();
    command.args(["run", "p.js"]).env("TUTTI_FAULT_KILL_AFTER_COMMITS", k.to_string());
    let out = command.output().unwrap();
    Output {
        code: out.status.code().unwrap_or(128 + out.status.signal().unwrap_or(0)),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ran(project: &Project) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in project.read("ran.log").unwrap_or_default().lines() {
        *counts.entry(line.to_string()).or_default() += 1;
    }
    counts
}

fn field<'a>(e: &'a Value, key: &str) -> &'a str {
    e["event"][key].as_str().unwrap_or("")
}

/// Check one killed-and-resumed run against the journal and the side-effect log.
fn check_resumed(project: &Project, run: &str, k: u64) {
    let evs = project.events(run);
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "kill point {k}: journal has gaps");
    // Killed after the commit that ended the run: resume only reports the journaled end.
    let ended = evs.iter().any(|e| kind(e) == "run_completed");
    let boundary =
        evs.iter().position(|e| kind(e) == "driver_attached" && e["event"]["resumed"] == true).unwrap_or_else(|| {
            assert!(ended, "kill point {k}: neither resumed nor ended");
            evs.len()
        });
    let resolved_before: BTreeSet<&str> =
        evs[..boundary].iter().filter(|e| kind(e) == "effect_resolved").map(|e| field(e, "effect")).collect();
    let redispatched: BTreeSet<&str> =
        evs[boundary..].iter().filter(|e| kind(e) == "effect_redispatched").map(|e| field(e, "effect")).collect();
    let requested: Vec<&str> =
        evs.iter().filter(|e| kind(e) == "effect_requested").map(|e| field(e, "effect")).collect();
    let resolutions: Vec<&str> =
        evs.iter().filter(|e| kind(e) == "effect_resolved").map(|e| field(e, "effect")).collect();
    let mut once: Vec<&str> = resolutions.clone();
    once.sort();
    once.dedup();
    assert_eq!(once.len(), resolutions.len(), "kill point {k}: an effect was resolved twice");
    assert_eq!(requested.len(), resolutions.len(), "kill point {k}: requests without results");
    for (effect, n) in ran(project) {
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
    let out = reference.run(&["run", "p.js"]);
    assert_eq!(out.code, 0, "{out}");
    let expected = out.stdout;
    assert!(expected.contains("a0,a1,a2,a3,a4"), "{expected}");

    let mut kills = 0;
    for k in 1.. {
        let project = project();
        let first = run_killed_after(&project, k);
        if first.code == 0 {
            assert_eq!(first.stdout, expected, "a run that outlived kill point {k} differs");
            break;
        }
        assert_eq!(first.code, 128 + libc::SIGKILL, "kill point {k}: {first}");
        kills += 1;
        let run = first.run_id();
        let resumed = project.run(&["resume", &run]);
        assert_eq!(resumed.code, 0, "kill point {k}: {resumed}");
        assert_eq!(resumed.stdout, expected, "kill point {k}: resumed output differs");
        check_resumed(&project, &run, k);
    }
    assert!(kills >= 20, "only {kills} distinct kill points");
}
