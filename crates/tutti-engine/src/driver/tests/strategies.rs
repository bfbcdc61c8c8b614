//! Retry policies and priorities in the dispatcher: a failed attempt is retried as the policy allows, each
//! retry journaled with its wake time before it waits; failures of a class the policy leaves out are not
//! retried; and among queued effects the higher priority starts first.

use super::*;

/// A probe whose first `fails` attempts of every effect fail as the task's own error.
fn flaky(fails: u32) -> (Arc<dyn crate::harness::Harness>, Arc<Mutex<Seen>>) {
    arc(Probe::new("a", move |job| match job.attempt <= fails {
        true => Act::Now(Err(Failure::Task(ErrorInfo::new("Exit", format!("attempt {} failed", job.attempt))))),
        false => Act::Now(Ok(json!(job.attempt))),
    }))
}

#[test]
fn a_failed_attempt_is_retried_after_its_backoff_and_each_retry_is_journaled_first() {
    let rig = Rig::new();
    let (probe, seen) = flaky(2);
    let task = json!({ "harness": "a", "retry": { "max": 3, "backoffMs": 30, "factor": 2 } });
    let mut host = Script::fan_out(vec![request("root/1", "agent", json!(1), task)]);
    let end = rig.run(&mut host, vec![probe]);
    assert_eq!(end.output, Some(json!({"root/1": 3})), "the third attempt answers");
    let attempts: Vec<u32> = lock(&seen).starts.iter().map(|(_, a)| *a).collect();
    assert_eq!(attempts, [1, 2, 3]);
    let events = rig.events();
    let retries: Vec<(u32, u32, i64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::EffectRetrying { attempt, retry, wake_ms, .. } => Some((*attempt, *retry, *wake_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(retries.iter().map(|(a, r, _)| (*a, *r)).collect::<Vec<_>>(), [(1, 1), (2, 2)]);
    // Each decision is journaled before the attempt it grants starts.
    let at = |pred: &dyn Fn(&Event) -> bool| events.iter().position(pred).expect("an event");
    let decided = at(&|e| matches!(e, Event::EffectRetrying { retry: 2, .. }));
    let third = at(&|e| matches!(e, Event::EffectStarted { attempt: 3, .. }));
    assert!(decided < third, "{events:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::EffectResolved { outcome: tutti_journal::Outcome::Error { .. }, .. }))
    );
}

#[test]
fn retries_run_out_and_other_failure_classes_are_not_retried() {
    let rig = Rig::new();
    let (probe, seen) = flaky(5);
    let tasks = [
        ("root/1", json!({ "harness": "a", "retry": { "max": 1, "backoffMs": 1 } })),
        (
            "root/2",
            json!({ "harness": "a", "retry": { "max": 3, "backoffMs": 1, "on": ["timeout", "environmental"] } }),
        ),
    ];
    let mut host = Script::fan_out(tasks.into_iter().map(|(id, t)| request(id, "agent", json!(1), t)).collect());
    let end = rig.run(&mut host, vec![probe]);
    assert_eq!(end.output, Some(json!({"root/1": "!Exit", "root/2": "!Exit"})));
    let starts = lock(&seen).starts.clone();
    assert_eq!(starts.iter().filter(|(e, _)| e == "root/1").count(), 2, "one retry, then the failure: {starts:?}");
    assert_eq!(starts.iter().filter(|(e, _)| e == "root/2").count(), 1, "a task error is not retried on timeout only");
}

#[test]
fn the_higher_priority_starts_first_within_the_run_limit() {
    let mut rig = Rig::new();
    rig.max_parallel = 1;
    let (probe, seen) = arc(Probe::echo_after("a", 1));
    let task = |p: i64| json!({ "harness": "a", "priority": p });
    let requests = vec![
        request("root/1", "agent", json!(1), task(0)),
        request("root/2", "agent", json!(2), task(0)),
        request("root/3", "agent", json!(3), task(5)),
    ];
    let mut host = Script::fan_out(requests);
    rig.run(&mut host, vec![probe]);
    let order: Vec<String> = lock(&seen).starts.iter().map(|(e, _)| e.clone()).collect();
    assert_eq!(order, ["root/3", "root/1", "root/2"]);
}
