//! Messages through the journal: an agent's `tutti msg send` reaches the coordinator (before its turn's
//! result), forged and stale tokens are refused, a message to a member arrives with its next turn, and
//! `ctx.receive` times out to null.

use serde_json::{Value, json};
use tutti_testkit::{Project, kind, of_kind, show};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

/// An agent that saves its input and environment, says hello to the coordinator, tries a forged token,
/// then answers with the messages it was given.
const TOML: &str = r#"
[harness.talker]
command = ["sh", "-c", """
cat > in-$(echo $TUTTI_EFFECT_ID | tr '/:' '__').json
env | grep '^TUTTI_' > env-$(echo $TUTTI_EFFECT_ID | tr '/:' '__').txt
tutti msg send --to coordinator "hello from $TUTTI_EFFECT_ID"
TUTTI_MSG_TOKEN=forged tutti msg send --to coordinator forged 2> forged.txt; echo $? > forged-rc.txt
echo '{"done": true}'
"""]
"#;

const PROCESS: &str = r#"
import { defineTask } from "tutti";
const talk = defineTask("talk", () => ({ kind: "agent", title: "talk", agent: { prompt: "say hello" } }));
export async function process(inputs, ctx) {
  const team = ctx.group("team", { members: ["ann", "bob"], harness: "talker" });
  team.member("ann").task(talk, {});
  const seen = [];
  while (seen.length < 2) {
    const ev = await team.next();
    seen.push(ev.type === "message" ? `message from ${ev.from}: ${ev.body}` : `${ev.type} ${ev.member}`);
  }
  ctx.send("team/bob", "review part 2 next");
  await team.member("bob").task(talk, {});
  const first = await ctx.receive({ from: "team/bob" });
  const none = await ctx.receive({ from: "team/carol", timeoutMs: 100 });
  return { seen, first, none };
}
"#;

fn field<'a>(e: &'a Value, key: &str) -> &'a str {
    e["event"][key].as_str().unwrap_or("")
}

#[test]
fn agents_and_the_coordinator_talk_through_the_journal() {
    let project = Project::new(TUTTI);
    project.write("tutti.toml", TOML);
    project.write("talk.js", PROCESS);
    let out = project.run(&["run", "talk.js"]);
    assert_eq!(out.code, 0, "{out}");
    let value = out.json();
    assert_eq!(value["seen"], json!(["message from team/ann: hello from group:team/ann/0", "completed ann"]), "{value}");
    assert_eq!(value["first"], json!({ "from": "team/bob", "body": "hello from group:team/bob/0" }));
    assert_eq!(value["none"], Value::Null);

    // The forged token was refused with exit 2 and a reason.
    assert_eq!(project.read("forged-rc.txt").unwrap().trim(), "2");
    assert!(project.read("forged.txt").unwrap().contains("refused"), "{:?}", project.read("forged.txt"));

    // Bob's turn started with the coordinator's message, in its input and at the top of its prompt.
    let input: Value = serde_json::from_str(&project.read("in-group_team_bob_0.json").unwrap()).unwrap();
    assert_eq!(input["messages"], json!([{ "from": "coordinator", "body": "review part 2 next" }]));
    assert!(input["prompt"].as_str().unwrap().starts_with("Messages for you:\n- from coordinator: review part 2 next"));

    let events = project.events(&out.run_id());
    let sent: Vec<(&str, &str)> = of_kind(&events, "message_sent").iter().map(|e| (field(e, "from"), field(e, "to"))).collect();
    assert_eq!(sent, [("team/ann", "coordinator"), ("coordinator", "team/bob"), ("team/bob", "coordinator")], "{}", show(&events));
    let delivered = of_kind(&events, "message_delivered");
    assert_eq!(delivered.len(), 1);
    assert_eq!(field(delivered[0], "effect"), "group:team/bob/0");
    // Ann's message is journaled before her turn's result.
    let position = |pred: &dyn Fn(&Value) -> bool| events.iter().position(pred).unwrap();
    let msg = position(&|e| kind(e) == "message_sent" && field(e, "from") == "team/ann");
    let done = position(&|e| kind(e) == "effect_resolved" && field(e, "effect") == "group:team/ann/0");
    assert!(msg < done, "{}", show(&events));

    // Once Ann's attempt has ended, her token is stale.
    let env = project.read("env-group_team_ann_0.txt").unwrap();
    let mut command = project.tutti();
    command.args(["msg", "send", "--to", "coordinator", "too late"]);
    for line in env.lines() {
        let (k, v) = line.split_once('=').unwrap();
        if k != "TUTTI_HOME" {
            command.env(k, v);
        }
    }
    let late = command.output().unwrap();
    assert_eq!(late.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&late.stderr).contains("has ended"), "{}", String::from_utf8_lossy(&late.stderr));
}
