//! Where babysitter is lenient, tutti is too, so that its library's files run unchanged: a task tutti cannot
//! execute itself goes to an agent, `defineTask(id, object)` fails only when called, an invalid output schema
//! is a warning, `globalTaskRegistry` lets a file drop a task id two modules define, and errors name the
//! schema rule or the callee. Each test is a small process file with the shape seen in the library.

use tutti_testkit::{Project, of_kind, show};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

/// A default agent that notes each prompt it gets in `prompts.log` and answers `{"ok": true}`.
const AGENT: &str = r#"
[defaults]
harness = "agent"
[harness.agent]
command = ["sh", "-c", "cat >> prompts.log; echo >> prompts.log; echo '{\"ok\": true}'"]
[harness.coder]
command = ["sh", "-c", "cat > /dev/null; echo '{\"code\": \"abc\"}'"]
"#;

fn project(process: &str) -> Project {
    let project = Project::new(TUTTI);
    project.write("tutti.toml", AGENT);
    project.write("p.js", process);
    project
}

#[test]
fn node_and_shell_tasks_with_nothing_to_execute_go_to_an_agent_with_their_description() {
    let project = project(
        r#"
import { defineTask } from "@a5c-ai/babysitter-sdk";
const tally = defineTask("tally-votes", () => ({ kind: "node", title: "tally votes", description: "Count the votes in votes.json" }));
const inline = defineTask("inline", () => ({ kind: "node", title: "inline", node: { script: async () => 1 } }));
const described = defineTask("described", () => ({ kind: "shell", title: "describe only", shell: { description: "run the linters" } }));
export async function process(inputs, ctx) {
  return [await ctx.task(tally, {}), await ctx.task(inline, {}), await ctx.task(described, {})];
}
"#,
    );
    let out = project.run(&["run", "p.js"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), serde_json::json!([{ "ok": true }, { "ok": true }, { "ok": true }]));
    let events = project.events(&out.run_id());
    let reasons: Vec<&str> =
        of_kind(&events, "effect_routed").iter().filter_map(|e| e["event"]["reason"].as_str()).collect();
    assert_eq!(reasons.len(), 3, "{}", show(&events));
    assert!(reasons[0].starts_with("a node task with no node.script or node.entry, so an agent"), "{reasons:?}");
    assert!(reasons[1].starts_with("a node task with no node.script"), "a function is no script: {reasons:?}");
    assert!(reasons[2].starts_with("a shell task with no shell.command"), "{reasons:?}");
    let prompts = project.read("prompts.log").unwrap_or_default();
    assert!(prompts.contains("Count the votes in votes.json") && prompts.contains("run the linters"), "{prompts}");
}

#[test]
fn define_task_with_an_object_fails_only_when_the_task_is_called() {
    let project = project(
        r#"
import { defineTask } from "@a5c-ai/babysitter-sdk";
const odd = defineTask("odd", { kind: "agent", title: "odd" });
const fine = defineTask("fine", () => ({ kind: "agent", agent: { prompt: "hi" } }));
export async function process(inputs, ctx) {
  const answer = await ctx.task(fine, {});
  return inputs && inputs.callOdd ? await ctx.task(odd, {}) : answer;
}
"#,
    );
    let out = project.run(&["run", "p.js"]);
    assert_eq!((out.code, out.json()), (0, serde_json::json!({ "ok": true })), "{out}");
    let called = project.run(&["run", "p.js", "--inputs", r#"{"callOdd": true}"#]);
    assert_eq!(called.code, 1, "{called}");
    assert!(called.stderr.contains(r#"defineTask("odd"): the second argument must be a builder function"#), "{called}");
}

#[test]
fn an_invalid_output_schema_is_one_warning_naming_the_file_and_task_and_counts_as_none() {
    let project = project(
        r#"
import { defineTask } from "@a5c-ai/babysitter-sdk";
const loose = defineTask("loose", (a) => ({ kind: "agent", agent: { prompt: `part ${a.n}` }, outputSchema: { type: "any" } }));
export async function process(inputs, ctx) {
  return [await ctx.task(loose, { n: 1 }), await ctx.task(loose, { n: 2 })];
}
"#,
    );
    let out = project.run(&["run", "p.js"]);
    assert_eq!(out.code, 0, "{out}");
    let warnings: Vec<&str> =
        out.stderr.lines().filter(|l| l.contains("outputSchema is not a valid JSON Schema")).collect();
    assert_eq!(warnings.len(), 1, "one warning for the task, not one per call:\n{out}");
    assert!(warnings[0].contains(r#"task "loose""#) && warnings[0].contains("p.js:"), "{}", warnings[0]);
    // No corrective turn: the agent was asked twice, once per call.
    let prompts = project.read("prompts.log").unwrap_or_default();
    assert_eq!(prompts.matches("\"effectId\"").count(), 2, "{prompts}");
    assert!(!prompts.contains("\"any\""), "the agent is not handed the invalid schema: {prompts}");
    let events = project.events(&out.run_id());
    assert_eq!(of_kind(&events, "log").iter().filter(|e| e["event"]["scope"] == "warning").count(), 1);
}

#[test]
fn global_task_registry_lets_a_file_drop_an_id_an_imported_module_defined() {
    let project = project(
        r#"
import { defineTask, globalTaskRegistry } from "@a5c-ai/babysitter-sdk";
import { implementation as imported } from "./phase.js";
if (globalTaskRegistry.hasTask("implementation")) {
  globalTaskRegistry.definitions.delete("implementation");
}
const implementation = defineTask("implementation", () => ({ kind: "agent", agent: { prompt: "the file's own" } }));
export async function process(inputs, ctx) {
  return { had: globalTaskRegistry.hasTask("implementation"), answer: await ctx.task(implementation, {}) };
}
"#,
    );
    project.write(
        "phase.js",
        r#"import { defineTask } from "@a5c-ai/babysitter-sdk";
export const implementation = defineTask("implementation", () => ({ kind: "agent", agent: { prompt: "imported" } }));
"#,
    );
    let out = project.run(&["run", "p.js"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), serde_json::json!({ "had": true, "answer": { "ok": true } }));
    assert!(project.read("prompts.log").unwrap_or_default().contains("the file's own"));

    // Without the delete, the same id twice is still an error, and it says how to drop one.
    project.write("twice.js", "import { implementation } from \"./phase.js\";\nimport { defineTask } from \"tutti\";\ndefineTask(\"implementation\", () => ({ kind: \"agent\" }));\nexport async function process() { return 1; }\n");
    let twice = project.run(&["run", "twice.js"]);
    assert_eq!(twice.code, 2, "{twice}");
    assert!(
        twice.stderr.contains(r#"duplicate task id "implementation""#) && twice.stderr.contains("definitions.delete"),
        "{twice}"
    );
}

#[test]
fn a_schema_failure_names_the_rule_and_a_missing_method_names_the_callee() {
    let project = project(
        r#"
import { defineTask } from "@a5c-ai/babysitter-sdk";
const coded = defineTask("coded", () => ({ kind: "agent", harness: "coder", agent: { prompt: "a code" },
  outputSchema: { type: "object", properties: { code: { type: "string", pattern: "^[A-Z]{3}-[0-9]+$" } } } }));
export async function process(inputs, ctx) {
  if (inputs && inputs.missing) return ctx.getBreakpointData();
  return await ctx.task(coded, {});
}
"#,
    );
    let out = project.run(&["run", "p.js"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("/code: ") && out.stderr.contains("(rule `pattern`)"), "{out}");
    let missing = project.run(&["run", "p.js", "--inputs", r#"{"missing": true}"#]);
    assert_eq!(missing.code, 1, "{missing}");
    assert!(missing.stderr.contains("TypeError: ctx.getBreakpointData is not a function"), "{missing}");
}
