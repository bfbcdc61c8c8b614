//! The ledger fed by hand-written journal events: nesting, reservations, waiting, refusals, crossings, and a
//! rebuild from the journal that neither resets nor double-counts.

use serde_json::json;
use tutti_journal::event::MemberInfo;
use tutti_journal::{Outcome, Usage};

use super::*;

fn id(s: &str) -> EffectId {
    s.into()
}

fn created(budget: Value) -> Event {
    Event::RunCreated {
        process: "p.js".into(),
        inputs: Payload::Inline(Value::Null),
        code_hash: "h".into(),
        modules: Vec::new(),
        options: json!({ "budget": budget }),
    }
}

fn group(name: &str, members: &[&str], budget: Value, member: Option<Value>) -> Event {
    Event::GroupOpened {
        group: name.into(),
        members: members.iter().map(|m| MemberInfo { name: m.to_string(), harness: None }).collect(),
        persistent: true,
        budget: Some(budget),
        member_budget: member,
    }
}

fn started(effect: &str, attempt: u32, harness: &str) -> Event {
    Event::EffectStarted { effect: id(effect), attempt, harness: harness.into(), pid: None }
}

fn usage(effect: &str, attempt: u32, harness: &str, usd: Option<f64>, tokens: u64) -> Event {
    let usage = Usage { input_tokens: tokens, cost_usd: usd, ..Usage::default() };
    Event::EffectUsage { effect: id(effect), attempt, harness: harness.into(), usage }
}

fn resolved(effect: &str, attempt: u32) -> Event {
    Event::EffectResolved { effect: id(effect), attempt, outcome: Outcome::Ok { value: Payload::Inline(Value::Null) } }
}

fn reserved(effect: &str, attempt: u32, scopes: &[&str], usd: f64) -> Event {
    let scopes = scopes.iter().map(|s| s.to_string()).collect();
    Event::BudgetReserved { effect: id(effect), attempt, scopes, usd, tokens: 0 }
}

fn feed(ledger: &mut Ledger, events: impl IntoIterator<Item = Event>) {
    for e in events {
        ledger.observe(&e, 1_000);
    }
}

/// One attempt of `effect` on `harness` that cost `usd`, start to end.
fn ran(effect: &str, harness: &str, usd: f64) -> Vec<Event> {
    vec![started(effect, 1, harness), usage(effect, 1, harness, Some(usd), 100), resolved(effect, 1)]
}

#[test]
fn budgets_parse_with_clear_errors() {
    let limits = Limits::parse(&json!({ "usd": 1.5, "tokens": 2000, "turns": 3, "timeMs": 60000 }), "b").unwrap();
    assert_eq!(
        (limits.usd, limits.tokens, limits.turns, limits.time_ms),
        (Some(1.5), Some(2000), Some(3), Some(60000))
    );
    let err = |v: Value| Limits::parse(&v, "ctx.group(\"g\"): budget").unwrap_err();
    assert_eq!(err(json!({ "usd": -1 })), "ctx.group(\"g\"): budget.usd must be a number of at least 0, not -1");
    assert_eq!(err(json!({ "usd": "5" })), "ctx.group(\"g\"): budget.usd must be a number of at least 0, not \"5\"");
    assert_eq!(err(json!({ "eur": 5 })), "ctx.group(\"g\"): budget.eur: budgets are in US dollars; use `usd`");
    assert!(err(json!({ "tokens": 1.5 })).contains("must be a whole number"));
    assert!(err(json!({ "onExceed": "stop" })).contains("\"finish\""));
    assert!(err(json!({ "dollars": 1, "x": 2 })).contains("US dollars"));
    assert!(err(json!(5)).contains("must be an object"));
    let member = Limits::parse(&json!({ "usd": 2 }), "m").unwrap();
    let group = Limits::parse(&json!({ "usd": 1, "turns": 9 }), "g").unwrap();
    assert_eq!(member.larger_than(&group), Some(Measure::Usd));
    assert_eq!(group.larger_than(&member), None, "a measure the other does not limit is not compared");
}

#[test]
fn spend_counts_in_every_nested_scope_and_only_there() {
    let mut l = Ledger::default();
    feed(
        &mut l,
        [
            created(json!({ "run": { "usd": 10 }, "harness": { "claude": { "usd": 5 } } })),
            group("g", &["a", "b"], json!({ "usd": 1 }), Some(json!({ "usd": 0.5 }))),
        ],
    );
    feed(&mut l, ran("group:g/a/0", "claude", 0.25));
    feed(&mut l, ran("root/1", "codex", 1.0));
    let usd = |s: Scope| l.account(&s).map(|a| a.spent.usd);
    assert_eq!(usd(Scope::Member("g/a".into())), Some(0.25));
    assert_eq!(usd(Scope::Member("g/b".into())), Some(0.0));
    assert_eq!(usd(Scope::Group("g".into())), Some(0.25));
    assert_eq!(usd(Scope::Harness("claude".into())), Some(0.25));
    assert_eq!(usd(Scope::Run), Some(1.25));
    assert_eq!(l.account(&Scope::Run).map(|a| a.spent.turns), Some(2));
    assert_eq!(
        l.scopes_of(&id("group:g/b/3"), Some("claude")),
        [Scope::Member("g/b".into()), Scope::Group("g".into()), Scope::Harness("claude".into()), Scope::Run]
    );
}

#[test]
fn an_attempt_waits_while_running_ones_hold_the_room_and_is_refused_when_none_is_left() {
    let mut l = Ledger::default();
    feed(&mut l, [group("g", &["a", "b", "c"], json!({ "usd": 1.0 }), None)]);
    // No history: the cost is unknown, so the first attempt runs alone.
    assert_eq!(
        l.check(&id("group:g/a/0"), "h", 0),
        Check::Admit(Reservation { scopes: vec![Scope::Group("g".into())], usd: 0.0, tokens: 0 })
    );
    feed(&mut l, [started("group:g/a/0", 1, "h")]);
    assert_eq!(l.check(&id("group:g/b/0"), "h", 0), Check::Wait(Scope::Group("g".into())));
    feed(&mut l, [usage("group:g/a/0", 1, "h", Some(0.15), 100), resolved("group:g/a/0", 1)]);
    for i in 1..4 {
        feed(&mut l, ran(&format!("group:g/a/{i}"), "h", 0.15));
    }
    assert_eq!(l.expected("h"), Some((0.15, 100)), "the mean of the harness's last attempts");
    // $0.60 spent: one attempt expected at $0.15 runs, a second fits beside it, a third must wait for them.
    feed(&mut l, [reserved("group:g/b/0", 1, &["group g"], 0.15), started("group:g/b/0", 1, "h")]);
    feed(&mut l, [reserved("group:g/c/0", 1, &["group g"], 0.15), started("group:g/c/0", 1, "h")]);
    assert_eq!(l.check(&id("group:g/a/9"), "h", 0), Check::Wait(Scope::Group("g".into())));
    // They end at $0.15 each: $0.90 spent, nothing outstanding, and $0.15 more would not fit: refused.
    feed(&mut l, [usage("group:g/b/0", 1, "h", Some(0.15), 10), resolved("group:g/b/0", 1)]);
    feed(&mut l, [usage("group:g/c/0", 1, "h", Some(0.15), 10), resolved("group:g/c/0", 1)]);
    let Check::Refuse(exceeded) = l.check(&id("group:g/a/9"), "h", 0) else { panic!("refused") };
    assert_eq!((exceeded.measure, exceeded.limit), (Measure::Usd, 1.0));
    assert!((exceeded.spent - 0.9).abs() < 1e-9);
    let error = exceeded.error(&id("group:g/a/9"));
    assert_eq!(error.name, "BudgetExceeded");
    assert_eq!(error.data.as_ref().and_then(|d| d["scope"].as_str()), Some("group g"));
    assert!(
        error.message.contains("$0.90 of $1.00 spent, and the next attempt is expected to spend about $0.15"),
        "{}",
        error.message
    );
    // An effect outside the group is not held back by it.
    assert!(matches!(l.check(&id("root/5"), "h", 0), Check::Admit(_)));
}

#[test]
fn turns_time_and_tokens_limit_too_and_a_configured_reservation_wins() {
    let mut l = Ledger::default();
    feed(
        &mut l,
        [created(
            json!({ "run": { "turns": 2, "timeMs": 5000, "tokens": 1000 }, "reserve": { "h": { "usd": 0.5, "tokens": 300 } } }),
        )],
    );
    assert_eq!(l.expected("h"), Some((0.5, 300)));
    assert_eq!(l.expected("other"), None);
    feed(&mut l, ran("root/0", "h", 0.0));
    assert!(matches!(l.check(&id("root/1"), "h", 2_000), Check::Admit(_)));
    // The run began at 1,000 (journal time): at 6,000 its five seconds are spent.
    let Check::Refuse(e) = l.check(&id("root/1"), "h", 6_000) else { panic!("time") };
    assert_eq!(e.measure, Measure::Time);
    feed(&mut l, ran("root/1", "h", 0.0));
    let Check::Refuse(e) = l.check(&id("root/2"), "h", 2_000) else { panic!("turns") };
    assert_eq!((e.measure, e.spent, e.limit), (Measure::Turns, 2.0, 2.0));
}

#[test]
fn a_crossing_is_reported_once_and_cancel_names_the_running_attempts() {
    let mut l = Ledger::default();
    feed(&mut l, [group("g", &["a", "b"], json!({ "usd": 0.2, "onExceed": "cancel" }), None)]);
    feed(&mut l, [started("group:g/a/0", 1, "h"), started("group:g/b/0", 1, "h")]);
    assert!(l.crossed(1_000).is_empty());
    feed(&mut l, [usage("group:g/a/0", 1, "h", Some(0.25), 10)]);
    let crossed = l.crossed(1_000);
    assert_eq!(crossed.len(), 1);
    assert_eq!(crossed[0].1, OnExceed::Cancel);
    assert_eq!(l.running_in(&Scope::Group("g".into())), [id("group:g/a/0"), id("group:g/b/0")]);
    let event = Event::BudgetExceeded {
        scope: "group g".into(),
        measure: "usd".into(),
        limit: 0.2,
        spent: 0.25,
        effect: None,
        action: "cancel".into(),
    };
    feed(&mut l, [event]);
    assert!(l.crossed(1_000).is_empty(), "journaled once");
    assert!(l.account(&Scope::Group("g".into())).is_some_and(|a| {
        describe(&a.to_json(&Scope::Group("g".into()), 1_000)).contains("running attempts cancelled")
    }));
}

#[test]
fn warnings_come_once_at_80_percent() {
    let mut l = Ledger::default();
    feed(&mut l, [created(json!({ "run": { "usd": 1.0 } }))]);
    feed(&mut l, ran("root/0", "h", 0.5));
    assert!(l.warnings(1_000).is_empty());
    feed(&mut l, ran("root/1", "h", 0.35));
    assert_eq!(l.warnings(1_000), ["run has spent $0.85 of its $1.00 budget (85%)"]);
    feed(&mut l, ran("root/2", "h", 0.01));
    assert!(l.warnings(1_000).is_empty());
}

#[test]
fn a_rebuild_from_the_journal_keeps_spend_and_counts_a_real_rerun_as_one() {
    let mut events = vec![created(json!({ "run": { "usd": 1.0 } }))];
    events.extend(ran("root/0", "h", 0.3));
    events.extend(ran("root/1", "h", 0.3));
    // root/2 was running (reserved, started) when the driver died: it reported nothing.
    events.push(reserved("root/2", 1, &["run"], 0.3));
    events.push(started("root/2", 1, "h"));
    let records: Vec<Record> =
        events.into_iter().enumerate().map(|(i, event)| Record { seq: i as u64 + 1, ts_ms: 1_000, event }).collect();
    let mut l = Ledger::of(&records);
    let run = |l: &Ledger| l.account(&Scope::Run).map(|a| a.spent.clone()).unwrap_or_default();
    assert!((run(&l).usd - 0.6).abs() < 1e-9, "the spend before the crash counts");
    // Nothing runs after a rebuild: the dead attempt holds no room.
    assert!(matches!(l.check(&id("root/3"), "h", 1_000), Check::Admit(_)));
    feed(
        &mut l,
        [
            Event::EffectRedispatched { effect: id("root/2"), attempt: 2, reason: "died".into() },
            started("root/2", 2, "h"),
            usage("root/2", 2, "h", Some(0.3), 10),
            resolved("root/2", 2),
        ],
    );
    let spent = run(&l);
    assert!((spent.usd - 0.9).abs() < 1e-9);
    assert_eq!((spent.turns, spent.rerun_turns), (4, 1));
    assert!((spent.rerun_usd - 0.3).abs() < 1e-9, "the re-run attempt costs again and is shown as such");
}

#[test]
fn unpriced_usage_counts_tokens_never_dollars() {
    let mut l = Ledger::default();
    feed(&mut l, [created(json!({ "run": { "usd": 1.0, "tokens": 1000 } }))]);
    feed(&mut l, [started("root/0", 1, "h"), usage("root/0", 1, "h", None, 400), resolved("root/0", 1)]);
    let a = l.account(&Scope::Run).cloned().expect("run");
    assert_eq!((a.spent.usd, a.spent.tokens, a.spent.unpriced_tokens), (0.0, 400, 400));
    let line = describe(&a.to_json(&Scope::Run, 1_000));
    assert!(line.contains("400 tokens unpriced"), "{line}");
}

#[test]
fn scopes_read_back_as_written() {
    for s in [
        Scope::Run,
        Scope::Task(id("root/3")),
        Scope::Member("g/a".into()),
        Scope::Group("g".into()),
        Scope::Harness("claude".into()),
    ] {
        assert_eq!(Scope::parse(&s.to_string()), Some(s));
    }
    assert_eq!(thousands(2_000_000), "2,000,000");
    assert_eq!(Measure::Time.show(5_400_000.0), "1h 30m");
}

#[test]
fn a_harness_that_reports_no_usage_costs_nothing_once_one_of_its_attempts_has_ended() {
    let mut l = Ledger::default();
    feed(&mut l, [created(json!({ "run": { "usd": 1.0 } }))]);
    feed(&mut l, [started("root/0", 1, "shell")]);
    assert_eq!(l.check(&id("root/1"), "shell", 0), Check::Wait(Scope::Run), "its cost is not known yet");
    feed(&mut l, [resolved("root/0", 1)]);
    assert_eq!(l.expected("shell"), Some((0.0, 0)));
    feed(&mut l, [started("root/1", 1, "shell")]);
    assert!(matches!(l.check(&id("root/2"), "shell", 0), Check::Admit(_)), "then its attempts run side by side");
    // An attempt that was cancelled says nothing of what its harness costs.
    feed(&mut l, [started("root/9", 1, "claude"), Event::EffectCancelled { effect: id("root/9"), reason: "x".into() }]);
    assert_eq!(l.expected("claude"), None);
}

#[test]
fn what_running_attempts_hold_shrinks_as_they_report_and_is_released_when_they_end() {
    let mut l = Ledger::default();
    feed(&mut l, [created(json!({ "run": { "usd": 1.0 }, "reserve": { "h": { "usd": 0.4 } } }))]);
    feed(&mut l, [reserved("root/0", 1, &["run"], 0.4), started("root/0", 1, "h")]);
    feed(&mut l, [reserved("root/1", 1, &["run"], 0.4), started("root/1", 1, "h")]);
    // $0.80 held: a third attempt expected at $0.40 waits.
    assert_eq!(l.check(&id("root/2"), "h", 0), Check::Wait(Scope::Run));
    // root/0 reports $0.10 so far (its turn is not over): it still holds $0.30, so $0.10 + $0.70 + $0.40 > $1.
    feed(&mut l, [usage("root/0", 1, "h", Some(0.1), 10)]);
    assert_eq!(l.check(&id("root/2"), "h", 0), Check::Wait(Scope::Run));
    feed(&mut l, [resolved("root/0", 1)]);
    // $0.10 spent, $0.40 held by root/1: $0.90 with the next one fits.
    assert!(matches!(l.check(&id("root/2"), "h", 0), Check::Admit(_)));
}
