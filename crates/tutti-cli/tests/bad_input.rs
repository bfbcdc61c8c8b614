//! Bad input of every kind gets exit code 2 and a message naming the file, flag or field at fault, and it
//! costs nothing: the runs already in the journal are still there, unchanged, and no half-made run appears.

use serde_json::Value;
use tutti_testkit::{Output, Project};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

const ECHO_INPUTS: &str = "export async function process(inputs) { return inputs; }\n";

/// A project holding one finished run, so that each test can check nothing was lost.
fn project_with_a_run() -> (Project, Vec<Value>) {
    let project = Project::new(TUTTI);
    project.write("ok.js", ECHO_INPUTS);
    let out = project.run(&["run", "ok.js", "--inputs", r#"{"kept": true}"#]);
    assert_eq!(out.code, 0, "{out}");
    let runs = project.runs();
    assert_eq!(runs.len(), 1);
    (project, runs)
}

/// Exit 2, every needle on stderr, no panic, and the journal exactly as before.
fn assert_refused(project: &Project, before: &[Value], out: &Output, needles: &[&str]) {
    assert_eq!(out.code, 2, "{out}");
    for needle in needles {
        assert!(out.stderr.contains(needle), "expected {needle:?} on stderr:\n{out}");
    }
    assert!(!out.stderr.contains("panicked"), "{out}");
    // The journal was closed as a run closes it: no log left beside it.
    for log in [".tutti/tutti.db-wal", ".tutti/tutti.db-shm"] {
        assert!(!project.path(log).exists(), "{log} was left behind");
    }
    assert_eq!(project.runs(), before, "the journal changed");
}

#[test]
fn missing_process_file_is_named() {
    let (project, before) = project_with_a_run();
    let out = project.run(&["run", "nowhere.js"]);
    assert_refused(&project, &before, &out, &["nowhere.js"]);
}

#[test]
fn syntax_error_names_the_file_and_line() {
    let (project, before) = project_with_a_run();
    project.write("broken.js", "export async function process(inputs, ctx) {\n  return {;\n}\n");
    let out = project.run(&["run", "broken.js"]);
    assert_refused(&project, &before, &out, &["broken.js:2", "SyntaxError"]);
}

#[test]
fn module_without_a_process_export_is_refused() {
    let (project, before) = project_with_a_run();
    project.write("noexport.js", "export const helper = 1;\n");
    let out = project.run(&["run", "noexport.js"]);
    assert_refused(&project, &before, &out, &["noexport.js", "process"]);
}

#[test]
fn host_module_import_names_it_and_suggests_a_task() {
    let (project, before) = project_with_a_run();
    project.write("fs.js", "import { readFileSync } from \"fs\";\nexport async function process() { return 1; }\n");
    let out = project.run(&["run", "fs.js"]);
    assert_refused(&project, &before, &out, &["fs.js", "\"fs\"", "shell"]);
    assert!(out.stderr.contains("node"), "suggests a node task too:\n{out}");
}

#[test]
fn inline_inputs_that_are_not_json_are_refused() {
    let (project, before) = project_with_a_run();
    let out = project.run(&["run", "ok.js", "--inputs", "{bad"]);
    assert_refused(&project, &before, &out, &["--inputs", "JSON"]);
}

#[test]
fn inputs_file_that_does_not_exist_is_named() {
    let (project, before) = project_with_a_run();
    let out = project.run(&["run", "ok.js", "--inputs", "missing.json"]);
    assert_refused(&project, &before, &out, &["--inputs", "missing.json"]);
}

#[test]
fn inputs_file_with_bad_json_is_named() {
    let (project, before) = project_with_a_run();
    project.write("inputs.json", "{\"a\": }");
    let out = project.run(&["run", "ok.js", "--inputs", "inputs.json"]);
    assert_refused(&project, &before, &out, &["--inputs", "inputs.json", "invalid JSON"]);
}

#[test]
fn inputs_file_is_read_when_it_exists() {
    let (project, _) = project_with_a_run();
    project.write("in.json", r#"{"from": "file"}"#);
    let out = project.run(&["run", "ok.js", "--inputs", "in.json"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), serde_json::json!({ "from": "file" }));
}

#[test]
fn unknown_harness_is_named() {
    let (project, before) = project_with_a_run();
    let out = project.run(&["run", "ok.js", "--harness", "nope"]);
    assert_refused(&project, &before, &out, &["--harness", "\"nope\""]);
}

#[test]
fn malformed_tutti_toml_names_the_file_and_key() {
    let (project, before) = project_with_a_run();
    project.write("tutti.toml", "[defaults]\nmax_paralel = 3\n");
    let out = project.run(&["run", "ok.js"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("tutti.toml") && out.stderr.contains("max_paralel"), "{out}");

    project.write("tutti.toml", "[defaults\n");
    let out = project.run(&["ls"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("tutti.toml") && out.stderr.contains("line 1"), "{out}");

    // Every command reads tutti.toml; once it is fixed, the journal is as it was.
    std::fs::remove_file(project.path("tutti.toml")).unwrap();
    assert_eq!(project.runs(), before, "the journal changed");
}

#[test]
fn harness_without_a_program_is_named() {
    let (project, before) = project_with_a_run();
    project.write("tutti.toml", "[harness.empty]\ncommand = []\n");
    let out = project.run(&["run", "ok.js"]);
    assert_eq!(out.code, 2, "{out}");
    for needle in ["tutti.toml", "[harness.empty]", "command"] {
        assert!(out.stderr.contains(needle), "expected {needle:?} on stderr:\n{out}");
    }
    std::fs::remove_file(project.path("tutti.toml")).unwrap();
    assert_eq!(project.runs(), before, "the journal changed");
}

#[test]
fn corrupted_database_is_reported_without_a_panic() {
    let project = Project::new(TUTTI);
    project.write("ok.js", ECHO_INPUTS);
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    project.write(".tutti/tutti.db", &garbage);
    for args in [&["run", "ok.js"][..], &["ls"], &["status"], &["events", "01ANYTHING"], &["resume", "01ANYTHING"]] {
        let out = project.run(args);
        assert_eq!(out.code, 2, "tutti {args:?}:\n{out}");
        assert!(out.stderr.contains("tutti.db"), "names the database file:\n{out}");
        assert!(out.stderr.contains("is damaged"), "says what is wrong:\n{out}");
        assert!(!out.stderr.contains("panicked"), "{out}");
    }
    assert_eq!(std::fs::read(project.db()).unwrap(), garbage, "tutti must not overwrite a damaged journal");
}

#[test]
fn max_parallel_zero_is_a_usage_error() {
    let (project, before) = project_with_a_run();
    let out = project.run(&["run", "ok.js", "--max-parallel", "0"]);
    assert_refused(&project, &before, &out, &["--max-parallel", "invalid value"]);
}

#[test]
fn a_task_naming_a_harness_the_project_lacks_exits_2_naming_the_effect_and_harness() {
    let project = Project::new(TUTTI);
    project.write(
        "typo.js",
        r#"import { defineTask } from "tutti";
export const t = defineTask("t", () => ({ kind: "agent", harness: "claud", agent: { prompt: "hi" } }));
export async function process(inputs, ctx) { return await ctx.task(t, {}); }
"#,
    );
    let out = project.run(&["run", "typo.js"]);
    assert_eq!(out.code, 2, "{out}");
    for needle in ["NoHarness", "effect root/0", "claud", "tutti.toml"] {
        assert!(out.stderr.contains(needle), "expected {needle:?} on stderr:\n{out}");
    }
}

#[test]
fn an_import_out_of_the_project_root_is_refused_without_reading_it() {
    let (project, before) = project_with_a_run();
    let escape = "../../../../../../../../etc/passwd";
    project.write("escape.js", format!("import \"{escape}\";\nexport async function process() {{ return 1; }}\n"));
    let out = project.run(&["run", "escape.js"]);
    let root = project.root().canonicalize().unwrap();
    let outside = format!("outside the project root {}; imports must stay inside it", root.display());
    assert_refused(&project, &before, &out, &[&format!("escape.js imports \"{escape}\""), &outside]);
    assert!(!out.stderr.contains("root:"), "nothing of the file is shown:\n{out}");
}
