//! Conformance checks of [`EventLog`]: runs are created with their first events, appends are numbered and
//! atomic, reads come back in order, and each run's summary keeps in step with its events.

use serde_json::json;

use super::{Check, RUN_A, RUN_B, RUN_C, completed, created, id, log, messages, new_run, seqs};
use crate::event::RunStatus;
use crate::store::{Error, EventLog};

/// The checks of this part, by name.
pub const EVENT_LOG_CHECKS: &[(&str, Check)] = &[
    check!(create_and_read_round_trip),
    check!(create_requires_run_created),
    check!(seq_continues_across_appends),
    check!(one_append_may_name_a_run_twice),
    check!(empty_append_returns_last_seq),
    check!(multi_run_append_is_atomic),
    check!(read_after_filters),
    check!(runs_track_status_and_updates),
    check!(runs_are_listed_oldest_first),
    check!(unknown_run_errors),
    check!(existing_run_cannot_be_created_again),
    check!(persist_keeps_unsynced_commits),
];

pub fn create_and_read_round_trip(store: &mut dyn EventLog) {
    let events = vec![created(1_000, "p.js"), log(1_001, "hello")];
    store.create_run(&id(RUN_A), &events).expect("create_run");
    let records = store.read(&id(RUN_A), 0).expect("read");
    assert_eq!(seqs(&records), [1, 2], "the first events of a run are numbered from 1");
    for (record, event) in records.iter().zip(&events) {
        assert_eq!((record.ts_ms, &record.event), (event.ts_ms, &event.event), "events read back as written");
    }
}

pub fn create_requires_run_created(store: &mut dyn EventLog) {
    let err = store.create_run(&id(RUN_A), &[log(1, "no header")]).expect_err("create_run without run_created");
    assert!(matches!(err, Error::MissingRunCreated(_)), "expected MissingRunCreated, got {err:?}");
    let err = store.create_run(&id(RUN_A), &[]).expect_err("create_run with no events");
    assert!(matches!(err, Error::MissingRunCreated(_)), "expected MissingRunCreated, got {err:?}");
    assert_eq!(store.run(&id(RUN_A)).expect("run"), None, "a refused run is not created");
}

pub fn seq_continues_across_appends(store: &mut dyn EventLog) {
    new_run(store, RUN_A, 1);
    let last = store.append(&[(id(RUN_A), vec![log(2, "a"), log(3, "b")])]).expect("append");
    assert_eq!(last, [3], "append returns the last seq of the batch");
    let last = store.append(&[(id(RUN_A), vec![log(4, "c")])]).expect("append");
    assert_eq!(last, [4], "seq continues from the previous append");
    assert_eq!(seqs(&store.read(&id(RUN_A), 0).expect("read")), [1, 2, 3, 4]);
    assert_eq!(messages(store, RUN_A), ["a", "b", "c"]);
}

pub fn one_append_may_name_a_run_twice(store: &mut dyn EventLog) {
    new_run(store, RUN_A, 1);
    new_run(store, RUN_B, 1);
    let batches = [
        (id(RUN_A), vec![log(2, "a1")]),
        (id(RUN_B), vec![log(2, "b1"), log(3, "b2")]),
        (id(RUN_A), vec![log(3, "a2"), log(4, "a3")]),
    ];
    let last = store.append(&batches).expect("append");
    assert_eq!(last, [2, 3, 4], "each batch gets its run's last seq, in order");
    assert_eq!(messages(store, RUN_A), ["a1", "a2", "a3"]);
    assert_eq!(messages(store, RUN_B), ["b1", "b2"]);
}

pub fn empty_append_returns_last_seq(store: &mut dyn EventLog) {
    new_run(store, RUN_A, 1);
    let last = store.append(&[(id(RUN_A), Vec::new())]).expect("append of no events");
    assert_eq!(last, [1], "an empty batch returns the current last seq");
    assert_eq!(store.append(&[]).expect("append of no batches"), Vec::<u64>::new());
}

pub fn multi_run_append_is_atomic(store: &mut dyn EventLog) {
    new_run(store, RUN_A, 1);
    let batches = [(id(RUN_A), vec![log(2, "lost")]), (id(RUN_B), vec![log(2, "to nowhere")])];
    let err = store.append(&batches).expect_err("append naming an unknown run");
    assert!(matches!(&err, Error::UnknownRun(run) if run == RUN_B), "expected UnknownRun({RUN_B}), got {err:?}");
    assert!(messages(store, RUN_A).is_empty(), "a failed append writes nothing, not even to valid runs");
    let run = store.run(&id(RUN_A)).expect("run").expect("run A exists");
    assert_eq!(run.events, 1, "a failed append leaves the run's event count unchanged");
    let last = store.append(&[(id(RUN_A), vec![log(3, "kept")])]).expect("append after a failed one");
    assert_eq!(last, [2], "seq numbering is not advanced by a failed append");
}

pub fn read_after_filters(store: &mut dyn EventLog) {
    new_run(store, RUN_A, 1);
    let events = (2..=6).map(|i| log(i, &format!("m{i}"))).collect();
    store.append(&[(id(RUN_A), events)]).expect("append");
    assert_eq!(seqs(&store.read(&id(RUN_A), 3).expect("read")), [4, 5, 6], "read(after) skips seq <= after");
    assert!(store.read(&id(RUN_A), 6).expect("read").is_empty(), "nothing after the last seq");
    assert!(store.read(&id(RUN_A), 100).expect("read").is_empty(), "nothing beyond the end");
}

pub fn runs_track_status_and_updates(store: &mut dyn EventLog) {
    new_run(store, RUN_A, 1_000);
    let run = store.run(&id(RUN_A)).expect("run").expect("run exists");
    let expected = (RUN_A, "p.js", 1_000, 1_000, RunStatus::Running, 1);
    let actual = (run.id.as_str(), run.process.as_str(), run.created_ms, run.updated_ms, run.status, run.events);
    assert_eq!(actual, expected, "a new run is running, with one event");
    store.append(&[(id(RUN_A), vec![log(2_000, "working")])]).expect("append");
    let run = store.run(&id(RUN_A)).expect("run").expect("run exists");
    assert_eq!((run.status, run.updated_ms, run.events), (RunStatus::Running, 2_000, 2));
    store.append(&[(id(RUN_A), vec![completed(3_000, json!(1)), log(3_001, "after")])]).expect("append");
    let run = store.run(&id(RUN_A)).expect("run").expect("run exists");
    assert_eq!((run.status, run.updated_ms, run.events), (RunStatus::Completed, 3_001, 4));
    assert_eq!(run.created_ms, 1_000, "created_ms never moves");
}

pub fn runs_are_listed_oldest_first(store: &mut dyn EventLog) {
    new_run(store, RUN_C, 10);
    new_run(store, RUN_B, 20);
    new_run(store, RUN_A, 20);
    let order: Vec<String> = store.runs().expect("runs").into_iter().map(|r| r.id).collect();
    assert_eq!(order, [RUN_C, RUN_A, RUN_B], "runs are ordered by created_ms, then id");
}

pub fn unknown_run_errors(store: &mut dyn EventLog) {
    let err = store.read(&id(RUN_A), 0).expect_err("read of an unknown run");
    assert!(matches!(&err, Error::UnknownRun(run) if run == RUN_A), "read: expected UnknownRun, got {err:?}");
    let err = store.append(&[(id(RUN_A), vec![log(1, "x")])]).expect_err("append to an unknown run");
    assert!(matches!(&err, Error::UnknownRun(run) if run == RUN_A), "append: expected UnknownRun, got {err:?}");
    assert_eq!(store.run(&id(RUN_A)).expect("run"), None, "run() of an unknown run is None");
    assert!(store.runs().expect("runs").is_empty(), "an empty store lists no runs");
}

pub fn existing_run_cannot_be_created_again(store: &mut dyn EventLog) {
    new_run(store, RUN_A, 1);
    let err = store.create_run(&id(RUN_A), &[created(2, "other.js")]).expect_err("second create_run");
    assert!(matches!(&err, Error::RunExists(run) if run == RUN_A), "expected RunExists, got {err:?}");
    assert_eq!(store.read(&id(RUN_A), 0).expect("read").len(), 1, "the refused events are not written");
    assert_eq!(store.run(&id(RUN_A)).expect("run").expect("run").process, "p.js");
}

/// An unsynced commit followed by `persist` (a driver's end) reads back like any other, and `persist` with
/// nothing unsynced is harmless.
pub fn persist_keeps_unsynced_commits(store: &mut dyn EventLog) {
    new_run(store, RUN_A, 1);
    store.persist().expect("persist with nothing unsynced");
    store.append_unsynced(&[(id(RUN_A), vec![log(2, "the end")])]).expect("append_unsynced");
    store.persist().expect("persist");
    assert_eq!(messages(store, RUN_A), ["the end"]);
    assert_eq!(store.run(&id(RUN_A)).expect("run").map(|r| r.events), Some(2));
}
