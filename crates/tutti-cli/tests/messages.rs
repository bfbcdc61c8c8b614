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
  for await (const ev of team.events()) {
    seen.push(ev.type === "message" ? `message from ${ev.from}: ${ev.body}` : `${ev.type} ${ev.member}`);
    if (seen.length === 2) break;
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
    assert_eq!(
        value["seen"],
        json!(["message from team/ann: hello from group:team/ann/0", "completed ann"]),
        "{value}"
    );
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
    let sent: Vec<(&str, &str)> =
        of_kind(&events, "message_sent").iter().map(|e| (field(e, "from"), field(e, "to"))).collect();
    assert_eq!(
        sent,
        [("team/ann", "coordinator"), ("coordinator", "team/bob"), ("team/bob", "coordinator")],
        "{}",
        show(&events)
    );
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

/// An agent that talks to the run through `tutti mcp` (JSON-RPC on stdio) instead of `tutti msg`.
const MCP_TOML: &str = r#"
[harness.mcp-agent]
command = ["sh", "-c", """
cat > /dev/null
printf '%s\\n' \
 '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}' \
 '{"jsonrpc":"2.0","method":"notifications/initialized"}' \
 '{"jsonrpc":"2.0","id":2,"method":"tools/list"}' \
 '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"send","arguments":{"to":"coordinator","text":"via mcp"}}}' \
 '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"progress","arguments":{"message":"halfway"}}}' \
 '{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"inbox","arguments":{}}}' \
 '{"jsonrpc":"2.0","id":6,"method":"no/such"}' \
 | tutti mcp > mcp-out.jsonl
echo '{"done": true}'
"""]
"#;

#[test]
fn the_mcp_bridge_sends_reports_progress_and_lists_the_inbox() {
    let project = Project::new(TUTTI);
    project.write("tutti.toml", MCP_TOML);
    project.write(
        "mcp.js",
        r#"
import { defineTask } from "tutti";
const work = defineTask("work", () => ({ kind: "agent", title: "work", agent: { prompt: "work" } }));
export async function process(inputs, ctx) {
  const crew = ctx.group("crew", { members: ["dee"], harness: "mcp-agent" });
  ctx.send("crew/dee", "start with the parser");
  await crew.member("dee").task(work, {});
  return await ctx.receive({ from: "crew/dee" });
}
"#,
    );
    let out = project.run(&["run", "mcp.js"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), json!({ "from": "crew/dee", "body": "via mcp" }));

    let replies: Vec<Value> =
        project.read("mcp-out.jsonl").unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids: Vec<i64> = replies.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6], "a notification gets no reply: {replies:?}");
    assert_eq!(replies[0]["result"]["serverInfo"]["name"], "tutti");
    let tools: Vec<&str> =
        replies[1]["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(tools, ["send", "inbox", "progress"]);
    assert_eq!(replies[2]["result"]["isError"], false, "{}", replies[2]);
    let inbox: Value = serde_json::from_str(replies[4]["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(inbox[0]["from"], "coordinator");
    assert_eq!(inbox[0]["body"], "start with the parser");
    assert_eq!(replies[5]["error"]["code"], -32601);

    let events = project.events(&out.run_id());
    let progress = of_kind(&events, "effect_progress");
    assert_eq!(progress.len(), 1, "{}", show(&events));
    assert_eq!(field(progress[0], "message"), "halfway");
}

#[test]
fn waking_a_finished_member_resumes_its_session_with_the_message() {
    let project = Project::with_examples(TUTTI);
    project.write(
        "wake.js",
        r#"
import { defineTask } from "tutti";
const discuss = defineTask("discuss", () => ({ kind: "agent", title: "discuss", agent: { prompt: "Round 1" } }));
export async function process(inputs, ctx) {
  const panel = ctx.group("panel", { members: ["ann"], harness: "memory-a" });
  const first = await panel.member("ann").task(discuss, {});
  const woken = await ctx.send("panel/ann", "one more thing", { wake: true });
  return { first: first.session, woken };
}
"#,
    );
    let out = project.run(&["run", "wake.js"]);
    assert_eq!(out.code, 0, "{out}");
    let value = out.json();
    assert_eq!(value["woken"]["session"], value["first"], "the wake turn resumes the member's session: {value}");
    assert_eq!(value["woken"]["remembered"], json!(["Round 1"]), "{value}");
    let events = project.events(&out.run_id());
    let delivered = of_kind(&events, "message_delivered");
    assert_eq!(delivered.len(), 1, "{}", show(&events));
    assert_eq!(field(delivered[0], "effect"), "group:panel/ann/1");
}
