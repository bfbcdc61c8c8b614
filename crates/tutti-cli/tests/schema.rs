//! Output schemas: an answer that fails the task's schema gets exactly one corrective turn, in the same
//! session, with the validator's complaints; a second failure is a task error carrying the raw answer.

use serde_json::json;
use tutti_testkit::{Project, of_kind, show};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

/// `learner` answers wrongly until it is corrected; `stubborn` never learns. Both report a session and save
/// what they were sent.
const TOML: &str = r#"
[harness.learner]
command = ["sh", "-c", """
cat > in-$TUTTI_ATTEMPT.json
echo learner-session > "$TUTTI_SESSION_FILE"
if grep -q '"from":"tutti"' in-$TUTTI_ATTEMPT.json; then echo '{"verdict": "approve"}'; else echo '{"verdict": 42}'; fi
"""]

[harness.stubborn]
command = ["sh", "-c", "cat > /dev/null; echo '{\"mood\": \"no\"}'"]
"#;

const PROCESS: &str = r#"
import { defineTask } from "tutti";
const review = (h) => defineTask(`review-${h}`, () => ({
  kind: "agent", title: h, harness: h,
  agent: { prompt: "review", outputSchema: { type: "object", required: ["verdict"], properties: { verdict: { type: "string" } } } },
}));
export async function process(inputs, ctx) {
  const good = await ctx.task(review("learner"), {});
  try { await ctx.task(review("stubborn"), {}); } catch (e) { return { good, name: e.name, message: e.message, raw: e.data.raw }; }
  return { good };
}
"#;

#[test]
fn one_corrective_turn_then_a_schema_error_with_the_raw_answer() {
    let project = Project::new(TUTTI);
    project.write("tutti.toml", TOML);
    project.write("schema.js", PROCESS);
    let out = project.run(&["run", "schema.js"]);
    assert_eq!(out.code, 0, "{out}");
    let value = out.json();
    assert_eq!(value["good"], json!({ "verdict": "approve" }));
    assert_eq!(value["name"], "SchemaError");
    assert!(value["message"].as_str().unwrap().contains("after a corrective turn"), "{value}");
    assert_eq!(value["raw"], json!({ "mood": "no" }));
    // The text output shows the failure's cause without --json: the rules it broke and the rejected answer.
    let failed = out
        .stderr
        .lines()
        .skip_while(|l| !l.contains("failed") || !l.contains("SchemaError"))
        .take(8)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        failed.contains("schema: ") && failed.contains("the answer:") && failed.contains("\"mood\": \"no\""),
        "{out}"
    );

    // The corrective turn continued the first turn's session and said what was wrong.
    let second: serde_json::Value = serde_json::from_str(&project.read("in-2.json").unwrap()).unwrap();
    assert_eq!(second["session"], "learner-session");
    let correction = second["messages"][0]["body"].as_str().unwrap();
    assert!(correction.contains("/verdict") && correction.contains("not of type"), "{correction}");

    let events = project.events(&out.run_id());
    let again = of_kind(&events, "effect_redispatched");
    assert_eq!(again.len(), 2, "exactly one corrective turn per task:\n{}", show(&events));
    assert!(again[0]["event"]["reason"].as_str().unwrap().starts_with("corrective turn"));
}
