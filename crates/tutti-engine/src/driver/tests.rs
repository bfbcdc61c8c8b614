//! The dispatcher's own unit tests: the output-commit rule, scheduling and limits, cancellation, failures
//! (fallback, corrective turns), the run's end, messages and resume bookkeeping — driven through a scripted
//! process host, a probe harness and a real SQLite journal (`tests/kit.rs`).

mod budgets;
mod changes;
mod kit;
mod strategies;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tutti_journal::{Command, ErrorInfo, Event, LeaseHolder, Leases, Payload, RunStatus, SqliteStore};

use crate::error::Error;
use crate::harness::Failure;
use crate::host::{EffectRequest, HostEvent};
pub(crate) use kit::*;

// ---- the output-commit rule ----

#[test]
fn a_request_is_committed_before_a_harness_that_touches_the_world_starts_it() {
    let rig = Rig::new();
    let (probe, seen) = arc(Probe::echo_after("a", 1).watching(rig.path.clone()));
    let mut host = Script::fan_out(ids(4).iter().map(|id| on("a", id, json!(id))).collect());
    let end = rig.run(&mut host, vec![probe]);
    assert_eq!(end.status, RunStatus::Completed);
    let seen = lock(&seen);
    assert_eq!(seen.starts.len(), 4);
    assert!(seen.uncommitted.is_empty(), "started before their request was committed: {:?}", seen.uncommitted);
}

#[test]
fn a_pure_harness_starts_at_once_and_its_results_share_one_commit() {
    let rig = Rig::new();
    let (probe, seen) = arc(Probe::new("a", |job| Act::Now(Ok(job.args.clone()))).pure().watching(rig.path.clone()));
    // The first step's requests share the run's first commit; the three asked for after it are not waited for.
    let mut host = Script::new(vec![HostEvent::Request(on("a", "root/0", json!(0)))], |told| match told.len() {
        1 => ids(3).iter().map(|id| HostEvent::Request(on("a", &format!("{id}/x"), json!(1)))).collect(),
        4 => vec![HostEvent::Finished(Ok(summary(told)))],
        _ => Vec::new(),
    });
    let end = rig.run(&mut host, vec![probe]);
    assert_eq!(end.status, RunStatus::Completed);
    assert_eq!(lock(&seen).uncommitted.len(), 3, "a pure harness need not wait for a commit");
}

#[test]
fn a_start_is_journaled_with_its_attempt_and_pid_before_its_result() {
    let rig = Rig::new();
    let (probe, _) = arc(Probe::echo_after("a", 5));
    let mut host = Script::fan_out(vec![on("a", "root/1", json!(7))]);
    rig.run(&mut host, vec![probe]);
    let events = rig.events();
    let started = events.iter().position(|e| matches!(e, Event::EffectStarted { pid: Some(_), attempt: 1, .. }));
    let done = events.iter().position(|e| matches!(e, Event::EffectResolved { .. }));
    assert!(started.is_some() && started < done, "{events:?}");
}

// ---- scheduling and limits ----

#[test]
fn the_run_limit_caps_attempts_running_at_once() {
    let mut rig = Rig::new();
    rig.max_parallel = 3;
    let (probe, seen) = arc(Probe::echo_after("a", 20));
    let mut host = Script::fan_out(ids(8).iter().map(|id| on("a", id, json!(id))).collect());
    let end = rig.run(&mut host, vec![probe]);
    assert_eq!(end.output.as_ref().and_then(Value::as_object).map(|m| m.len()), Some(8));
    let seen = lock(&seen);
    assert_eq!(seen.most, 3, "at most 3 at once, and the limit is used");
}

#[test]
fn a_harness_limit_caps_that_harness_only() {
    let rig = Rig::new();
    let (slow, slow_seen) = arc(Probe::echo_after("slow", 30).limit(2));
    let (fast, fast_seen) = arc(Probe::echo_after("fast", 30));
    let mut requests: Vec<EffectRequest> = (1..=6).map(|i| on("slow", &format!("root/{i}"), json!(i))).collect();
    requests.extend((7..=10).map(|i| on("fast", &format!("root/{i}"), json!(i))));
    let mut host = Script::fan_out(requests);
    let end = rig.run(&mut host, vec![slow, fast]);
    assert_eq!(end.status, RunStatus::Completed);
    assert_eq!(lock(&slow_seen).most, 2, "max_parallel = 2 for slow");
    assert_eq!(lock(&fast_seen).most, 4, "fast is not held behind slow's queue");
}

#[test]
fn memory_admission_limits_a_harness_without_max_parallel() {
    let mut rig = Rig::new();
    rig.platform = Arc::new(TestPlatform { memory_mb: Some(1000), ..TestPlatform::default() });
    let (probe, seen) = arc(Probe::echo_after("a", 20).memory(400));
    let mut host = Script::fan_out(ids(5).iter().map(|id| on("a", id, json!(1))).collect());
    rig.run(&mut host, vec![probe]);
    assert_eq!(lock(&seen).most, 2, "800 MB usable / 400 MB each");
}

#[test]
fn queued_effects_start_in_request_order() {
    let mut rig = Rig::new();
    rig.max_parallel = 1;
    let (probe, seen) = arc(Probe::echo_after("a", 1));
    let mut host = Script::fan_out(ids(5).iter().map(|id| on("a", id, json!(1))).collect());
    rig.run(&mut host, vec![probe]);
    let started: Vec<String> = lock(&seen).starts.iter().map(|(e, _)| e.clone()).collect();
    assert_eq!(started, ids(5));
}

#[test]
fn a_result_wakes_the_process_at_once_without_waiting_for_the_others() {
    let rig = Rig::new();
    let (probe, _) = arc(Probe::new("a", |job| match job.effect.as_str() {
        "root/2" => Act::After(Duration::from_millis(400), Ok(json!("slow"))),
        _ => Act::After(Duration::from_millis(10), Ok(json!("quick"))),
    }));
    // The process asks for root/3 as soon as root/1 is in.
    let mut host = Script::new(
        vec![HostEvent::Request(on("a", "root/1", json!(1))), HostEvent::Request(on("a", "root/2", json!(2)))],
        |told| match told.len() {
            1 => vec![HostEvent::Request(on("a", "root/3", json!(3)))],
            3 => vec![HostEvent::Finished(Ok(summary(told)))],
            _ => Vec::new(),
        },
    );
    rig.run(&mut host, vec![probe]);
    assert_eq!(host.order(), ["root/1", "root/3", "root/2"]);
}

// ---- cancellation ----

#[test]
fn cancelling_a_subtree_stops_its_running_attempts_and_settles_them_as_cancelled() {
    let rig = Rig::new();
    let (probe, seen) = arc(Probe::new("a", |job| match job.effect.as_str() {
        "root/1" => Act::After(Duration::from_millis(10), Ok(json!(1))),
        _ => Act::Hang,
    }));
    let mut host = Script::new(ids(3).iter().map(|id| HostEvent::Request(on("a", id, json!(1)))).collect(), |told| {
        match told.len() {
            // root/1 decided the fan-in: the rest of the scope goes.
            1 => vec![HostEvent::Cancel { effect: "root/2".into() }, HostEvent::Cancel { effect: "root/3".into() }],
            3 => vec![HostEvent::Finished(Ok(summary(told)))],
            _ => Vec::new(),
        }
    });
    let started = Instant::now();
    let end = rig.run(&mut host, vec![probe]);
    assert!(started.elapsed() < Duration::from_secs(2), "cancelled attempts are not waited for");
    assert_eq!(end.output, Some(json!({"root/1": 1, "root/2": "!Cancelled", "root/3": "!Cancelled"})));
    let mut stopped = lock(&seen).stopped.clone();
    stopped.sort();
    assert_eq!(stopped, ["root/2", "root/3"]);
    let reasons: Vec<String> = rig
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::EffectCancelled { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, ["cancelled by the process", "cancelled by the process"]);
}

#[test]
fn a_queued_effect_cancelled_before_it_starts_never_starts() {
    let mut rig = Rig::new();
    rig.max_parallel = 1;
    let (probe, seen) = arc(Probe::echo_after("a", 10));
    let mut host = Script::new(ids(2).iter().map(|id| HostEvent::Request(on("a", id, json!(1)))).collect(), |told| {
        match told.len() {
            1 => vec![HostEvent::Cancel { effect: "root/2".into() }],
            2 => vec![HostEvent::Finished(Ok(summary(told)))],
            _ => Vec::new(),
        }
    });
    let end = rig.run(&mut host, vec![probe]);
    assert_eq!(end.output, Some(json!({"root/1": 1, "root/2": "!Cancelled"})));
    assert_eq!(lock(&seen).starts, [("root/1".to_string(), 1)]);
}

#[test]
fn a_cancel_command_ends_the_run_and_stops_what_runs() {
    let rig = Rig::new();
    let path = rig.path.clone();
    let (probe, seen) = arc(Probe::new("a", move |job| {
        if job.effect == "root/2" {
            Rig::post(&path, &Command::Cancel { reason: "enough".into(), by: None });
        }
        Act::Hang
    }));
    let mut host = Script::fan_out(ids(2).iter().map(|id| on("a", id, json!(1))).collect());
    let end = rig.run(&mut host, vec![probe]);
    assert_eq!(end.status, RunStatus::Cancelled);
    assert_eq!(lock(&seen).stopped.len(), 2);
    let events = rig.events();
    assert_eq!(
        count(&events, |e| matches!(e, Event::EffectCancelled { reason, .. } if reason == "run cancelled: enough")),
        2
    );
    assert!(matches!(events.last(), Some(Event::RunCancelled { reason }) if reason == "enough"));
}

#[test]
fn a_timeout_stops_the_attempt_and_fails_the_effect() {
    let rig = Rig::new();
    let (probe, seen) = arc(Probe::new("a", |_| Act::Hang));
    let task = json!({ "harness": "a", "timeoutMs": 50 });
    let mut host = Script::fan_out(vec![request("root/1", "agent", json!(1), task)]);
    let started = Instant::now();
    let end = rig.run(&mut host, vec![probe]);
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(end.output, Some(json!({"root/1": "!Timeout"})));
    assert_eq!(lock(&seen).stopped, ["root/1"]);
}

#[test]
fn a_report_after_the_effect_settled_is_ignored() {
    let rig = Rig::new();
    let (probe, _) = arc(Probe::new("a", |_| Act::After(Duration::from_millis(60), Ok(json!("late")))));
    let task = json!({ "harness": "a", "timeoutMs": 20 });
    let mut host = Script::new(vec![HostEvent::Request(request("root/1", "agent", json!(1), task))], |told| {
        // Finish only after the late report has had time to arrive.
        std::thread::sleep(Duration::from_millis(100));
        vec![HostEvent::Finished(Ok(summary(told)))]
    });
    let end = rig.run(&mut host, vec![probe]);
    assert_eq!(end.output, Some(json!({"root/1": "!Timeout"})));
    assert_eq!(count(&rig.events(), |e| matches!(e, Event::EffectResolved { .. })), 1);
}

// ---- failures, fallback, corrective turns ----

#[test]
fn an_unavailable_harness_falls_back_to_the_next_candidate() {
    let rig = Rig::new();
    let (a, a_seen) =
        arc(Probe::new("a", |_| Act::Now(Err(Failure::Unavailable(ErrorInfo::new("NotInstalled", "no a here"))))));
    let (b, b_seen) = arc(Probe::echo_after("b", 1));
    let task = json!({ "harness": ["a", "b"] });
    let mut host = Script::fan_out(vec![request("root/1", "agent", json!("hi"), task)]);
    let end = rig.run(&mut host, vec![a, b]);
    assert_eq!(end.output, Some(json!({"root/1": "hi"})));
    assert_eq!(lock(&a_seen).starts, [("root/1".to_string(), 1)]);
    assert_eq!(lock(&b_seen).starts, [("root/1".to_string(), 2)]);
    let routed = rig.events().into_iter().any(|e| {
        matches!(e, Event::EffectRouted { harness, reason, .. } if harness == "b" && reason.contains("a is unavailable (no a here)"))
    });
    assert!(routed);
}

#[test]
fn a_task_failure_does_not_fall_back() {
    let rig = Rig::new();
    let (a, _) = arc(Probe::new("a", |_| Act::Now(Err(Failure::Task(ErrorInfo::new("Exit", "exit 1"))))));
    let (b, b_seen) = arc(Probe::echo_after("b", 1));
    let mut host = Script::fan_out(vec![request("root/1", "agent", json!(1), json!({ "harness": ["a", "b"] }))]);
    let end = rig.run(&mut host, vec![a, b]);
    assert_eq!(end.output, Some(json!({"root/1": "!Exit"})));
    assert!(lock(&b_seen).starts.is_empty());
}

#[test]
fn the_last_unavailable_harness_fails_the_effect_as_environmental() {
    let rig = Rig::new();
    let (a, _) = arc(Probe::new("a", |_| Act::Now(Err(Failure::Unavailable(ErrorInfo::new("NoAuth", "no key"))))));
    let mut host = Script::fan_out(vec![on("a", "root/1", json!(1))]);
    rig.run(&mut host, vec![a]);
    let Some(Told::Outcome(_, Err(error))) = host.told.first() else { panic!("{:?}", host.told) };
    assert_eq!(error.name, "NoAuth");
    assert_eq!(error.data, Some(json!({ crate::harness::ENVIRONMENTAL: true })));
}

#[test]
fn a_harness_that_cannot_start_fails_the_effect_and_the_run_goes_on() {
    let rig = Rig::new();
    let (a, _) = arc(Probe::new("a", |job| match job.effect.as_str() {
        "root/1" => Act::Refuse("no such program".into()),
        _ => Act::Now(Ok(json!(2))),
    }));
    let mut host = Script::fan_out(ids(2).iter().map(|id| on("a", id, json!(1))).collect());
    let end = rig.run(&mut host, vec![a]);
    assert_eq!(end.output, Some(json!({"root/1": "!HarnessError", "root/2": 2})));
}

#[test]
fn a_task_no_harness_can_take_fails_with_the_reason() {
    let rig = Rig::new();
    let mut host = Script::fan_out(vec![on("missing", "root/1", json!(1))]);
    let end = rig.run(&mut host, Vec::new());
    assert_eq!(end.output, Some(json!({"root/1": "!NoHarness"})));
    let Some(Told::Outcome(_, Err(error))) = host.told.first() else { panic!() };
    assert!(error.message.starts_with("effect root/1: no harness for agent task"), "{}", error.message);
}

#[test]
fn an_answer_off_its_schema_gets_one_corrective_turn() {
    let rig = Rig::new();
    let (a, seen) = arc(Probe::new("a", |job| match job.attempt {
        1 => Act::Now(Err(Failure::Output { error: ErrorInfo::new("OutputError", "not JSON"), raw: json!("oops") })),
        _ => Act::Now(Ok(json!({ "n": 3 }))),
    }));
    let task = json!({ "harness": "a", "outputSchema": { "type": "object", "required": ["n"] } });
    let mut host = Script::fan_out(vec![request("root/1", "agent", json!(1), task)]);
    let end = rig.run(&mut host, vec![a]);
    assert_eq!(end.output, Some(json!({"root/1": {"n": 3}})));
    let seen = lock(&seen);
    assert_eq!(seen.starts, [("root/1".to_string(), 1), ("root/1".to_string(), 2)]);
    let (_, messages) = &seen.messages[1];
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].from, "tutti");
    assert!(messages[0].body.as_str().is_some_and(|s| s.contains("output schema")));
}

#[test]
fn a_second_answer_off_its_schema_is_a_schema_error_with_the_raw_answer() {
    let rig = Rig::new();
    let (a, seen) = arc(Probe::new("a", |_| Act::Now(Ok(json!({ "m": 1 })))));
    let task = json!({ "harness": "a", "outputSchema": { "type": "object", "required": ["n"] } });
    let mut host = Script::fan_out(vec![request("root/1", "agent", json!(1), task)]);
    rig.run(&mut host, vec![a]);
    assert_eq!(lock(&seen).starts.len(), 2, "one corrective turn, not more");
    let Some(Told::Outcome(_, Err(error))) = host.told.first() else { panic!() };
    assert_eq!(error.name, "SchemaError");
    assert_eq!(error.data.as_ref().and_then(|d| d.get("raw")), Some(&json!({ "m": 1 })));
}

// ---- the run's end ----

#[test]
fn a_process_waiting_on_nothing_is_a_deadlock() {
    let rig = Rig::new();
    let mut host = Script::new(Vec::new(), |_| Vec::new());
    let end = rig.run(&mut host, Vec::new());
    assert_eq!(end.status, RunStatus::Failed);
    assert_eq!(end.error.map(|e| e.name), Some("Deadlock".to_string()));
}

#[test]
fn a_halt_ends_the_run_as_halted_and_stops_what_runs() {
    let rig = Rig::new();
    let (a, seen) = arc(Probe::new("a", |job| match job.effect.as_str() {
        "root/1" => Act::After(Duration::from_millis(5), Ok(json!(1))),
        _ => Act::Hang,
    }));
    let mut host = Script::new(ids(2).iter().map(|id| HostEvent::Request(on("a", id, json!(1)))).collect(), |_| {
        vec![HostEvent::Halted { reason: "stop here".into(), payload: json!({"why": 1}) }]
    });
    let end = rig.run(&mut host, vec![a]);
    assert_eq!(end.status, RunStatus::Halted);
    assert_eq!(end.output, Some(json!({"halted": "stop here", "payload": {"why": 1}})));
    assert_eq!(lock(&seen).stopped, ["root/2"]);
}

#[test]
fn a_process_that_halts_starts_nothing_it_asked_for_in_its_last_step() {
    let rig = Rig::new();
    let (a, seen) = arc(Probe::echo_after("a", 1));
    let mut host = Script::new(vec![HostEvent::Request(on("a", "root/1", json!(1)))], |_| {
        vec![
            HostEvent::Request(on("a", "root/2", json!(2))),
            HostEvent::Halted { reason: "done".into(), payload: Value::Null },
        ]
    });
    let end = rig.run(&mut host, vec![a]);
    assert_eq!(end.status, RunStatus::Halted);
    assert_eq!(lock(&seen).starts, [("root/1".to_string(), 1)]);
    let events = rig.events();
    assert!(events.iter().any(|e| matches!(e, Event::EffectCancelled { effect, .. } if effect == "root/2")));
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_crash_right_after_a_start_leaves_its_request_committed() {
    let mut rig = Rig::new();
    rig.faults.kill_after_starts = Some(2);
    let (a, seen) = arc(Probe::new("a", |_| Act::Hang));
    let mut host = Script::fan_out(ids(3).iter().map(|id| on("a", id, json!(1))).collect());
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rig.run(&mut host, vec![a])));
    assert!(crashed.is_err(), "the driver crashed at the second start");
    assert_eq!(lock(&seen).starts.len(), 2);
    let events = rig.events();
    assert_eq!(count(&events, |e| matches!(e, Event::EffectRequested { .. })), 3, "all requests were committed first");
    assert_eq!(count(&events, |e| matches!(e, Event::EffectStarted { .. })), 1, "the second start is not journaled");
}

#[test]
fn progress_is_journaled_up_to_the_cap_per_attempt() {
    let rig = Rig::new();
    let (a, _) = arc(Probe::new("a", |_| Act::Chatty(crate::harness::PROGRESS_CAP + 100, Ok(json!(1)))));
    let mut host = Script::fan_out(vec![on("a", "root/1", json!(1))]);
    rig.run(&mut host, vec![a]);
    let events = rig.events();
    let notes = count(&events, |e| matches!(e, Event::EffectProgress { .. }));
    assert_eq!(notes, crate::harness::PROGRESS_CAP);
    let first = events.iter().position(|e| matches!(e, Event::EffectProgress { .. }));
    let done = events.iter().position(|e| matches!(e, Event::EffectResolved { .. }));
    assert!(first < done);
}

#[test]
fn a_breakpoint_waits_for_a_person_and_journals_who_answered() {
    let rig = Rig::new();
    let path = rig.path.clone();
    let (a, _) = arc(Probe::new("a", move |_| {
        // A person answers while the run waits.
        let by =
            tutti_journal::Actor { user: "ana".into(), host: "laptop".into(), tty: None, pid: 1, via: "cli".into() };
        let outcome = tutti_journal::Outcome::Ok { value: Payload::Inline(json!({ "approved": true })) };
        Rig::post(&path, &Command::Resolve { effect: "root/1".into(), outcome, by: Some(by) });
        Act::Now(Ok(json!("side")))
    }));
    let mut host = Script::fan_out(vec![
        request("root/1", "breakpoint", json!({"question": "ok?"}), json!({})),
        on("a", "root/2", json!(1)),
    ]);
    let end = rig.run(&mut host, vec![a]);
    assert_eq!(end.output, Some(json!({"root/2": "side", "root/1": {"approved": true}})));
    let applied = rig.events().into_iter().any(|e| {
        matches!(e, Event::ControlApplied { action, effect: Some(effect), .. } if action == "approve" && effect == "root/1")
    });
    assert!(applied);
}

#[test]
fn non_interactive_breakpoints_approve_themselves() {
    let mut rig = Rig::new();
    rig.non_interactive = true;
    let mut host = Script::fan_out(vec![request("root/1", "breakpoint", json!({}), json!({}))]);
    let end = rig.run(&mut host, Vec::new());
    assert_eq!(end.output.and_then(|o| o.pointer("/root~11/approved").cloned()), Some(json!(true)));
}

#[test]
fn a_sleep_wakes_at_its_target_time() {
    let rig = Rig::new();
    let target = super::wall_ms() + 150;
    let mut host = Script::fan_out(vec![request("root/1", "sleep", json!({ "targetEpochMs": target }), json!({}))]);
    let end = rig.run(&mut host, Vec::new());
    assert!(super::wall_ms() >= target);
    assert_eq!(end.output, Some(json!({"root/1": null})));
}

// ---- messages ----

#[test]
fn a_message_with_a_forged_token_is_dropped_and_a_true_one_reaches_the_coordinator() {
    let rig = Rig::new();
    let path = rig.path.clone();
    let (a, _) = arc(Probe::new("a", move |job| {
        let token = job.env.iter().find(|(k, _)| k == "TUTTI_MSG_TOKEN").map(|(_, v)| v.clone()).unwrap_or_default();
        for (token, body) in [("f".repeat(32), "forged"), (token, "true")] {
            let command = Command::Message {
                effect: job.effect.clone(),
                attempt: job.attempt,
                token,
                to: "coordinator".into(),
                body: json!(body),
            };
            Rig::post(&path, &command);
        }
        Act::After(Duration::from_millis(20), Ok(json!(1)))
    }));
    let mut host = Script::fan_out(vec![on("a", "root/1", json!(1))]);
    rig.run(&mut host, vec![a]);
    let messages: Vec<&Told> = host.told.iter().filter(|t| matches!(t, Told::Message(..))).collect();
    assert_eq!(messages, [&Told::Message("root/1".into(), json!("true"))]);
    assert_eq!(count(&rig.events(), |e| matches!(e, Event::MessageSent { .. })), 1);
}

#[test]
fn notices_reach_the_process_in_journal_order() {
    let rig = Rig::new();
    let (a, _) = arc(Probe::new("a", |job| match job.effect.as_str() {
        "root/1" => Act::After(Duration::from_millis(5), Ok(json!(1))),
        _ => Act::Hang,
    }));
    // root/1's result makes the process cancel root/2 and message itself; both are told after that step.
    let mut host = Script::new(ids(2).iter().map(|id| HostEvent::Request(on("a", id, json!(1)))).collect(), |told| {
        match told.len() {
            1 => vec![
                HostEvent::Cancel { effect: "root/2".into() },
                HostEvent::Send { scope: "root".into(), to: "coordinator".into(), body: json!("note") },
            ],
            3 => vec![HostEvent::Finished(Ok(Value::Null))],
            _ => Vec::new(),
        }
    });
    rig.run(&mut host, vec![a]);
    let journal: Vec<String> = rig
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::EffectResolved { effect, .. } | Event::EffectCancelled { effect, .. } => Some(effect.to_string()),
            Event::MessageSent { from, .. } => Some(format!("message from {from}")),
            _ => None,
        })
        .collect();
    let told: Vec<String> = host
        .told
        .iter()
        .map(|t| match t {
            Told::Outcome(e, _) => e.clone(),
            Told::Message(from, _) => format!("message from {from}"),
        })
        .collect();
    assert_eq!(journal, ["root/1", "root/2", "message from coordinator"]);
    assert_eq!(told, journal);
}

// ---- resume ----

/// A first driver that stops (as on Ctrl-C) once `root/3` has started; `root/1` is resolved by then.
fn interrupted_run(rig: &Rig) {
    let shutdown = Arc::clone(&rig.shutdown);
    let (a, _) = arc(Probe::new("a", move |job| match job.effect.as_str() {
        "root/1" => Act::Now(Ok(json!("one"))),
        "root/3" => {
            shutdown.store(true, Ordering::SeqCst);
            Act::Hang
        }
        _ => Act::Hang,
    }));
    let mut host = Script::fan_out(ids(3).iter().map(|id| on("a", id, json!(id))).collect());
    let end = rig.run(&mut host, vec![a]);
    assert!(end.interrupted, "{end:?}");
}

#[test]
fn resume_runs_again_only_the_effects_the_journal_did_not_resolve() {
    let rig = Rig::new();
    interrupted_run(&rig);
    let (a, seen) = arc(Probe::echo_after("a", 1));
    let mut host = Script::fan_out(ids(3).iter().map(|id| on("a", id, json!(id))).collect());
    let end = rig.resume(&mut host, vec![a]).expect("resume");
    assert_eq!(end.output, Some(json!({"root/1": "one", "root/2": "root/2", "root/3": "root/3"})));
    let mut starts = lock(&seen).starts.clone();
    starts.sort();
    assert_eq!(starts, [("root/2".to_string(), 2), ("root/3".to_string(), 2)]);
    let events = rig.events();
    assert_eq!(count(&events, |e| matches!(e, Event::EffectRequested { .. })), 3, "nothing requested twice");
    assert_eq!(count(&events, |e| matches!(e, Event::EffectRedispatched { .. })), 2);
}

#[test]
fn resume_kills_the_previous_attempts_before_running_them_again() {
    let rig = Rig::new();
    interrupted_run(&rig);
    let platform = Arc::clone(&rig.platform);
    let killed_first = Arc::new(Mutex::new(Vec::new()));
    let order = Arc::clone(&killed_first);
    let (a, _) = arc(Probe::new("a", move |job| {
        let killed = lock(&platform.killed).iter().any(|(e, _)| *e == job.effect);
        lock(&order).push((job.effect.to_string(), killed));
        Act::Now(Ok(json!(1)))
    }));
    let mut host = Script::fan_out(ids(3).iter().map(|id| on("a", id, json!(id))).collect());
    rig.resume(&mut host, vec![a]).expect("resume");
    let mut seen = lock(&killed_first).clone();
    seen.sort();
    assert_eq!(seen, [("root/2".to_string(), true), ("root/3".to_string(), true)]);
    let reasons: Vec<String> = rig
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::EffectRedispatched { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert!(reasons.iter().all(|r| r.contains("killed the previous attempt's process group")), "{reasons:?}");
}

#[test]
fn resume_kills_a_leftover_process_of_an_effect_whose_start_was_never_journaled() {
    let mut rig = Rig::new();
    rig.max_parallel = 1;
    // root/1 starts and the driver stops; root/2 never got a journaled start.
    let shutdown = Arc::clone(&rig.shutdown);
    let (a, _) = arc(Probe::new("a", move |_| {
        shutdown.store(true, Ordering::SeqCst);
        Act::Hang
    }));
    let mut host = Script::fan_out(ids(2).iter().map(|id| on("a", id, json!(1))).collect());
    assert!(rig.run(&mut host, vec![a]).interrupted);
    // Yet a process of root/2 runs: its driver died between the start and its commit.
    lock(&rig.platform.orphans).insert("root/2".into(), vec![777]);
    let (a, seen) = arc(Probe::echo_after("a", 1));
    let mut host = Script::fan_out(ids(2).iter().map(|id| on("a", id, json!(1))).collect());
    rig.resume(&mut host, vec![a]).expect("resume");
    assert!(lock(&rig.platform.killed).contains(&("root/2".to_string(), 777)));
    assert!(lock(&seen).starts.contains(&("root/2".to_string(), 2)), "a re-dispatch, as attempt 2");
    let reason = rig.events().into_iter().find_map(|e| match e {
        Event::EffectRedispatched { effect, reason, .. } if effect == "root/2" => Some(reason),
        _ => None,
    });
    assert!(reason.is_some_and(|r| r.contains("without a journaled start") && r.contains("777")));
}

#[test]
fn a_long_journal_read_while_the_process_starts_resumes_like_a_short_one() {
    let rig = Rig::new();
    // 800 effects make about 2,400 events: enough for the journal to be read while the process starts.
    let shutdown = Arc::clone(&rig.shutdown);
    let (a, _) = arc(Probe::new("a", move |job| match job.effect.as_str() {
        "root/800" => {
            shutdown.store(true, Ordering::SeqCst);
            Act::Hang
        }
        effect => Act::Now(Ok(json!(effect))),
    }));
    let requests = || (1..=800).map(|i| on("a", &format!("root/{i}"), json!(i))).collect::<Vec<_>>();
    assert!(rig.run(&mut Script::fan_out(requests()), vec![a]).interrupted);
    let journaled = rig.events().len();
    assert!(journaled > 2_000, "{journaled} events");
    let (a, seen) = arc(Probe::echo_after("a", 1));
    let end = rig.resume(&mut Script::fan_out(requests()), vec![a]).expect("resume");
    assert_eq!(end.status, RunStatus::Completed);
    let output = end.output.expect("output");
    assert_eq!(output.as_object().map(|m| m.len()), Some(800));
    assert_eq!(output["root/1"], json!("root/1"), "a journaled result");
    assert_eq!(output["root/800"], json!(800), "the one run again");
    assert_eq!(lock(&seen).starts, [("root/800".to_string(), 2)], "only the unresolved effect runs again");
}

#[test]
fn a_long_journal_without_requests_starts_the_process_afresh_with_its_tasks() {
    let rig = Rig::new();
    // A run whose journal is long but holds no request: the process started as a replay must start again
    // as a live run, whose requests carry their task descriptions (here, the harness to run on).
    let mut store = SqliteStore::open(&rig.path).expect("open");
    let logs = (0..2_100).map(|i| tutti_journal::NewEvent {
        ts_ms: 2,
        event: Event::Log { scope: "root".into(), message: format!("line {i}") },
    });
    let events: Vec<_> = std::iter::once(run_created()).chain(logs).collect();
    tutti_journal::EventLog::create_run(&mut store, &RUN.to_string(), &events).expect("create run");
    drop(store);
    let (a, seen) = arc(Probe::echo_after("a", 1));
    let end = rig.resume(&mut Script::fan_out(vec![on("a", "root/1", json!(5))]), vec![a]).expect("resume");
    assert_eq!(end.output, Some(json!({"root/1": 5})), "{end:?}");
    assert_eq!(lock(&seen).starts, [("root/1".to_string(), 1)]);
}

#[test]
fn resuming_an_ended_run_gives_its_end_and_runs_nothing() {
    let rig = Rig::new();
    let (a, _) = arc(Probe::echo_after("a", 1));
    let mut host = Script::fan_out(vec![on("a", "root/1", json!(5))]);
    let first = rig.run(&mut host, vec![a]);
    let before = rig.events().len();
    let (a, seen) = arc(Probe::echo_after("a", 1));
    let again = rig.resume(&mut host, vec![a]).expect("resume");
    assert_eq!(again, first);
    assert!(lock(&seen).starts.is_empty());
    assert_eq!(rig.events().len(), before, "nothing appended");
}

#[test]
fn a_process_that_asks_for_something_else_on_resume_is_refused_and_nothing_is_appended() {
    let rig = Rig::new();
    interrupted_run(&rig);
    let before = rig.events().len();
    let (a, seen) = arc(Probe::echo_after("a", 1));
    let mut host = Script::fan_out(ids(3).iter().map(|id| on("a", id, json!("changed"))).collect());
    let err = rig.resume(&mut host, vec![a]).expect_err("divergence");
    assert!(matches!(err, Error::Nondeterminism(_)), "{err}");
    assert!(lock(&seen).starts.is_empty());
    assert_eq!(rig.events().len(), before);
}

#[test]
fn a_run_whose_driver_lives_is_not_taken_over() {
    let rig = Rig::new();
    interrupted_run(&rig);
    let other = LeaseHolder { id: "other".into(), host: "test-host".into(), pid: 1 };
    let mut store = SqliteStore::open(&rig.path).expect("open");
    let now = super::wall_ms();
    store.acquire_lease(&RUN.to_string(), &other, now, 60_000, &|_| false).expect("lease");
    let (a, seen) = arc(Probe::echo_after("a", 1));
    let mut host = Script::fan_out(ids(3).iter().map(|id| on("a", id, json!(id))).collect());
    let err = rig.resume(&mut host, vec![a]).expect_err("busy");
    assert!(matches!(err, Error::Busy { .. }), "{err}");
    assert!(lock(&seen).starts.is_empty());
}

#[test]
fn an_interrupted_driver_journals_no_cancellation_so_resume_runs_them_again() {
    let rig = Rig::new();
    interrupted_run(&rig);
    let events = rig.events();
    assert!(matches!(events.last(), Some(Event::DriverDetached { .. })));
    assert_eq!(resolved(&events), ["root/1"], "running effects are not settled by a detach");
}
