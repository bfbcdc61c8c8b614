//! `resume` with `Changes::Accept`: a changed call and every effect requested after it run again, earlier
//! effects keep their journaled results, and a later resume replays the re-run results.

use super::*;
use crate::driver::Changes;

/// A chain: `root/1` with 1, `root/2` with `b`, then `root/3` and `root/4` each with the result before it plus
/// one; the process returns every result by effect.
fn chain(b: i64) -> Script {
    Script::new(vec![HostEvent::Request(on("a", "root/1", json!(1)))], move |told| {
        let last = match told.last() {
            Some(Told::Outcome(_, Ok(v))) => v.as_i64().unwrap_or(-1),
            _ => -1,
        };
        match told.len() {
            1 => vec![HostEvent::Request(on("a", "root/2", json!(b)))],
            2 => vec![HostEvent::Request(on("a", "root/3", json!(last + 1)))],
            3 => vec![HostEvent::Request(on("a", "root/4", json!(last + 1)))],
            _ => vec![HostEvent::Finished(Ok(summary(told)))],
        }
    })
}

/// A probe that echoes its arguments, except that the driver stops (as on Ctrl-C) when `stop_at` starts.
fn echo_until(rig: &Rig, stop_at: &'static str) -> (Arc<dyn crate::harness::Harness>, Arc<Mutex<Seen>>) {
    let shutdown = Arc::clone(&rig.shutdown);
    arc(Probe::new("a", move |job| {
        if job.effect == stop_at {
            shutdown.store(true, Ordering::SeqCst);
            return Act::Hang;
        }
        Act::Now(Ok(job.args.clone()))
    }))
}

/// The chain with `b` = 2, stopped while `root/4` runs: `root/1`..`root/3` are resolved.
fn stopped_chain(rig: &Rig) {
    let (a, _) = echo_until(rig, "root/4");
    assert!(rig.run(&mut chain(2), vec![a]).interrupted);
}

fn accepted(events: &[Event]) -> Vec<(String, Value, Value, Vec<String>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ChangesAccepted { effect, old_args, new_args, superseded, .. } => {
                let (Payload::Inline(old), Payload::Inline(new)) = (old_args, new_args) else { return None };
                let superseded = superseded.iter().map(|s| s.to_string()).collect();
                Some((effect.to_string(), old.clone(), new.clone(), superseded))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn accepting_a_change_reruns_the_changed_effect_and_those_after_it_but_not_those_before() {
    let rig = Rig::new();
    stopped_chain(&rig);
    let (a, seen) = arc(Probe::echo_after("a", 1));
    let end = rig.resume_with(&mut chain(20), vec![a], Changes::Accept).expect("the change is accepted");
    assert_eq!(end.status, RunStatus::Completed);
    assert_eq!(end.output, Some(json!({"root/1": 1, "root/2": 20, "root/3": 21, "root/4": 22})));
    let starts = lock(&seen).starts.clone();
    let expected: Vec<(String, u32)> = ["root/2", "root/3", "root/4"].iter().map(|e| (e.to_string(), 1)).collect();
    assert_eq!(starts, expected, "root/1 keeps its journaled result; root/3 used root/2's, so it runs again");
    let events = rig.events();
    let all = ["root/2", "root/3", "root/4"].map(String::from).to_vec();
    assert_eq!(accepted(&events), [("root/2".to_string(), json!(2), json!(20), all)]);
    assert!(lock(&rig.platform.killed).iter().any(|(e, _)| e == "root/4"), "the stopped root/4 is killed first");
    let at = |pred: &dyn Fn(&Event) -> bool| events.iter().position(pred);
    let accepted_at = at(&|e| matches!(e, Event::ChangesAccepted { .. }));
    let rerun_at = at(&|e| matches!(e, Event::EffectRequested { effect, .. } if effect == "root/2"));
    assert!(accepted_at.is_some() && rerun_at.is_some(), "{events:?}");
    let last_request_of_root_2 =
        events.iter().rposition(|e| matches!(e, Event::EffectRequested { effect, .. } if effect == "root/2"));
    assert!(accepted_at < last_request_of_root_2, "the acceptance comes before the re-run's request");
}

#[test]
fn a_later_resume_replays_the_rerun_results_not_the_superseded_ones() {
    let rig = Rig::new();
    stopped_chain(&rig);
    // Accept the change, and stop again while the re-run root/3 runs.
    let (a, _) = echo_until(&rig, "root/3");
    assert!(rig.resume_with(&mut chain(20), vec![a], Changes::Accept).expect("accepted").interrupted);
    // A plain resume of the edited process now matches the journal.
    let (a, seen) = arc(Probe::echo_after("a", 1));
    let end = rig.resume(&mut chain(20), vec![a]).expect("the journal now holds the new call");
    assert_eq!(end.output, Some(json!({"root/1": 1, "root/2": 20, "root/3": 21, "root/4": 22})));
    let starts = lock(&seen).starts.clone();
    assert_eq!(starts, [("root/3".to_string(), 2), ("root/4".to_string(), 1)], "only what has no result runs");
    assert_eq!(accepted(&rig.events()).len(), 1, "nothing more to accept");
    // The process as the run started it is now the divergent one.
    let (a, _) = arc(Probe::echo_after("a", 1));
    let again = rig.resume(&mut chain(2), vec![a]).expect("an ended run gives its end");
    assert_eq!(again, end);
}

#[test]
fn accepting_changes_when_nothing_changed_is_a_plain_resume() {
    let rig = Rig::new();
    stopped_chain(&rig);
    let (a, seen) = arc(Probe::echo_after("a", 1));
    let end = rig.resume_with(&mut chain(2), vec![a], Changes::Accept).expect("resume");
    assert_eq!(end.output, Some(json!({"root/1": 1, "root/2": 2, "root/3": 3, "root/4": 4})));
    assert_eq!(lock(&seen).starts, [("root/4".to_string(), 2)], "a re-dispatch of what was running, as without it");
    assert!(accepted(&rig.events()).is_empty());
}

#[test]
fn without_accepting_changes_a_changed_call_still_fails_and_appends_nothing() {
    let rig = Rig::new();
    stopped_chain(&rig);
    let before = rig.events().len();
    let (a, seen) = arc(Probe::echo_after("a", 1));
    let err = rig.resume(&mut chain(20), vec![a]).expect_err("divergence");
    let Error::Nondeterminism(divergence) = &err else { panic!("{err}") };
    assert!(matches!(**divergence, crate::error::Nondeterminism::Changed { .. }), "{err}");
    assert!(err.to_string().contains("--accept-changes"), "{err}");
    assert!(lock(&seen).starts.is_empty());
    assert_eq!(rig.events().len(), before);
}
