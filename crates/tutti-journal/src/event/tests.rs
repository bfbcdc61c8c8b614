//! Wire-format tests of events: generated events of every variant survive a JSON round trip, and a few
//! hand-written bodies pin the format so that a serde attribute change cannot slip by.

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // JSON has no NaN or infinities.
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4).prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn arb_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        arb_value().prop_map(Payload::Inline),
        ("[0-9a-f]{64}", any::<u64>()).prop_map(|(hash, size)| Payload::Blob { hash, size }),
    ]
}

fn arb_error() -> impl Strategy<Value = ErrorInfo> {
    (".{0,8}", ".{0,16}", prop::option::of(arb_value())).prop_map(|(name, message, data)| ErrorInfo {
        name,
        message,
        data,
    })
}

fn arb_outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        arb_payload().prop_map(|value| Outcome::Ok { value }),
        arb_error().prop_map(|error| Outcome::Error { error }),
    ]
}

fn arb_text() -> impl Strategy<Value = String> {
    ".{0,16}"
}

fn arb_run_event() -> impl Strategy<Value = Event> {
    let modules =
        prop::collection::vec((arb_text(), arb_text()).prop_map(|(path, hash)| ModuleHash { path, hash }), 0..3);
    prop_oneof![
        (arb_text(), arb_payload(), arb_text(), modules, arb_value()).prop_map(
            |(process, inputs, code_hash, modules, options)| Event::RunCreated {
                process,
                inputs,
                code_hash,
                modules,
                options
            }
        ),
        arb_payload().prop_map(|output| Event::RunCompleted { output }),
        arb_error().prop_map(|error| Event::RunFailed { error }),
        (arb_text(), arb_payload()).prop_map(|(reason, payload)| Event::RunHalted { reason, payload }),
        arb_text().prop_map(|reason| Event::RunCancelled { reason }),
        (arb_text(), any::<bool>()).prop_map(|(holder, resumed)| Event::DriverAttached { holder, resumed }),
        (arb_text(), prop::collection::vec(arb_text(), 0..3)).prop_map(|(reason, interrupted)| Event::DriverDetached {
            reason,
            interrupted: interrupted.into_iter().map(Into::into).collect()
        }),
        (arb_text(), arb_text()).prop_map(|(old_hash, new_hash)| Event::ProcessCodeChanged { old_hash, new_hash }),
        (arb_text(), arb_text()).prop_map(|(scope, message)| Event::Log { scope, message }),
    ]
}

fn arb_requested() -> impl Strategy<Value = Event> {
    let ids = (arb_text(), arb_text(), arb_text(), arb_text(), arb_text());
    let rest = (prop::option::of(arb_text()), prop::option::of(arb_text()), arb_payload(), arb_payload());
    (ids, rest).prop_map(|((effect, scope, task_id, kind, digest), (title, callsite, args, task))| {
        Event::EffectRequested { effect: effect.into(), scope, task_id, kind, digest, title, callsite, args, task }
    })
}

fn arb_effect_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        arb_requested(),
        (arb_text(), any::<u32>(), arb_text(), prop::option::of(any::<u32>())).prop_map(
            |(effect, attempt, harness, pid)| Event::EffectStarted { effect: effect.into(), attempt, harness, pid }
        ),
        (arb_text(), any::<u32>(), arb_text(), any::<u32>(), prop::option::of(arb_text())).prop_map(
            |(effect, attempt, worker, claim, previous)| Event::EffectClaimed {
                effect: effect.into(),
                attempt,
                worker,
                claim,
                previous
            }
        ),
        (arb_text(), any::<u32>(), arb_text()).prop_map(|(effect, attempt, reason)| Event::EffectRedispatched {
            effect: effect.into(),
            attempt,
            reason
        }),
        (arb_text(), any::<u32>(), arb_outcome()).prop_map(|(effect, attempt, outcome)| Event::EffectResolved {
            effect: effect.into(),
            attempt,
            outcome
        }),
        (arb_text(), arb_text()).prop_map(|(effect, reason)| Event::EffectCancelled { effect: effect.into(), reason }),
        (arb_text(), arb_text()).prop_map(|(effect, message)| Event::EffectProgress { effect: effect.into(), message }),
        (arb_text(), any::<u32>(), arb_text(), arb_payload(), arb_text()).prop_map(
            |(effect, attempt, harness, stdout, stderr)| Event::EffectTranscript {
                effect: effect.into(),
                attempt,
                harness,
                stdout,
                stderr
            }
        ),
        (arb_text(), prop::option::of(arb_text()), arb_actor())
            .prop_map(|(action, effect, by)| Event::ControlApplied { action, effect: effect.map(Into::into), by }),
        (arb_text(), arb_text(), arb_text()).prop_map(|(effect, harness, reason)| Event::EffectRouted {
            effect: effect.into(),
            harness,
            reason
        }),
        arb_changes_accepted(),
        (arb_text(), any::<u32>(), any::<u32>(), any::<i64>(), arb_text()).prop_map(
            |(effect, attempt, retry, wake_ms, message)| Event::EffectRetrying {
                effect: effect.into(),
                attempt,
                retry,
                wake_ms,
                error: ErrorInfo::new("HarnessError", message),
            }
        ),
        arb_budget_event(),
    ]
}

fn arb_budget_event() -> impl Strategy<Value = Event> {
    let amount = 0.0f64..1e9;
    prop_oneof![
        (arb_text(), any::<u32>(), prop::collection::vec(arb_text(), 0..4), amount.clone(), any::<u64>()).prop_map(
            |(effect, attempt, scopes, usd, tokens)| Event::BudgetReserved {
                effect: effect.into(),
                attempt,
                scopes,
                usd,
                tokens
            }
        ),
        (arb_text(), arb_text(), amount.clone(), amount, prop::option::of(arb_text()), arb_text()).prop_map(
            |(scope, measure, limit, spent, effect, action)| Event::BudgetExceeded {
                scope,
                measure,
                limit,
                spent,
                effect: effect.map(Into::into),
                action
            }
        ),
    ]
}

fn arb_changes_accepted() -> impl Strategy<Value = Event> {
    let calls = (arb_text(), arb_payload(), arb_text(), arb_payload());
    (arb_text(), calls, prop::collection::vec(arb_text(), 0..4)).prop_map(
        |(effect, (old_task_id, old_args, new_task_id, new_args), superseded)| Event::ChangesAccepted {
            effect: effect.into(),
            old_task_id,
            old_args,
            new_task_id,
            new_args,
            superseded: superseded.into_iter().map(Into::into).collect(),
        },
    )
}

fn arb_actor() -> impl Strategy<Value = Actor> {
    (arb_text(), arb_text(), prop::option::of(arb_text()), any::<u32>(), arb_text())
        .prop_map(|(user, host, tty, pid, via)| Actor { user, host, tty, pid, via })
}

fn arb_group_event() -> impl Strategy<Value = Event> {
    let member = (arb_text(), prop::option::of(arb_text())).prop_map(|(name, harness)| MemberInfo { name, harness });
    prop_oneof![
        (arb_text(), prop::collection::vec(member, 0..4), any::<bool>(), prop::option::of(arb_value())).prop_map(
            |(group, members, persistent, budget)| Event::GroupOpened {
                group,
                members,
                persistent,
                member_budget: budget.clone(),
                budget
            }
        ),
        (arb_text(), any::<u64>(), arb_payload()).prop_map(|(group, completed, value)| Event::GroupCheckpoint {
            group,
            completed,
            value
        }),
        arb_text().prop_map(|group| Event::GroupClosed { group }),
        (arb_text(), arb_text(), arb_text(), arb_text(), prop::option::of(arb_text()), prop::option::of(arb_text()))
            .prop_map(|(group, member, harness, session, worktree, branch)| Event::MemberBound {
                group,
                member,
                harness,
                session,
                worktree,
                branch
            }),
        (arb_text(), arb_text(), arb_text(), arb_payload()).prop_map(|(id, from, to, body)| Event::MessageSent {
            id,
            from,
            to,
            body
        }),
        (arb_text(), arb_text()).prop_map(|(id, effect)| Event::MessageDelivered { id, effect: effect.into() }),
    ]
}

fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![arb_run_event(), arb_effect_event(), arb_group_event()]
}

proptest! {
    #[test]
    fn events_round_trip_through_json(event in arb_event()) {
        let body = serde_json::to_string(&event).unwrap();
        let back: Event = serde_json::from_str(&body).unwrap();
        prop_assert_eq!(back, event);
    }

    #[test]
    fn records_round_trip_through_json(seq in any::<u64>(), ts_ms in any::<i64>(), event in arb_event()) {
        let record = Record { seq, ts_ms, event };
        let back: Record = serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
        prop_assert_eq!(back, record);
    }

    #[test]
    fn kind_is_the_wire_tag(event in arb_event()) {
        let body = serde_json::to_value(&event).unwrap();
        prop_assert_eq!(body["type"].as_str(), Some(event.kind()));
    }
}

#[test]
fn wire_format_of_an_effect_resolution_is_pinned() {
    let body = json!({
        "type": "effect_resolved",
        "effect": "root/3",
        "attempt": 1,
        "outcome": {"status": "ok", "value": {"blob": {"hash": "ab", "size": 5000}}}
    });
    let event: Event = serde_json::from_value(body.clone()).unwrap();
    let expected = Event::EffectResolved {
        effect: "root/3".into(),
        attempt: 1,
        outcome: Outcome::Ok { value: Payload::Blob { hash: "ab".into(), size: 5000 } },
    };
    assert_eq!(event, expected);
    assert_eq!(serde_json::to_value(&expected).unwrap(), body);
}

#[test]
fn wire_format_of_an_accepted_change_is_pinned() {
    let body = json!({
        "type": "changes_accepted",
        "effect": "root/1",
        "old_task_id": "t",
        "old_args": {"inline": {"n": 2}},
        "new_task_id": "t",
        "new_args": {"blob": {"hash": "cd", "size": 9000}},
        "superseded": ["root/1", "root/parallel:0/2"]
    });
    let event: Event = serde_json::from_value(body.clone()).unwrap();
    let expected = Event::ChangesAccepted {
        effect: "root/1".into(),
        old_task_id: "t".into(),
        old_args: Payload::Inline(json!({"n": 2})),
        new_task_id: "t".into(),
        new_args: Payload::Blob { hash: "cd".into(), size: 9000 },
        superseded: vec!["root/1".into(), "root/parallel:0/2".into()],
    };
    assert_eq!(event, expected);
    assert_eq!(serde_json::to_value(&expected).unwrap(), body);
    assert_eq!(expected.kind(), "changes_accepted");
}

#[test]
fn the_arguments_of_an_accepted_change_may_move_out_of_line() {
    let mut event = Event::ChangesAccepted {
        effect: "root/1".into(),
        old_task_id: "t".into(),
        old_args: Payload::Inline(json!(1)),
        new_task_id: "t".into(),
        new_args: Payload::Inline(json!(2)),
        superseded: vec!["root/1".into()],
    };
    let found: Vec<Payload> = event.payloads_mut().into_iter().map(|p| p.clone()).collect();
    assert_eq!(found, [Payload::Inline(json!(1)), Payload::Inline(json!(2))]);
}

#[test]
fn wire_format_of_a_failure_is_pinned() {
    let body = json!({"type": "run_failed", "error": {"name": "TypeError", "message": "x is not a function"}});
    let event: Event = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(event, Event::RunFailed { error: ErrorInfo::new("TypeError", "x is not a function") });
    assert_eq!(serde_json::to_value(&event).unwrap(), body);
}

#[test]
fn unknown_event_types_are_rejected() {
    let body = r#"{"type": "group_opened", "group": "g"}"#;
    assert!(serde_json::from_str::<Event>(body).is_err());
}

#[test]
fn run_status_text_round_trips() {
    use RunStatus::*;
    for status in [Running, Completed, Failed, Halted, Cancelled] {
        assert_eq!(RunStatus::parse(status.as_str()), Some(status));
    }
    assert_eq!(RunStatus::parse("paused"), None);
}

#[test]
fn terminal_events_name_their_status() {
    let completed = Event::RunCompleted { output: Payload::null() };
    assert_eq!(completed.terminal_status(), Some(RunStatus::Completed));
    let log = Event::Log { scope: "root".into(), message: "m".into() };
    assert_eq!(log.terminal_status(), None);
}

#[test]
fn error_data_of_null_is_kept_apart_from_no_data() {
    let with_null = ErrorInfo::new("E", "m").with_data(Value::Null);
    let back: ErrorInfo = serde_json::from_str(&serde_json::to_string(&with_null).unwrap()).unwrap();
    assert_eq!(back, with_null);
    let without: ErrorInfo = serde_json::from_str(r#"{"name": "E", "message": "m"}"#).unwrap();
    assert_eq!(without.data, None);
}

#[test]
fn an_effect_id_knows_its_member_and_its_message_address() {
    let member = EffectId::from("group:reviewers/alice/parallel:0/1");
    assert_eq!(member.member(), Some(("reviewers", "alice")));
    assert_eq!(member.address(), "reviewers/alice");
    let plain = EffectId::from("root/parallel:1/0");
    assert_eq!((plain.member(), plain.address()), (None, "root/parallel:1/0".to_string()));
    assert_eq!(EffectId::from("group:lonely").member(), None);
    assert_eq!(serde_json::to_string(&member).unwrap(), "\"group:reviewers/alice/parallel:0/1\"");
    assert_eq!(serde_json::from_str::<EffectId>("\"root/3\"").unwrap(), "root/3");
}
