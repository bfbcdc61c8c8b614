//! Capability routing: a task's `requires` and `harness` preferences pick among configured harnesses; a
//! harness that is not installed is skipped, one that cannot start falls back to the next candidate; every
//! decision and its reason is journaled.

use serde_json::{Value, json};
use tutti_testkit::{Project, of_kind, show};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

const TOML: &str = r#"
[defaults]
harness = "cheap"

[harness.cheap]
command = ["sh", "-c", "cat > /dev/null; echo '{\"by\":\"cheap\"}'"]
capabilities = ["shell"]

[harness.strong]
command = ["sh", "-c", "cat > /dev/null; echo '{\"by\":\"strong\"}'"]
capabilities = ["edit", "shell", "web"]

[harness.missing]
command = ["no-such-agent-cli", "-p"]
capabilities = ["edit", "shell", "web"]

[harness.broken]
command = ["/etc/hostname"]
capabilities = ["edit", "shell", "web"]
"#;

const PROCESS: &str = r#"
import { defineTask } from "tutti";
const t = (id, extra) => defineTask(id, () => ({ kind: "agent", title: id, agent: { prompt: id }, ...extra }));
const plain = t("plain", {});
const edits = t("edits", { requires: ["edit"] });
const prefers = t("prefers", { harness: ["missing", "strong"] });
const falls = t("falls", { harness: ["broken", "strong"] });
const impossible = t("impossible", { requires: ["gpu"] });
export async function process(inputs, ctx) {
  const by = async (def) => (await ctx.task(def, {})).by;
  let none;
  try { await ctx.task(impossible, {}); } catch (e) { none = `${e.name}: ${e.message}`; }
  return { plain: await by(plain), edits: await by(edits), prefers: await by(prefers), falls: await by(falls), none };
}
"#;

fn routed(events: &[Value], effect: &str) -> Vec<(String, String)> {
    of_kind(events, "effect_routed")
        .into_iter()
        .filter(|e| e["event"]["effect"] == effect)
        .map(|e| {
            (e["event"]["harness"].as_str().unwrap().to_string(), e["event"]["reason"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn tasks_go_to_capable_available_harnesses_and_the_journal_says_why() {
    let project = Project::new(TUTTI);
    project.write("tutti.toml", TOML);
    project.write("route.js", PROCESS);
    let out = project.run(&["run", "route.js"]);
    assert_eq!(out.code, 0, "{out}");
    let value = out.json();
    assert_eq!(value["plain"], "cheap");
    assert_eq!(value["edits"], "strong");
    assert_eq!(value["prefers"], "strong");
    assert_eq!(value["falls"], "strong");
    let none = value["none"].as_str().unwrap();
    assert!(
        none.starts_with("NoHarness:") && none.contains("requires gpu") && none.contains("strong: lacks gpu"),
        "{none}"
    );

    let events = project.events(&out.run_id());
    let plain = routed(&events, "root/1");
    assert_eq!(plain[0].0, "cheap");
    assert!(plain[0].1.contains("default agent harness"), "{plain:?}");
    // Capable harnesses are tried by name: `broken` first, which cannot start, then `strong`.
    let edits = routed(&events, "root/2");
    assert_eq!(edits.last().map(|(h, _)| h.as_str()), Some("strong"), "{}", show(&events));
    assert!(
        edits[0].1.contains("required capabilities [edit]") && edits[0].1.contains("cheap: lacks edit"),
        "{edits:?}"
    );
    let prefers = routed(&events, "root/3");
    assert!(prefers[0].1.contains("missing: `no-such-agent-cli` is not installed"), "{prefers:?}");
    // `broken` is there but cannot start: the effect falls back to the next candidate, journaled.
    let falls = routed(&events, "root/4");
    assert_eq!(falls.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>(), ["broken", "strong"], "{falls:?}");
    assert!(falls[1].1.starts_with("fallback: broken is unavailable"), "{falls:?}");
    assert_eq!(json!(of_kind(&events, "effect_started").len()), json!(4));
}

#[test]
fn doctor_lists_harnesses_with_availability_and_every_known_cli() {
    let project = Project::new(TUTTI);
    project.write("tutti.toml", TOML);
    let out = project.run(&["doctor", "--json"]);
    assert_eq!(out.code, 0, "{out}");
    let report = out.json();
    let harness =
        |name: &str| report["harnesses"].as_array().unwrap().iter().find(|h| h["name"] == name).cloned().unwrap();
    assert_eq!(harness("strong")["available"], true);
    assert_eq!(harness("strong")["capabilities"], json!(["edit", "shell", "web"]));
    assert_eq!(harness("cheap")["default"], true);
    assert_eq!(harness("missing")["available"], false);
    assert!(harness("missing")["problem"].as_str().unwrap().contains("no-such-agent-cli"));
    let clis: Vec<&str> = report["clis"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(clis, ["claude", "codex", "gemini", "pi", "opencode"]);
    for c in report["clis"].as_array().unwrap() {
        assert!(!c["capabilities"].as_array().unwrap().is_empty(), "{c}");
        if c["found"] == false {
            assert!(c["missing"][0].as_str().unwrap().contains("install it: npm i -g "), "{c}");
        } else {
            assert!(c["version"].is_string(), "an installed CLI reports its version: {c}");
        }
    }
    let text = project.run(&["doctor"]);
    assert!(text.stdout.contains("missing      unavailable: `no-such-agent-cli` is not installed"), "{text}");
}

#[test]
fn a_harness_runs_only_as_many_attempts_as_memory_fits_and_says_so() {
    let project = Project::new(TUTTI);
    // Each attempt claims more memory than the machine has: at most one runs at a time.
    project.write(
        "tutti.toml",
        "[harness.hungry]\ncommand = [\"sh\", \"-c\", \"cat > /dev/null; sleep 0.2; echo '{}'\"]\nmemory_mb = 100000000\n",
    );
    project.write(
        "hungry.js",
        r#"
import { defineTask } from "tutti";
const t = defineTask("t", (a) => ({ kind: "agent", title: `t${a.i}`, harness: "hungry", agent: { prompt: "x" } }));
export async function process(inputs, ctx) {
  await ctx.parallel.all([0, 1, 2].map((i) => () => ctx.task(t, { i })));
  return "ok";
}
"#,
    );
    let out = project.run(&["run", "hungry.js"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains("harness hungry runs at most 1 at once: each attempt needs about 100000000 MB"),
        "{out}"
    );
    let events = project.events(&out.run_id());
    let (mut running, mut most) = (0, 0);
    for e in &events {
        match tutti_testkit::kind(e) {
            "effect_started" => running += 1,
            "effect_resolved" => running -= 1,
            _ => continue,
        }
        most = most.max(running);
    }
    assert_eq!(most, 1, "{}", show(&events));
}

#[test]
fn a_harness_that_reports_itself_unavailable_falls_back_to_the_next_candidate() {
    let project = Project::new(TUTTI);
    project.write(
        "tutti.toml",
        r#"
[harness.offline]
command = ["sh", "-c", "cat > /dev/null; echo 'no network' >&2; exit 69"]
[harness.online]
command = ["sh", "-c", "cat > /dev/null; echo '{\"by\": \"online\"}'"]
[harness.flaky]
command = ["sh", "-c", "cat > /dev/null; exit 3"]
"#,
    );
    project.write(
        "fallback.js",
        r#"
import { defineTask } from "tutti";
const t = (h) => defineTask(`t-${h}`, () => ({ kind: "agent", title: h, harness: [h, "online"], agent: { prompt: "x" } }));
export async function process(inputs, ctx) {
  const first = await ctx.task(t("offline"), {});
  let task_error;
  try { await ctx.task(t("flaky"), {}); } catch (e) { task_error = e.message; }
  return { first: first.by, task_error };
}
"#,
    );
    let out = project.run(&["run", "fallback.js"]);
    assert_eq!(out.code, 0, "{out}");
    let value = out.json();
    assert_eq!(value["first"], "online", "an unavailable harness falls back: {value}");
    assert_eq!(value["task_error"], "harness flaky exited with code 3", "a task error does not fall back: {value}");
    let events = project.events(&out.run_id());
    let routes = routed(&events, "root/0");
    assert_eq!(routes.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>(), ["offline", "online"], "{}", show(&events));
    assert!(routes[1].1.contains("offline is unavailable (harness offline exited with code 69)"), "{routes:?}");
    assert_eq!(routed(&events, "root/1").len(), 1, "{}", show(&events));
}

#[test]
fn a_preferred_agent_cli_that_is_not_installed_is_skipped_with_the_reason() {
    let project = Project::new(TUTTI);
    project.write(
        "tutti.toml",
        "[harness.claude]\nbinary = \"/nonexistent/claude\"\n\n[harness.backup]\ncommand = [\"sh\", \"-c\", \"cat > /dev/null; echo '{\\\"by\\\": \\\"backup\\\"}'\"]\n",
    );
    project.write(
        "skip.js",
        r#"
import { defineTask } from "tutti";
const ask = defineTask("ask", () => ({ kind: "agent", title: "ask", harness: ["claude", "backup"], agent: { prompt: "hi" } }));
export async function process(inputs, ctx) {
  return (await ctx.task(ask, {})).by;
}
"#,
    );
    let out = project.run(&["run", "skip.js"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), "backup");
    let events = project.events(&out.run_id());
    let routes = routed(&events, "root/0");
    assert_eq!(routes.len(), 1, "{}", show(&events));
    assert_eq!(routes[0].0, "backup");
    assert!(routes[0].1.contains("skipped claude: ") && routes[0].1.contains("/nonexistent/claude"), "{routes:?}");
}

#[test]
fn doctor_shows_the_config_in_effect_and_gives_no_key_advice_for_a_gateway() {
    let project = Project::new(TUTTI);
    project.write(
        "tutti.toml",
        "[harness.claude]\nbase_url = \"http://127.0.0.1:9\"\nmodel = \"m\"\n\
         [harness.cheap]\nuse = \"gemini\"\napi_key_env = \"TUTTI_TEST_UNSET_KEY\"\n\
         [harness.lint]\ncommand = [\"sh\", \"-c\", \"true\"]\n",
    );
    let mut command = project.tutti();
    command.args(["doctor", "--json"]).env_remove("ANTHROPIC_API_KEY").env_remove("OPENAI_API_KEY");
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let harness =
        |name: &str| report["harnesses"].as_array().unwrap().iter().find(|h| h["name"] == name).cloned().unwrap();
    let claude = harness("claude")["config"].clone();
    assert_eq!((claude["kind"].as_str(), claude["baseUrl"].as_str()), (Some("claude"), Some("http://127.0.0.1:9")));
    assert!(claude["binary"].as_str().is_some_and(|b| b.ends_with("/claude")), "{claude}");
    let cheap = harness("cheap")["config"].clone();
    assert_eq!(cheap["kind"], "gemini");
    assert_eq!(cheap["apiKeyEnv"], json!({"name": "TUTTI_TEST_UNSET_KEY", "set": false}));
    assert_eq!(
        harness("lint")["config"],
        json!({"kind": "command", "command": ["sh", "-c", "true"], "env": [], "timeoutMs": null})
    );
    assert_eq!(harness("shell")["config"]["kind"], "built-in");
    let cli = |name: &str| report["clis"].as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap();
    let advice = |name: &str| cli(name)["missing"].to_string();
    assert!(!advice("claude").contains("ANTHROPIC_API_KEY"), "claude runs against a gateway: {}", advice("claude"));
    assert!(advice("codex").contains("set OPENAI_API_KEY"), "codex has no gateway here: {}", advice("codex"));
}
