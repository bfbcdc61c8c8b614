//! Usage: an agent harness reports tokens and cost per attempt; the journal keeps one `effect_usage` per
//! report and `tutti status` / `tutti groups` add them up per harness, per effect and per member.

use serde_json::json;
use tutti_testkit::{Project, of_kind, show};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

const TOML: &str = r#"
[harness.meter]
command = ["sh", "-c", """
cat > /dev/null
echo '{"input_tokens": 100, "output_tokens": 20, "cache_read_tokens": 5, "cost_usd": 0.25}' > "$TUTTI_USAGE_FILE"
echo '{"ok": true}'
"""]

[harness.free]
command = ["sh", "-c", "cat > /dev/null; echo '{\"ok\": true}'"]
"#;

const PROCESS: &str = r#"
import { defineTask } from "tutti";
const ask = defineTask("ask", () => ({ kind: "agent", title: "ask", agent: { prompt: "ask" } }));
export async function process(inputs, ctx) {
  const team = ctx.group("team", { members: ["a", "b"], harness: ["meter", "free"] });
  await team.all((m) => m.task(ask, {}));
  await team.member("a").task(ask, {});
  return "ok";
}
"#;

#[test]
fn status_and_groups_add_up_usage_per_harness_effect_and_member() {
    let project = Project::new(TUTTI);
    project.write("tutti.toml", TOML);
    project.write("usage.js", PROCESS);
    let out = project.run(&["run", "usage.js"]);
    assert_eq!(out.code, 0, "{out}");
    let run = out.run_id();
    let events = project.events(&run);
    assert_eq!(of_kind(&events, "effect_usage").len(), 2, "{}", show(&events));

    let status = project.status(&run);
    assert_eq!(
        status["usage"]["total"],
        json!({ "input_tokens": 200, "output_tokens": 40, "cache_read_tokens": 10, "cache_write_tokens": 0, "cost_usd": 0.5 })
    );
    assert_eq!(status["usage"]["byHarness"]["meter"]["input_tokens"], 200);
    assert!(status["usage"]["byHarness"].get("free").is_none());
    assert_eq!(status["usage"]["byEffect"]["group:team/a/1"]["output_tokens"], 20);

    let text = project.run(&["status", &run]);
    assert!(text.stdout.contains("usage    200 in / 40 out tokens, 10 cache read, 0 cache write, $0.5000"), "{text}");

    let groups = project.run(&["groups", &run, "--json"]).json();
    assert_eq!(groups[0]["members"][0]["usage"]["input_tokens"], 200, "{groups}");
    assert_eq!(groups[0]["members"][1]["usage"]["input_tokens"], 0, "{groups}");
}
