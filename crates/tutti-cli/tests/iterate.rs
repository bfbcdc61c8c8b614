//! `tutti iterate` and `tutti post` as an outer agent uses them: a script stands in for the agent, performing
//! each pending agent task and answering the breakpoint, while tutti runs the shell task itself. A kill -9 of
//! an iteration in the middle of its shell task loses nothing.

use std::time::Duration;

use serde_json::{Value, json};
use tutti_testkit::{Project, of_kind, show};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

const PROCESS: &str = r#"
import { defineTask } from "@a5c-ai/babysitter-sdk";
const ask = defineTask("ask", (a) => ({ kind: "agent", title: `ask ${a.n}`, agent: { prompt: `question ${a.n}` },
  outputSchema: { type: "object", required: ["answer"], properties: { answer: { type: "string" } } } }));
const build = defineTask("build", () => ({ kind: "shell", title: "build",
  shell: { command: "echo started >> build.log; while [ ! -e gate ]; do sleep 0.05; done; echo built" } }));
export async function process(inputs, ctx) {
  const [a, b] = await ctx.parallel.all([() => ctx.task(ask, { n: 1 }), () => ctx.task(ask, { n: 2 })]);
  const built = await ctx.task(build, {});
  const ok = await ctx.breakpoint({ question: "ship it?" });
  const c = await ctx.task(ask, { n: 3 });
  return { answers: [a.answer, b.answer, c.answer], built: built.stdout.trim(), approved: ok.approved };
}
"#;

fn iterate(project: &Project, target: &str, extra: &[&str]) -> Value {
    let mut args = vec!["iterate", target, "--json"];
    args.extend_from_slice(extra);
    let out = project.run(&args);
    assert_eq!(out.code, 0, "{out}");
    out.json()
}

fn pending(report: &Value) -> Vec<(String, String)> {
    report["pending"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (p["effectId"].as_str().unwrap_or("").to_string(), p["prompt"].as_str().unwrap_or("").to_string()))
        .collect()
}

#[test]
fn a_script_drives_a_run_through_iterate_and_post_and_a_kill_9_loses_nothing() {
    let project = Project::new(TUTTI);
    project.write("p.js", PROCESS);
    let first = iterate(&project, "p.js", &["--harness", "external"]);
    let run = first["runId"].as_str().expect("a run id").to_string();
    assert_eq!(first["status"], "waiting");
    assert_eq!(
        pending(&first),
        vec![("root/parallel:0/0".into(), "question 1".into()), ("root/parallel:1/0".into(), "question 2".into())]
    );
    assert_eq!(first["pending"][0]["outputSchema"]["required"], json!(["answer"]));
    assert_eq!(first["pending"][0]["args"], json!({ "n": 1 }));
    let status = project.run(&["status", &run]);
    assert!(status.stdout.contains("waits for its result from outside: `tutti post"), "{status}");

    // The outer agent answers both; the next iteration runs the shell task, and is killed while it does.
    for (effect, answer) in [("root/parallel:0/0", "one"), ("root/parallel:1/0", "two")] {
        let out = project.run(&["post", &run, effect, "--value", &json!({ "answer": answer }).to_string()]);
        assert_eq!(out.code, 0, "{out}");
    }
    let killed = project.spawn(&["iterate", &run, "--json"]);
    project.wait_for_event(&run, "the build started", |e| e["event"]["type"] == "effect_started");
    killed.signal(libc::SIGKILL);
    let out = killed.wait(Duration::from_secs(30));
    assert_eq!(out.code, 128 + libc::SIGKILL, "{out}");

    // The next iteration replays both answers, runs the build again to its end, and stops at the breakpoint.
    project.write("gate", "");
    let second = iterate(&project, &run, &[]);
    assert_eq!(pending(&second), vec![("root/1".to_string(), "ship it?".to_string())], "{second}");
    assert_eq!(project.read("build.log").unwrap_or_default().lines().count(), 2, "started, killed, started again");
    let out = project.run(&["approve", &run, "root/1"]);
    assert_eq!(out.code, 0, "{out}");
    let third = iterate(&project, &run, &[]);
    assert_eq!(pending(&third), vec![("root/2".to_string(), "question 3".to_string())], "{third}");
    let out = project.run(&["post", &run, "root/2", "--value", r#"{"answer": "three"}"#]);
    assert_eq!(out.code, 0, "{out}");
    let last = iterate(&project, &run, &[]);
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(last["output"], json!({ "answers": ["one", "two", "three"], "built": "built", "approved": true }));
    assert_eq!(last["pending"], json!([]));

    let events = project.events(&run);
    let posted = of_kind(&events, "control_applied");
    assert_eq!(posted.len(), 4, "three posts and one approval, each applied once: {}", show(&events));
    let routed: Vec<&str> =
        of_kind(&events, "effect_routed").iter().filter_map(|e| e["event"]["harness"].as_str()).collect();
    assert_eq!(routed.iter().filter(|h| **h == "external").count(), 3, "{routed:?}");
}

#[test]
fn iterate_without_exec_leaves_shell_tasks_to_the_outer_agent_and_names_what_it_cannot_find() {
    let project = Project::new(TUTTI);
    project.write("p.js", PROCESS);
    let first = iterate(&project, "p.js", &["--harness", "external", "--no-exec"]);
    let run = first["runId"].as_str().expect("a run id").to_string();
    for effect in ["root/parallel:0/0", "root/parallel:1/0"] {
        assert_eq!(project.run(&["post", &run, effect, "--value", r#"{"answer": "x"}"#]).code, 0);
    }
    let second = iterate(&project, &run, &[]);
    assert_eq!(pending(&second).first().map(|p| p.0.as_str()), Some("root/0"), "{second}");
    assert_eq!(second["pending"][0]["kind"], "shell");
    assert!(project.read("build.log").is_none(), "the shell task did not run");

    let missing = project.run(&["iterate", "nothing-here"]);
    assert_eq!(missing.code, 2, "{missing}");
    assert!(missing.stderr.contains("no such run and no such process file"), "{missing}");
}
