//! The process host on its own: identities, scopes, replay-relevant determinism, sandbox errors.

use std::collections::VecDeque;
use std::path::PathBuf;

use serde_json::{Value, json};
use tutti_engine::{HostEvent, ProcessHost};
use tutti_js::JsHost;

fn write(dir: &tempfile::TempDir, name: &str, src: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, src).unwrap();
    p
}

/// `src` as `p.js` in a fresh folder (kept while the returned guard lives).
fn process_file(src: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "p.js", src);
    (dir, path)
}

/// Drive a host to its end, resolving each effect with its arguments, in the order `pick` chooses among
/// the pending ones. Returns the effect ids in request order and the output.
fn drive(host: &mut JsHost, inputs: Value, pick: impl FnMut(usize) -> usize) -> (Vec<String>, Result<Value, String>) {
    drive_recording(host, inputs, &mut Vec::new(), pick)
}

const BRANCHING: &str = r#"
import { defineTask } from "tutti";
const t = defineTask("t", (args) => ({ kind: "shell", title: `t ${args.n}` }));
export async function process(inputs, ctx) {
  const first = await ctx.task(t, { n: 0 });
  const out = await ctx.parallel.all([1, 2, 3].map((b) => async () => {
    const a = await ctx.task(t, { n: b * 10 });
    const c = await ctx.task(t, { n: a.n + 1 });
    return c.n;
  }));
  const mapped = await ctx.parallel.map([5, 6], (x) => ctx.task(t, { n: x }), { maxConcurrency: 1 });
  return { first: first.n, out, mapped: mapped.map((m) => m.n), at: new Date().getTime() > 0 };
}
"#;

/// Replay `deliveries` (effect ids in journal order) into a fresh host; returns requests in order and output.
fn replay(host: &mut JsHost, deliveries: &[(String, Value)]) -> (Vec<String>, Result<Value, String>) {
    let mut ids = Vec::new();
    let mut end = None;
    let mut take = |events: Vec<HostEvent>, ids: &mut Vec<String>| {
        for e in events {
            match e {
                HostEvent::Request(r) => ids.push(r.effect.to_string()),
                HostEvent::Finished(r) => end = Some(r.map_err(|e| e.message)),
                _ => {}
            }
        }
    };
    take(host.start("01TEST", &json!({}), 7, 1_000).unwrap(), &mut ids);
    for (i, (id, value)) in deliveries.iter().enumerate() {
        take(host.deliver(id, &Ok(value.clone()), 1_005 + 5 * i as i64).unwrap(), &mut ids);
    }
    (ids, end.expect("replay must finish"))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Whatever order effects complete in, each branch keeps its own identities, the output is the same, and a
    /// replay of the journal order reproduces the exact request sequence and output.
    #[test]
    fn random_completion_orders_replay_to_the_same_identities_and_output(choices in proptest::collection::vec(0usize..1000, 32)) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "p.js", BRANCHING);
        let mut host = JsHost::load(&path).unwrap();
        let mut picks = choices.into_iter().cycle();
        let mut order = Vec::new();
        let (ids, out) = drive_recording(&mut host, json!({}), &mut order, |n| picks.next().unwrap() % n);
        let out = out.unwrap();
        proptest::prop_assert_eq!(&out["out"], &json!([11, 21, 31]));
        proptest::prop_assert_eq!(&out["mapped"], &json!([5, 6]));
        let mut sorted = ids.clone();
        sorted.sort();
        let expected: Vec<String> = [
            "root/0", "root/parallel:0/0", "root/parallel:0/1", "root/parallel:1/0", "root/parallel:1/1",
            "root/parallel:2/0", "root/parallel:2/1", "root/parallel:3/0", "root/parallel:4/0",
        ].iter().map(|s| s.to_string()).collect();
        proptest::prop_assert_eq!(&sorted, &expected);
        let mut fresh = JsHost::load(&path).unwrap();
        let (replayed, replay_out) = replay(&mut fresh, &order);
        proptest::prop_assert_eq!(replayed, ids);
        proptest::prop_assert_eq!(replay_out.unwrap(), out);
    }
}

/// Like `drive`, also recording the delivery order (the journal order of results).
fn drive_recording(
    host: &mut JsHost,
    inputs: Value,
    order: &mut Vec<(String, Value)>,
    mut pick: impl FnMut(usize) -> usize,
) -> (Vec<String>, Result<Value, String>) {
    let mut pending: VecDeque<(String, Value)> = VecDeque::new();
    let mut ids = Vec::new();
    let mut events = host.start("01TEST", &inputs, 7, 1_000).unwrap();
    loop {
        for e in events.drain(..) {
            match e {
                HostEvent::Request(r) => {
                    ids.push(r.effect.to_string());
                    pending.push_back((r.effect.to_string(), r.args));
                }
                HostEvent::Finished(r) => return (ids, r.map_err(|e| format!("{}: {}", e.name, e.message))),
                HostEvent::Halted { reason, .. } => return (ids, Err(format!("halted: {reason}"))),
                _ => {}
            }
        }
        assert!(!pending.is_empty(), "process blocked with nothing pending");
        let (id, args) = pending.remove(pick(pending.len())).unwrap();
        order.push((id.clone(), args.clone()));
        events = host.deliver(&id, &Ok(args), 1_005 + 5 * (order.len() as i64 - 1)).unwrap();
    }
}

#[test]
fn host_imports_fail_at_load_naming_the_import() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "p.js", "import fs from 'fs';\nexport async function process() {}\n");
    let err = JsHost::load(&path).err().expect("load must fail").to_string();
    assert!(err.contains("\"fs\"") && err.contains("shell"), "{err}");
}

#[test]
fn syntax_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "bad.js", "export async function process( {\n");
    let err = JsHost::load(&path).err().expect("load must fail").to_string();
    assert!(err.contains("bad.js") && err.contains("SyntaxError"), "{err}");
}

#[test]
fn missing_export_lists_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "p.js", "export const x = 1;\n");
    let err = JsHost::load(&path).err().expect("load must fail").to_string();
    assert!(err.contains("no process function") && err.contains("x"), "{err}");
}

#[test]
fn babysitter_sdk_forms_and_relative_imports() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir, "lib.js", "import path from 'node:path';\nexport const name = path.basename('/a/b/c.txt', '.txt');\n");
    let path = write(
        &dir,
        "p.js",
        r#"
import { defineTask } from "@a5c-ai/babysitter-sdk";
import { name } from "./lib.js";
export const a = defineTask("a", (args, taskCtx) => ({ kind: "agent", title: taskCtx.effectId, agent: { prompt: { task: "x" } } }));
export const b = defineTask("b", async () => {}, { kind: "agent", title: "static" });
export const c = defineTask({ id: "c", kind: "shell", shell: { command: "true" } });
export default async function (inputs, ctx) {
  const r = await ctx.parallel.all([ctx.task(a, { i: 1 }), ctx.task(b, { i: 2 }), ctx.task(c, { i: 3 })]);
  return { r, name, random: Math.random(), now: ctx.now().toISOString() };
}
"#,
    );
    let mut host = JsHost::load(&path).unwrap();
    let (ids, out) = drive(&mut host, Value::Null, |_| 0);
    assert_eq!(ids, vec!["root/0", "root/1", "root/2"]);
    let out = out.unwrap();
    assert_eq!(out["name"], "c");
    assert_eq!(out["now"], "1970-01-01T00:00:01.015Z");
    let mut again = JsHost::load(&path).unwrap();
    let (_, out2) = drive(&mut again, Value::Null, |_| 0);
    assert_eq!(out["random"], out2.unwrap()["random"], "Math.random must be seeded");
}

#[test]
fn task_errors_reject_with_name_and_data() {
    let (_dir, path) = process_file(
        r#"
import { defineTask } from "tutti";
const t = defineTask("t", () => ({ kind: "shell" }));
export async function process(inputs, ctx) {
  try { await ctx.task(t, {}); } catch (e) { return { name: e.name, message: e.message, data: e.data }; }
}
"#,
    );
    let mut host = JsHost::load(&path).unwrap();
    let events = host.start("01X", &Value::Null, 1, 0).unwrap();
    assert!(matches!(&events[0], HostEvent::Request(r) if r.effect == "root/0"));
    let err = tutti_journal::ErrorInfo::new("Boom", "it broke").with_data(json!({"k": 1}));
    let events = host.deliver("root/0", &Err(err), 1).unwrap();
    match &events[0] {
        HostEvent::Finished(Ok(v)) => assert_eq!(v, &json!({"name": "Boom", "message": "it broke", "data": {"k": 1}})),
        other => panic!("unexpected {other:?}"),
    }
}

/// A priority that is not a number is refused naming where it was given: ctx.task's option, the task's own
/// description, or the group's options. A valid one rides on the task description.
#[test]
fn a_bad_priority_is_refused_naming_where_it_was_given() {
    let (_dir, path) = process_file(
        r#"
import { defineTask } from "tutti";
const t = defineTask("t", () => ({ kind: "shell" }));
const own = defineTask("own", () => ({ kind: "shell", priority: "high" }));
export async function process(inputs, ctx) {
  const seen = [];
  for (const f of [() => ctx.task(t, {}, { priority: "urgent" }), () => ctx.task(own, {}), () => ctx.group("g", { priority: NaN })]) {
    try { f(); seen.push("accepted"); } catch (e) { seen.push(`${e.name}: ${e.message}`); }
  }
  ctx.task(t, { ok: true }, { priority: 3 });
  return seen;
}
"#,
    );
    let mut host = JsHost::load(&path).unwrap();
    let (ids, out) = drive(&mut host, Value::Null, |_| 0);
    // A refused call still took its index (root/0 and root/1), as it always has: ids stay stable.
    assert_eq!(ids, ["root/2"], "only the valid request was made");
    assert_eq!(
        out.unwrap(),
        json!([
            "TypeError: ctx.task(\"t\"): priority must be a number (higher goes first), not \"urgent\"",
            "TypeError: task \"own\": priority must be a number (higher goes first), not \"high\"",
            "TypeError: ctx.group(\"g\"): priority must be a number (higher goes first), not null",
        ])
    );
    let mut host = JsHost::load(&path).unwrap();
    let events = host.start("01X", &Value::Null, 1, 0).unwrap();
    let task = events.iter().find_map(|e| match e {
        HostEvent::Request(r) => Some(r.task.clone()),
        _ => None,
    });
    assert_eq!(task, Some(json!({ "kind": "shell", "priority": 3 })));
}

/// tutti's runtime is bytecode without its source text (a quarter of the size; reading it costs about
/// 330,000 instructions less at every start): its functions print as built-ins do, and its frames in a
/// stack trace still name their line, which is how a request's call site skips them.
#[test]
fn the_runtime_ships_without_source_but_its_frames_keep_their_place() {
    let (_dir, path) = process_file(
        r#"
import { defineTask } from "tutti";
export async function process(inputs, ctx) {
  let stack = "";
  try { ctx.task(42); } catch (e) { stack = e.stack; }
  return { task: String(ctx.task), defineTask: String(defineTask), stack: stack.split("\n").filter((l) => l) };
}
"#,
    );
    let mut host = JsHost::load(&path).unwrap();
    let (_, out) = drive(&mut host, Value::Null, |_| 0);
    let out = out.unwrap();
    for name in ["task", "defineTask"] {
        let text = out[name].as_str().unwrap();
        assert!(text.contains("[native code]") && !text.contains("request("), "{name} prints its source: {text}");
    }
    let stack: Vec<&str> = out["stack"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(stack.iter().any(|l| l.contains("(tutti:runtime:")), "a runtime frame with its line: {stack:?}");
    assert!(stack.iter().any(|l| l.contains("p.js:5:")), "the process's own frame: {stack:?}");
}

/// Arguments and task descriptions reach the host as `JSON.stringify` writes them, whether they cross as
/// values (plain data) or as its text (a date, a fraction, a `toJSON`): the same JSON, so the same digests.
#[test]
fn requests_carry_the_json_that_json_stringify_gives() {
    let (_dir, path) = process_file(
        r#"
import { defineTask } from "tutti";
const t = defineTask("t", (args) => ({ kind: "shell", title: "t", shell: { command: "true" }, extra: args.extra }));
export async function process(inputs, ctx) {
  const plain = { n: 1, list: [1, undefined, "x"], skip: undefined, nested: { deep: [null, true] } };
  const texts = { when: new Date(0), half: 0.5, custom: { toJSON() { return "custom"; } } };
  await ctx.task(t, plain);
  await ctx.task(t, texts);
  await ctx.task(t, { extra: 2 ** 60 });
  return JSON.stringify([plain, texts]);
}
"#,
    );
    let mut host = JsHost::load(&path).unwrap();
    let mut requests = Vec::new();
    let mut events = host.start("01TEST", &json!({}), 7, 1_000).unwrap();
    let output = loop {
        let mut next = None;
        let mut finished = None;
        for e in events.drain(..) {
            match e {
                HostEvent::Request(r) => next = Some(r),
                HostEvent::Finished(r) => finished = Some(r),
                _ => {}
            }
        }
        if let Some(end) = finished {
            break end.unwrap();
        }
        let r = next.expect("a request or the end");
        events = host.deliver(r.effect.as_ref(), &Ok(json!({})), 1_005).unwrap();
        requests.push(r);
    };
    assert!(output.as_str().is_some_and(|s| s.contains("\"half\":0.5")), "{output}");
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].args, json!({ "n": 1, "list": [1, null, "x"], "nested": { "deep": [null, true] } }));
    assert_eq!(requests[1].args, json!({ "when": "1970-01-01T00:00:00.000Z", "half": 0.5, "custom": "custom" }));
    assert_eq!(requests[0].task["shell"], json!({ "command": "true" }));
    assert_eq!(requests[0].task.get("extra"), None, "undefined is left out");
    assert_eq!(requests[2].task["extra"], serde_json::from_str::<Value>("1152921504606847000").unwrap());
}

/// A map's branches take their indices when the map is called, not when its concurrency limit lets each one
/// start: a parallel call made meanwhile in the same scope comes after all of them. The items are read once,
/// so a function that grows the array does not grow the map.
#[test]
fn map_branches_are_numbered_when_the_map_is_called() {
    let (_dir, path) = process_file(
        r#"
import { defineTask } from "tutti";
const t = defineTask("t", (args) => ({ kind: "shell", title: `t ${args.n}` }));
export async function process(inputs, ctx) {
  const items = [1, 2, 3];
  const slow = ctx.parallel.map(items, (x) => { items.push(x * 100); return ctx.task(t, { n: x }); }, { maxConcurrency: 1 });
  const other = ctx.parallel.all([() => ctx.task(t, { n: 9 })]);
  const [mapped, all] = await Promise.all([slow, other]);
  return { mapped: mapped.map((m) => m.n), all: all.map((m) => m.n) };
}
"#,
    );
    let mut host = JsHost::load(&path).unwrap();
    let (ids, out) = drive(&mut host, json!({}), |_| 0);
    assert_eq!(ids, ["root/parallel:0/0", "root/parallel:3/0", "root/parallel:1/0", "root/parallel:2/0"]);
    assert_eq!(out.unwrap(), json!({ "mapped": [1, 2, 3], "all": [9] }));
}
