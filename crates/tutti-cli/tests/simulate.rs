//! `tutti run --simulate[=FILE]`: a process file runs with every effect answered at once and nothing executed
//! (checked with strace: tutti's own exec is the only one) and the working tree untouched; the run is
//! journaled as simulated; canned answers go by task id or title.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use tutti_testkit::{Project, of_kind, show};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

/// Every file under `root` but tutti's own `.tutti/`, with its contents.
fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == ".tutti") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).expect("read file"));
            }
        }
    }
    files
}

#[test]
fn every_example_completes_simulated_without_executing_anything_or_touching_the_tree() {
    let project = Project::with_examples(TUTTI);
    let before = tree(project.root());
    let mut examples: Vec<String> = before
        .keys()
        .filter_map(|p| p.strip_prefix(project.root()).ok())
        .filter(|p| p.extension().is_some_and(|e| e == "js") && p.parent() == Some(Path::new("")))
        .map(|p| p.display().to_string())
        .collect();
    examples.sort();
    assert!(examples.len() >= 10, "{examples:?}");
    let traces = tempfile::tempdir().expect("a folder for traces");
    for example in &examples {
        // An example whose logic reads a shell task's output comes with canned answers beside it.
        let canned = example.replace(".js", ".simulate.json");
        let simulate =
            if project.path(&canned).exists() { format!("--simulate={canned}") } else { "--simulate".into() };
        let trace = traces.path().join(format!("{example}.trace"));
        let mut command = Command::new("strace");
        command.args(["-f", "-qq", "-e", "trace=execve", "-o"]).arg(&trace).arg(TUTTI);
        command.arg("--home").arg(project.root()).args(["run", example, &simulate]).current_dir(project.root());
        let out = command.output().expect("strace (installed by .ci/run)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{example}:\n{stderr}");
        assert!(stderr.contains("completed"), "{example}:\n{stderr}");
        let execs: Vec<String> = std::fs::read_to_string(&trace)
            .expect("the trace")
            .lines()
            .filter(|l| l.contains("execve("))
            .map(String::from)
            .collect();
        assert_eq!(execs.len(), 1, "{example}: only tutti itself may be executed:\n{}", execs.join("\n"));
    }
    assert_eq!(tree(project.root()), before, "the working tree is as it was");
}

#[test]
fn a_simulated_run_answers_from_schemas_and_canned_answers_and_says_it_was_simulated() {
    let project = Project::new(TUTTI);
    project.write(
        "p.js",
        r#"
import { defineTask } from "tutti";
const review = defineTask("review", () => ({ kind: "agent", title: "review the diff", agent: { prompt: "review" },
  outputSchema: { type: "object", required: ["verdict", "score"], properties: {
    verdict: { enum: ["approve", "reject"] }, score: { type: "integer", minimum: 1 } } } }));
const deploy = defineTask("deploy", () => ({ kind: "shell", title: "Deploy", shell: { command: "touch deployed" } }));
const lint = defineTask("lint", () => ({ kind: "shell", shell: { command: "touch linted" } }));
export async function process(inputs, ctx) {
  const verdict = await ctx.task(review, {});
  const ok = await ctx.breakpoint({ question: "ship?" });
  await ctx.sleepUntil(Date.now() + 3600 * 1000);
  const linted = await ctx.task(lint, {});
  let deployed;
  try { deployed = await ctx.task(deploy, {}); } catch (e) { deployed = e.message; }
  return { verdict, approved: ok.approved, linted: linted.success, deployed };
}
"#,
    );
    project
        .write("answers.json", r#"{ "Deploy": { "$error": { "name": "DeployError", "message": "no prod today" } } }"#);
    let out = project.run(&["run", "p.js", "--simulate=answers.json"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        out.json(),
        json!({ "verdict": { "verdict": "approve", "score": 1 }, "approved": true, "linted": true, "deployed": "no prod today" })
    );
    assert!(!project.path("linted").exists() && !project.path("deployed").exists(), "nothing ran");
    let status = project.run(&["status"]);
    assert!(status.stdout.contains("completed (simulated"), "{status}");
    assert_eq!(project.status(&out.run_id())["simulated"], true);
    let ls = project.run(&["ls", "--json"]);
    assert!(ls.stdout.contains("\"simulated\":true"), "{ls}");
    let events = project.events(&out.run_id());
    let created = &of_kind(&events, "run_created")[0]["event"]["options"]["simulate"];
    assert!(created["file"].as_str().is_some_and(|f| f.ends_with("answers.json")), "{}", show(&events));

    // A canned-answers file that cannot be read is bad input, named.
    let bad = project.run(&["run", "p.js", "--simulate=missing.json"]);
    assert_eq!(bad.code, 2, "{bad}");
    assert!(bad.stderr.contains("--simulate file missing.json"), "{bad}");
}
