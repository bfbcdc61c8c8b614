//! Named groups: members keep their identities across rounds and restarts, fan-outs checkpoint and end early
//! by policy (cancelling the rest, process trees included), a coordinator re-assigns failed work, and
//! background effects overlap with foreground ones.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use tutti_testkit::{Project, kind, of_kind, process_is_gone, show};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

/// Three command harnesses that answer with their own name and the prompt they got.
const TOML: &str = r#"
[harness.alpha]
command = ["sh", "-c", "cat > /dev/null; echo '{\"by\":\"alpha\"}'"]
[harness.beta]
command = ["sh", "-c", "cat > /dev/null; echo '{\"by\":\"beta\"}'"]
[harness.gamma]
command = ["sh", "-c", "cat > /dev/null; echo '{\"by\":\"gamma\"}'"]
[harness.broken]
command = ["sh", "-c", "cat > /dev/null; echo 'no model today' >&2; exit 7"]
"#;

fn field<'a>(e: &'a Value, key: &str) -> &'a str {
    e["event"][key].as_str().unwrap_or("")
}

#[test]
fn a_group_on_three_harnesses_keeps_its_identities_across_rounds() {
    let project = Project::new(TUTTI);
    project.write("tutti.toml", TOML);
    project.write(
        "team.js",
        r#"
import { defineTask } from "tutti";
const ask = defineTask("ask", (a) => ({ kind: "agent", title: `round ${a.round}`, agent: { prompt: `round ${a.round}` } }));
export async function process(inputs, ctx) {
  const team = ctx.group("reviewers", { members: ["alice", "bob", "carol"], harness: ["alpha", "beta", "gamma"] });
  const one = await team.all((m) => m.task(ask, { round: 1 }));
  const again = ctx.group("reviewers");
  const two = await again.all((m) => m.task(ask, { round: 2 }));
  return { one: one.map((r) => r.by), two: two.map((r) => r.by), names: team.members.map((m) => `${m.group}/${m.name}@${m.harness}`) };
}
"#,
    );
    let out = project.run(&["run", "team.js"]);
    assert_eq!(out.code, 0, "{out}");
    let value = out.json();
    assert_eq!(value["one"], json!(["alpha", "beta", "gamma"]));
    assert_eq!(value["two"], json!(["alpha", "beta", "gamma"]));
    assert_eq!(value["names"], json!(["reviewers/alice@alpha", "reviewers/bob@beta", "reviewers/carol@gamma"]));

    let groups = project.run(&["groups", &out.run_id(), "--json"]);
    assert_eq!(groups.code, 0, "{groups}");
    let groups = groups.json();
    assert_eq!(groups[0]["group"], "reviewers", "{groups}");
    let bob = &groups[0]["members"][1];
    assert_eq!(
        (bob["name"].as_str(), bob["harness"].as_str(), bob["tasks"].as_u64(), bob["ok"].as_u64()),
        (Some("bob"), Some("beta"), Some(2), Some(2)),
        "{groups}"
    );
    assert_eq!(bob["state"], "idle");

    let events = project.events(&out.run_id());
    let opened = of_kind(&events, "group_opened");
    assert_eq!(opened.len(), 1, "calling ctx.group again returns the same group: {}", show(&events));
    assert_eq!(opened[0]["event"]["members"][1], json!({"name": "bob", "harness": "beta"}));
    let started: Vec<(String, String)> = of_kind(&events, "effect_started")
        .iter()
        .map(|e| (field(e, "effect").to_string(), field(e, "harness").to_string()))
        .collect();
    for (member, harness) in [("alice", "alpha"), ("bob", "beta"), ("carol", "gamma")] {
        for round in 0..2 {
            let id = format!("group:reviewers/{member}/{round}");
            assert!(started.contains(&(id.clone(), harness.to_string())), "{id} on {harness}: {started:?}");
        }
    }
}

#[test]
fn min_successful_cancels_the_slow_members_and_kills_their_trees() {
    let project = Project::new(TUTTI);
    project.write(
        "race.js",
        r#"
import { defineTask } from "tutti";
const work = defineTask("work", (a) => ({ kind: "shell", title: `item ${a.i}`, shell: { command: a.fast ? "echo fast" : `echo $$ > pid-${a.i}; sleep 60` } }));
export async function process(inputs, ctx) {
  const pool = ctx.group("pool", { members: 5 });
  const r = await pool.map([0, 1, 2, 3, 4], (i, m) => m.task(work, { i, fast: i < 2 }), { completion: { minSuccessful: 2 } });
  return { succeeded: r.succeeded, cancelled: r.cancelled, statuses: r.items.map((x) => x.status) };
}
"#,
    );
    let out = project.run(&["run", "race.js"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        out.json(),
        json!({"succeeded": 2, "cancelled": 3, "statuses": ["ok", "ok", "cancelled", "cancelled", "cancelled"]})
    );
    let events = project.events(&out.run_id());
    let cancelled: BTreeSet<&str> = of_kind(&events, "effect_cancelled").iter().map(|e| field(e, "effect")).collect();
    let slow: BTreeSet<&str> = ["group:pool/m3/0", "group:pool/m4/0", "group:pool/m5/0"].into();
    assert_eq!(cancelled, slow, "{}", show(&events));
    for i in 2..5 {
        // The pid file holds a pid only if the shell got that far before the cancellation killed it.
        if let Some(pid) = project.read(&format!("pid-{i}")).and_then(|p| p.trim().parse::<u32>().ok()) {
            assert!(process_is_gone(pid), "item {i}'s shell {pid} outlived its cancellation");
        }
    }
}

#[test]
fn a_coordinator_reassigns_a_failed_item_to_another_harness() {
    let project = Project::new(TUTTI);
    project.write("tutti.toml", TOML);
    project.write(
        "coord.js",
        r#"
import { defineTask } from "tutti";
const solve = defineTask("solve", (a) => ({ kind: "agent", title: `item ${a.item}`, agent: { prompt: `solve ${a.item}` } }));
export async function process(inputs, ctx) {
  const crew = ctx.group("crew", { members: ["flaky", "steady"], harness: ["broken", "alpha"] });
  const flaky = crew.member("flaky"), steady = crew.member("steady");
  flaky.task(solve, { item: "x" });
  steady.task(solve, { item: "y" });
  const results = {};
  const log = [];
  while (Object.keys(results).length < 2) {
    const ev = await crew.next();
    log.push(`${ev.type}:${ev.member}`);
    if (ev.type === "failed") steady.task(solve, { item: "x", retry: true });
    if (ev.type === "completed") results[ev.member + ":" + Object.keys(results).length] = ev.value.by;
  }
  crew.close();
  return { log, results };
}
"#,
    );
    let out = project.run(&["run", "coord.js"]);
    assert_eq!(out.code, 0, "{out}");
    let value = out.json();
    let log: Vec<&str> = value["log"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(log.contains(&"failed:flaky"), "{value}");
    assert_eq!(log.iter().filter(|l| **l == "completed:steady").count(), 2, "{value}");
    let events = project.events(&out.run_id());
    let failed = of_kind(&events, "effect_resolved")
        .into_iter()
        .find(|e| field(e, "effect") == "group:crew/flaky/0")
        .expect("the flaky member's result");
    assert_eq!(failed["event"]["outcome"]["error"]["data"]["exitCode"], 7, "{}", show(&events));
    assert_eq!(of_kind(&events, "group_closed").len(), 1);
}

#[test]
fn a_spawned_effect_runs_while_the_process_goes_on() {
    let project = Project::new(TUTTI);
    project.write(
        "bg.js",
        r#"
import { defineTask } from "tutti";
const nap = defineTask("nap", (a) => ({ kind: "shell", title: a.name, shell: { command: `sleep ${a.s}; echo ${a.name}` } }));
export async function process(inputs, ctx) {
  const bg = ctx.spawn(nap, { name: "background", s: 1 });
  const a = await ctx.task(nap, { name: "first", s: 0.3 });
  const b = await ctx.task(nap, { name: "second", s: 0.3 });
  return [a.stdout.trim(), b.stdout.trim(), (await bg).stdout.trim()];
}
"#,
    );
    let out = project.run(&["run", "bg.js"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), json!(["first", "second", "background"]));
    let events = project.events(&out.run_id());
    let at = |what: &str, effect: &str| {
        events.iter().find(|e| kind(e) == what && field(e, "effect") == effect).map(|e| e["ts_ms"].as_i64().unwrap())
    };
    let (bg_start, bg_end) = (at("effect_started", "root/0").unwrap(), at("effect_resolved", "root/0").unwrap());
    let (second_start, second_end) =
        (at("effect_started", "root/2").unwrap(), at("effect_resolved", "root/2").unwrap());
    assert!(
        bg_start < second_start && second_end < bg_end,
        "the background effect must span the second one:\n{}",
        show(&events)
    );
}

#[test]
fn kill_9_during_a_checkpointed_group_map_redoes_only_unfinished_items() {
    let process = r#"
import { defineTask } from "tutti";
const item = defineTask("item", (a) => ({ kind: "shell", title: `item ${a.i}`, shell: { command: `echo "$TUTTI_EFFECT_ID" >> ran.log; echo $(( ${a.i} * 3 ))` } }));
export async function process(inputs, ctx) {
  const pool = ctx.group("pool", { members: 4 });
  const items = Array.from({ length: 50 }, (_, i) => i);
  const values = await pool.map(items, (i, m) => m.task(item, { i }), { checkpointEvery: 5 });
  return values.map((v) => Number(v.stdout.trim())).reduce((a, b) => a + b, 0);
}
"#;
    let reference = Project::new(TUTTI);
    reference.write("map.js", process);
    let expected = reference.run(&["run", "map.js"]);
    assert_eq!(expected.code, 0, "{expected}");
    assert_eq!(expected.json(), json!(3 * (0..50).sum::<i64>()));
    let ref_events = reference.events(&expected.run_id());
    assert_eq!(of_kind(&ref_events, "group_checkpoint").len(), 10, "{}", show(&ref_events));

    let project = Project::new(TUTTI);
    project.write("map.js", process);
    let mut command = project.tutti();
    command.args(["run", "map.js"]).env("TUTTI_FAULT_KILL_AFTER_COMMITS", "25");
    let killed = command.output().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&killed.status), Some(libc::SIGKILL));
    let run = tutti_testkit::run_id_from(&String::from_utf8_lossy(&killed.stderr)).expect("run id");
    let before = project.events(&run);
    let done_before: BTreeSet<String> =
        of_kind(&before, "effect_resolved").iter().map(|e| field(e, "effect").to_string()).collect();
    assert!(!of_kind(&before, "group_checkpoint").is_empty(), "checkpoints before the kill: {}", show(&before));
    assert!(done_before.len() < 50, "the kill came too late to test anything");

    let resumed = project.run(&["resume", &run]);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert_eq!(resumed.stdout, expected.stdout);
    let ran = project.read("ran.log").unwrap_or_default();
    for effect in &done_before {
        assert_eq!(ran.lines().filter(|l| l == effect).count(), 1, "{effect} finished before the kill but ran again");
    }
    // The group and its members have the same identities as in an uninterrupted run; which member took
    // which item depends on who was free first, so effect ids are compared by member only.
    let after = project.events(&run);
    let opened = |evs: &[Value]| of_kind(evs, "group_opened").iter().map(|e| e["event"].clone()).collect::<Vec<_>>();
    assert_eq!(opened(&after), opened(&ref_events), "{}", show(&after));
    let members = |evs: &[Value]| -> BTreeSet<String> {
        of_kind(evs, "effect_requested")
            .iter()
            .map(|e| field(e, "effect").rsplit_once('/').map(|(scope, _)| scope.to_string()).unwrap_or_default())
            .collect()
    };
    assert_eq!(members(&after), members(&ref_events));
    assert_eq!(of_kind(&after, "effect_requested").len(), 50, "each item requested once: {}", show(&after));
    assert_eq!(of_kind(&after, "group_checkpoint").len(), 10, "{}", show(&after));
}
