//! What the dashboard shows of a run, derived from its journal: status, the member grid (harness, state, current
//! tool call, tokens, cost), one timeline bar per attempt, messages and pending breakpoints. The server turns it
//! into JSON; the page only draws it. It reads, never writes.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::{Value, json};
use tutti_journal::{EffectId, Event, Outcome, Record, Store, Usage};

use crate::commands::inspect::{effects, groups_report, shown_status, status_json};
use crate::commands::live_driver;
use crate::output::UserError;

/// Everything the page shows of one run.
pub(crate) fn snapshot(store: &dyn Store, run: &str) -> Result<Value> {
    let id = run.to_string();
    let summary = store.run(&id)?.ok_or_else(|| UserError::new(format!("run {run} not found")))?;
    let records = store.read(&id, 0)?;
    let live = live_driver(store, run)?.is_some();
    let mut status = status_json(store, &summary, &records, live)?;
    let notes = latest_notes(&records);
    for r in status["running"].as_array_mut().into_iter().flatten() {
        r["note"] = json!(r["effect"].as_str().and_then(|e| notes.get(e)));
    }
    for w in status["waiting"].as_array_mut().into_iter().flatten() {
        w["question"] = breakpoint_question(store, &records, w["effect"].as_str().unwrap_or(""));
    }
    let shown = shown_status(&summary, live);
    let mut groups = groups_report(&records, shown);
    grid(&mut groups, &records, &notes, shown);
    Ok(json!({
        "status": status,
        "groups": groups,
        "timeline": timeline(&records, shown),
        "messages": messages(store, &records),
        "lastSeq": records.last().map_or(0, |r| r.seq),
    }))
}

/// The latest progress note of each effect.
fn latest_notes(records: &[Record]) -> BTreeMap<String, String> {
    let mut notes = BTreeMap::new();
    for r in records {
        if let Event::EffectProgress { effect, message } = &r.event {
            notes.insert(effect.to_string(), message.clone());
        }
    }
    notes
}

/// The breakpoint's own arguments (its question, title and context), as the process gave them.
fn breakpoint_question(store: &dyn Store, records: &[Record], effect: &str) -> Value {
    records
        .iter()
        .find_map(|r| match &r.event {
            Event::EffectRequested { effect: e, args, .. } if e == effect => store.load(args).ok(),
            _ => None,
        })
        .unwrap_or(Value::Null)
}

/// Each member's line in the live grid: what it runs now (effect, harness, elapsed, its last tool call or
/// message) and what it has spent (tokens, USD when its harness reports cost).
fn grid(groups: &mut Value, records: &[Record], notes: &BTreeMap<String, String>, shown: &str) {
    let all = effects(records);
    let now = crate::commands::now_ms();
    for g in groups.as_array_mut().into_iter().flatten() {
        let name = g["group"].as_str().unwrap_or("").to_string();
        for m in g["members"].as_array_mut().into_iter().flatten() {
            let prefix = format!("group:{name}/{}/", m["name"].as_str().unwrap_or(""));
            let current = all.iter().rev().find(|(id, v)| id.starts_with(&prefix) && v.state == "running");
            if let Some((id, v)) = current.filter(|_| shown != "interrupted") {
                m["current"] = json!({
                    "effect": id, "title": v.title, "harness": v.harness,
                    "elapsedMs": v.started_ms.map(|t| (now - t).max(0)),
                    "note": notes.get(id.as_str()),
                });
                m["state"] = json!("running");
            }
            let usage: Usage = serde_json::from_value(m["usage"].clone()).unwrap_or_default();
            m["tokens"] = json!(usage.input_tokens + usage.output_tokens);
            m["usd"] = json!(usage.cost_usd);
        }
    }
}

/// One bar per attempt: when it started and ended (none while it runs), on which harness, and how it ended.
fn timeline(records: &[Record], shown: &str) -> Value {
    let mut bars: Vec<Value> = Vec::new();
    let mut titles: BTreeMap<&EffectId, Option<&String>> = BTreeMap::new();
    let end = |bars: &mut Vec<Value>, effect: &EffectId, attempt: Option<u32>, ts: i64, state: &str| {
        let open = bars.iter_mut().rev().find(|b| {
            b["effect"] == effect.as_str() && b["end"].is_null() && attempt.is_none_or(|n| b["attempt"] == n)
        });
        if let Some(b) = open {
            b["end"] = json!(ts);
            b["state"] = json!(state);
        }
    };
    for r in records {
        match &r.event {
            Event::EffectRequested { effect, title, .. } => {
                titles.insert(effect, title.as_ref());
            }
            Event::EffectStarted { effect, attempt, harness, .. } => bars.push(json!({
                "effect": effect, "attempt": attempt, "harness": harness, "start": r.ts_ms, "end": null,
                "state": "running", "title": titles.get(effect).copied().flatten(),
                "member": effect.member().map(|(g, m)| format!("{g}/{m}")),
            })),
            Event::EffectResolved { effect, attempt, outcome } => {
                let state = if matches!(outcome, Outcome::Ok { .. }) { "ok" } else { "error" };
                end(&mut bars, effect, Some(*attempt), r.ts_ms, state);
            }
            Event::EffectCancelled { effect, .. } => end(&mut bars, effect, None, r.ts_ms, "cancelled"),
            Event::EffectRetrying { effect, attempt, .. } => end(&mut bars, effect, Some(*attempt), r.ts_ms, "error"),
            Event::EffectRedispatched { effect, .. } => end(&mut bars, effect, None, r.ts_ms, "interrupted"),
            // `--accept-changes`: the attempts of superseded effects no longer count; their re-runs get new bars.
            Event::ChangesAccepted { superseded, .. } => {
                for b in bars.iter_mut().filter(|b| superseded.iter().any(|s| b["effect"] == s.as_str())) {
                    if b["end"].is_null() {
                        b["end"] = json!(r.ts_ms);
                    }
                    b["state"] = json!("superseded");
                }
            }
            Event::DriverDetached { interrupted, .. } => {
                for effect in interrupted {
                    end(&mut bars, effect, None, r.ts_ms, "interrupted");
                }
            }
            _ => {}
        }
    }
    if shown == "interrupted" {
        let last = records.last().map_or(0, |r| r.ts_ms);
        for b in bars.iter_mut().filter(|b| b["end"].is_null()) {
            b["end"] = json!(last);
            b["state"] = json!("interrupted");
        }
    }
    Value::Array(bars)
}

/// Messages between the process, the coordinator and members, with whether each was handed over yet.
fn messages(store: &dyn Store, records: &[Record]) -> Value {
    let mut list: Vec<Value> = Vec::new();
    for r in records {
        match &r.event {
            Event::MessageSent { id, from, to, body } => list.push(json!({
                "id": id, "from": from, "to": to, "ts": r.ts_ms, "delivered": false,
                "body": store.load(body).unwrap_or(Value::Null),
            })),
            Event::MessageDelivered { id, .. } => {
                if let Some(m) = list.iter_mut().find(|m| m["id"] == *id.as_str()) {
                    m["delivered"] = json!(true);
                }
            }
            _ => {}
        }
    }
    Value::Array(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tutti_journal::{ErrorInfo, Payload};

    fn record(seq: u64, ts_ms: i64, event: Event) -> Record {
        Record { seq, ts_ms, event }
    }

    fn started(seq: u64, ts: i64, effect: &str, attempt: u32) -> Record {
        let event = Event::EffectStarted { effect: effect.into(), attempt, harness: "alpha".into(), pid: None };
        record(seq, ts, event)
    }

    #[test]
    fn each_attempt_is_one_bar_that_ends_how_its_attempt_ended() {
        let error = ErrorInfo::new("Error", "no");
        let records = vec![
            started(1, 100, "root/0", 1),
            record(2, 150, Event::EffectRedispatched { effect: "root/0".into(), attempt: 2, reason: "x".into() }),
            started(3, 160, "root/0", 2),
            record(
                4,
                170,
                Event::EffectResolved { effect: "root/0".into(), attempt: 2, outcome: Outcome::Error { error } },
            ),
            started(5, 180, "group:g/a/0", 1),
            record(
                6,
                190,
                Event::EffectResolved {
                    effect: "group:g/a/0".into(),
                    attempt: 1,
                    outcome: Outcome::Ok { value: Payload::Inline(json!(1)) },
                },
            ),
            started(7, 200, "root/1", 1),
        ];
        let bars = timeline(&records, "running");
        let shape: Vec<(String, i64, Value, String)> = bars
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                (
                    b["effect"].as_str().unwrap_or("").into(),
                    b["start"].as_i64().unwrap_or(0),
                    b["end"].clone(),
                    b["state"].as_str().unwrap_or("").into(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("root/0".into(), 100, json!(150), "interrupted".into()),
                ("root/0".into(), 160, json!(170), "error".into()),
                ("group:g/a/0".into(), 180, json!(190), "ok".into()),
                ("root/1".into(), 200, Value::Null, "running".into()),
            ]
        );
        assert_eq!(bars[2]["member"], "g/a");
        let mut changed = records.clone();
        changed.push(record(
            8,
            210,
            Event::ChangesAccepted {
                effect: "root/0".into(),
                old_task_id: "t".into(),
                old_args: Payload::Inline(json!(1)),
                new_task_id: "t".into(),
                new_args: Payload::Inline(json!(2)),
                superseded: vec!["root/0".into(), "root/1".into()],
            },
        ));
        let states: Vec<Value> =
            timeline(&changed, "running").as_array().into_iter().flatten().map(|b| b["state"].clone()).collect();
        assert_eq!(states, [json!("superseded"), json!("superseded"), json!("ok"), json!("superseded")]);
        let stopped = timeline(&records, "interrupted");
        assert_eq!((stopped[3]["end"].clone(), stopped[3]["state"].clone()), (json!(200), json!("interrupted")));
    }
}
