//! The backend-agnostic test suite: every [`Store`] implementation must pass [`run_all`]. Each check takes a
//! fresh, empty store and panics with a message saying what broke. It tests the trait's contract only, not
//! how a backend lays out its tables.

use serde_json::{Value, json};

use crate::blob::INLINE_LIMIT;
use crate::event::{ErrorInfo, Event, NewEvent, Outcome, Payload, Record, RunId, RunStatus};
use crate::store::{Command, Error, LeaseHolder, LeaseOutcome, Store};

type Check = fn(&mut dyn Store);

/// Every check, by name.
pub const CHECKS: &[(&str, Check)] = &[
    ("create_and_read_round_trip", create_and_read_round_trip),
    ("create_requires_run_created", create_requires_run_created),
    ("seq_continues_across_appends", seq_continues_across_appends),
    ("one_append_may_name_a_run_twice", one_append_may_name_a_run_twice),
    ("empty_append_returns_last_seq", empty_append_returns_last_seq),
    ("multi_run_append_is_atomic", multi_run_append_is_atomic),
    ("read_after_filters", read_after_filters),
    ("large_payloads_move_to_blobs", large_payloads_move_to_blobs),
    ("small_payloads_stay_inline", small_payloads_stay_inline),
    ("identical_blobs_share_a_hash", identical_blobs_share_a_hash),
    ("missing_blob_is_an_error", missing_blob_is_an_error),
    ("runs_track_status_and_updates", runs_track_status_and_updates),
    ("runs_are_listed_oldest_first", runs_are_listed_oldest_first),
    ("unknown_run_errors", unknown_run_errors),
    ("existing_run_cannot_be_created_again", existing_run_cannot_be_created_again),
    ("lease_acquire_and_busy", lease_acquire_and_busy),
    ("expired_lease_is_taken_over", expired_lease_is_taken_over),
    ("stale_lease_is_taken_over", stale_lease_is_taken_over),
    ("lease_renew_only_while_held", lease_renew_only_while_held),
    ("lease_release_only_by_holder", lease_release_only_by_holder),
    ("commands_are_taken_once_in_order", commands_are_taken_once_in_order),
    ("commands_to_unknown_run_are_refused", commands_to_unknown_run_are_refused),
];

/// Runs every check, each on a fresh store from `make`.
pub fn run_all(make: &dyn Fn() -> Box<dyn Store>) {
    for (name, check) in CHECKS {
        let mut store = make();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(store.as_mut())));
        if let Err(cause) = outcome {
            let message = cause
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| cause.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!("store conformance check `{name}` failed: {message}");
        }
    }
}

const RUN_A: &str = "01J00000000000000000000AAA";
const RUN_B: &str = "01J00000000000000000000BBB";
const RUN_C: &str = "01J00000000000000000000CCC";

fn id(run: &str) -> RunId {
    run.to_owned()
}

fn created(ts_ms: i64, process: &str) -> NewEvent {
    let event = Event::RunCreated {
        process: process.into(),
        inputs: Payload::Inline(json!({"topic": "tests"})),
        code_hash: "c0de".into(),
        modules: Vec::new(),
        options: json!({"max_parallel": 4}),
    };
    NewEvent { ts_ms, event }
}

fn log(ts_ms: i64, message: &str) -> NewEvent {
    NewEvent { ts_ms, event: Event::Log { scope: "root".into(), message: message.into() } }
}

fn completed(ts_ms: i64, output: Value) -> NewEvent {
    NewEvent { ts_ms, event: Event::RunCompleted { output: Payload::Inline(output) } }
}

fn new_run(store: &mut dyn Store, run: &str, ts_ms: i64) {
    store.create_run(&id(run), &[created(ts_ms, "p.js")]).expect("create_run of a new run should succeed");
}

fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

fn messages(store: &dyn Store, run: &str) -> Vec<String> {
    let records = store.read(&id(run), 0).expect("read of an existing run should succeed");
    records
        .into_iter()
        .filter_map(|r| match r.event {
            Event::Log { message, .. } => Some(message),
            _ => None,
        })
        .collect()
}

fn big(tag: &str) -> Value {
    json!({ "tag": tag, "text": "x".repeat(INLINE_LIMIT + 1) })
}

pub fn create_and_read_round_trip(store: &mut dyn Store) {
    let events = vec![created(1_000, "p.js"), log(1_001, "hello")];
    store.create_run(&id(RUN_A), &events).expect("create_run");
    let records = store.read(&id(RUN_A), 0).expect("read");
    assert_eq!(seqs(&records), [1, 2], "the first events of a run are numbered from 1");
    for (record, event) in records.iter().zip(&events) {
        assert_eq!((record.ts_ms, &record.event), (event.ts_ms, &event.event), "events read back as written");
    }
}

pub fn create_requires_run_created(store: &mut dyn Store) {
    let err = store.create_run(&id(RUN_A), &[log(1, "no header")]).expect_err("create_run without run_created");
    assert!(matches!(err, Error::MissingRunCreated(_)), "expected MissingRunCreated, got {err:?}");
    let err = store.create_run(&id(RUN_A), &[]).expect_err("create_run with no events");
    assert!(matches!(err, Error::MissingRunCreated(_)), "expected MissingRunCreated, got {err:?}");
    assert_eq!(store.run(&id(RUN_A)).expect("run"), None, "a refused run is not created");
}

pub fn seq_continues_across_appends(store: &mut dyn Store) {
    new_run(store, RUN_A, 1);
    let last = store.append(&[(id(RUN_A), vec![log(2, "a"), log(3, "b")])]).expect("append");
    assert_eq!(last, [3], "append returns the last seq of the batch");
    let last = store.append(&[(id(RUN_A), vec![log(4, "c")])]).expect("append");
    assert_eq!(last, [4], "seq continues from the previous append");
    assert_eq!(seqs(&store.read(&id(RUN_A), 0).expect("read")), [1, 2, 3, 4]);
    assert_eq!(messages(store, RUN_A), ["a", "b", "c"]);
}

pub fn one_append_may_name_a_run_twice(store: &mut dyn Store) {
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

pub fn empty_append_returns_last_seq(store: &mut dyn Store) {
    new_run(store, RUN_A, 1);
    let last = store.append(&[(id(RUN_A), Vec::new())]).expect("append of no events");
    assert_eq!(last, [1], "an empty batch returns the current last seq");
    assert_eq!(store.append(&[]).expect("append of no batches"), Vec::<u64>::new());
}

pub fn multi_run_append_is_atomic(store: &mut dyn Store) {
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

pub fn read_after_filters(store: &mut dyn Store) {
    new_run(store, RUN_A, 1);
    let events = (2..=6).map(|i| log(i, &format!("m{i}"))).collect();
    store.append(&[(id(RUN_A), events)]).expect("append");
    assert_eq!(seqs(&store.read(&id(RUN_A), 3).expect("read")), [4, 5, 6], "read(after) skips seq <= after");
    assert!(store.read(&id(RUN_A), 6).expect("read").is_empty(), "nothing after the last seq");
    assert!(store.read(&id(RUN_A), 100).expect("read").is_empty(), "nothing beyond the end");
}

fn large_payload_events() -> Vec<NewEvent> {
    let requested = Event::EffectRequested {
        effect: "root/0".into(),
        scope: "root".into(),
        task_id: "t".into(),
        kind: "agent".into(),
        digest: "d".into(),
        title: None,
        callsite: Some("p.js:1:1".into()),
        args: Payload::Inline(big("args")),
        task: Payload::Inline(big("task")),
    };
    let resolved = Event::EffectResolved {
        effect: "root/0".into(),
        attempt: 1,
        outcome: Outcome::Ok { value: Payload::Inline(big("value")) },
    };
    let halted = Event::RunHalted { reason: "stop".into(), payload: Payload::Inline(big("halt")) };
    [requested, resolved, halted].into_iter().map(|event| NewEvent { ts_ms: 5, event }).collect()
}

pub fn large_payloads_move_to_blobs(store: &mut dyn Store) {
    let mut first = created(1, "p.js");
    if let Event::RunCreated { inputs, .. } = &mut first.event {
        *inputs = Payload::Inline(big("inputs"));
    }
    store.create_run(&id(RUN_A), &[first]).expect("create_run with large inputs");
    store.append(&[(id(RUN_A), large_payload_events())]).expect("append of large payloads");
    let mut records = store.read(&id(RUN_A), 0).expect("read");
    let tags = ["inputs", "args", "task", "value", "halt"];
    let payloads: Vec<Payload> = records.iter_mut().flat_map(|r| r.event.payloads_mut()).map(|p| p.clone()).collect();
    assert_eq!(payloads.len(), tags.len(), "every payload is read back");
    for (payload, tag) in payloads.iter().zip(tags) {
        let Payload::Blob { size, .. } = payload else {
            panic!("payload {tag} over {INLINE_LIMIT} bytes should be a blob, got {payload:?}");
        };
        let value = store.load(payload).expect("load of a blob payload");
        assert_eq!(value, big(tag), "blob {tag} loads back to the original value");
        assert_eq!(*size, serde_json::to_vec(&value).expect("json").len() as u64, "blob size is the JSON length");
    }
}

pub fn small_payloads_stay_inline(store: &mut dyn Store) {
    let value = json!("y".repeat(INLINE_LIMIT - 2)); // exactly INLINE_LIMIT bytes with its quotes
    store.create_run(&id(RUN_A), &[created(1, "p.js"), completed(2, value.clone())]).expect("create_run");
    let records = store.read(&id(RUN_A), 1).expect("read");
    let Event::RunCompleted { output } = &records[0].event else { panic!("expected run_completed") };
    assert_eq!(output, &Payload::Inline(value), "a payload of exactly {INLINE_LIMIT} bytes stays inline");
}

pub fn identical_blobs_share_a_hash(store: &mut dyn Store) {
    new_run(store, RUN_A, 1);
    new_run(store, RUN_B, 1);
    let batches = [(id(RUN_A), vec![completed(2, big("same"))]), (id(RUN_B), vec![completed(2, big("same"))])];
    store.append(&batches).expect("append of identical large payloads");
    let output = |run: &str| match store.read(&id(run), 1).expect("read").remove(0).event {
        Event::RunCompleted { output } => output,
        other => panic!("expected run_completed, got {other:?}"),
    };
    let (a, b) = (output(RUN_A), output(RUN_B));
    assert!(matches!(a, Payload::Blob { .. }), "large output should be a blob, got {a:?}");
    assert_eq!(a, b, "identical values are stored under one hash");
    let bytes = serde_json::to_vec(&big("same")).expect("json");
    let hash = store.put_blob(&bytes).expect("put_blob of bytes already stored");
    assert!(matches!(&a, Payload::Blob { hash: h, .. } if *h == hash), "put_blob uses the same content hash");
    assert_eq!(store.get_blob(&hash).expect("get_blob"), bytes);
    assert_eq!(store.put_blob(b"abc").expect("put_blob"), store.put_blob(b"abc").expect("put_blob again"));
}

pub fn missing_blob_is_an_error(store: &mut dyn Store) {
    let err = store.get_blob("00").expect_err("get_blob of an unknown hash");
    assert!(matches!(err, Error::MissingBlob(_)), "expected MissingBlob, got {err:?}");
}

pub fn runs_track_status_and_updates(store: &mut dyn Store) {
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

pub fn runs_are_listed_oldest_first(store: &mut dyn Store) {
    new_run(store, RUN_C, 10);
    new_run(store, RUN_B, 20);
    new_run(store, RUN_A, 20);
    let order: Vec<String> = store.runs().expect("runs").into_iter().map(|r| r.id).collect();
    assert_eq!(order, [RUN_C, RUN_A, RUN_B], "runs are ordered by created_ms, then id");
}

pub fn unknown_run_errors(store: &mut dyn Store) {
    let err = store.read(&id(RUN_A), 0).expect_err("read of an unknown run");
    assert!(matches!(&err, Error::UnknownRun(run) if run == RUN_A), "read: expected UnknownRun, got {err:?}");
    let err = store.append(&[(id(RUN_A), vec![log(1, "x")])]).expect_err("append to an unknown run");
    assert!(matches!(&err, Error::UnknownRun(run) if run == RUN_A), "append: expected UnknownRun, got {err:?}");
    assert_eq!(store.run(&id(RUN_A)).expect("run"), None, "run() of an unknown run is None");
    assert!(store.runs().expect("runs").is_empty(), "an empty store lists no runs");
}

pub fn existing_run_cannot_be_created_again(store: &mut dyn Store) {
    new_run(store, RUN_A, 1);
    let err = store.create_run(&id(RUN_A), &[created(2, "other.js")]).expect_err("second create_run");
    assert!(matches!(&err, Error::RunExists(run) if run == RUN_A), "expected RunExists, got {err:?}");
    assert_eq!(store.read(&id(RUN_A), 0).expect("read").len(), 1, "the refused events are not written");
    assert_eq!(store.run(&id(RUN_A)).expect("run").expect("run").process, "p.js");
}

fn holder(name: &str, pid: u32) -> LeaseHolder {
    LeaseHolder { id: name.into(), host: "host-1".into(), pid }
}

fn never_stale(_: &LeaseHolder) -> bool {
    false
}

fn acquire(store: &mut dyn Store, me: &LeaseHolder, now_ms: i64) -> LeaseOutcome {
    store.acquire_lease(&id(RUN_A), me, now_ms, 1_000, &never_stale).expect("acquire_lease")
}

pub fn lease_acquire_and_busy(store: &mut dyn Store) {
    let (me, other) = (holder("me", 1), holder("other", 2));
    assert_eq!(store.lease(&id(RUN_A), 0).expect("lease"), None, "no lease before anyone acquires");
    assert_eq!(acquire(store, &me, 0), LeaseOutcome::Acquired, "a free run is acquired");
    assert_eq!(store.lease(&id(RUN_A), 10).expect("lease"), Some(me.clone()));
    let busy = LeaseOutcome::Busy { holder: me.clone(), expires_ms: 1_000 };
    assert_eq!(acquire(store, &other, 500), busy, "a live lease of someone else is busy");
    assert_eq!(acquire(store, &me, 500), LeaseOutcome::Acquired, "the holder may acquire again");
    assert_eq!(store.lease(&id(RUN_A), 1_400).expect("lease"), Some(me), "re-acquiring extends the lease");
}

pub fn expired_lease_is_taken_over(store: &mut dyn Store) {
    let (me, other) = (holder("me", 1), holder("other", 2));
    assert_eq!(acquire(store, &other, 0), LeaseOutcome::Acquired);
    assert_eq!(store.lease(&id(RUN_A), 1_000).expect("lease"), None, "a lease is dead at its expiry time");
    assert_eq!(acquire(store, &me, 1_000), LeaseOutcome::Acquired, "an expired lease is taken over");
    assert_eq!(store.lease(&id(RUN_A), 1_500).expect("lease"), Some(me));
}

pub fn stale_lease_is_taken_over(store: &mut dyn Store) {
    let (me, other) = (holder("me", 1), holder("other", 2));
    assert_eq!(acquire(store, &other, 0), LeaseOutcome::Acquired);
    let dead = |h: &LeaseHolder| h.pid == 2;
    let outcome = store.acquire_lease(&id(RUN_A), &me, 10, 1_000, &dead).expect("acquire_lease");
    assert_eq!(outcome, LeaseOutcome::Acquired, "a lease whose holder is gone is taken over before expiry");
    assert_eq!(store.lease(&id(RUN_A), 20).expect("lease"), Some(me));
}

pub fn lease_renew_only_while_held(store: &mut dyn Store) {
    let (me, other) = (holder("me", 1), holder("other", 2));
    assert_eq!(acquire(store, &me, 0), LeaseOutcome::Acquired);
    assert!(store.renew_lease(&id(RUN_A), &me, 900, 1_000).expect("renew_lease"), "the holder renews");
    assert_eq!(store.lease(&id(RUN_A), 1_800).expect("lease"), Some(me.clone()), "renewal extends expiry");
    assert!(!store.renew_lease(&id(RUN_A), &other, 900, 1_000).expect("renew_lease"), "a non-holder cannot");
    assert_eq!(acquire(store, &other, 2_000), LeaseOutcome::Acquired, "the renewed lease expires at 1,900");
    assert!(!store.renew_lease(&id(RUN_A), &me, 2_100, 1_000).expect("renew_lease"), "taken over: no renewal");
    assert_eq!(store.lease(&id(RUN_A), 2_100).expect("lease"), Some(other));
}

pub fn lease_release_only_by_holder(store: &mut dyn Store) {
    let (me, other) = (holder("me", 1), holder("other", 2));
    assert_eq!(acquire(store, &me, 0), LeaseOutcome::Acquired);
    store.release_lease(&id(RUN_A), &other).expect("release_lease by a non-holder");
    assert_eq!(store.lease(&id(RUN_A), 10).expect("lease"), Some(me.clone()), "others cannot release it");
    store.release_lease(&id(RUN_A), &me).expect("release_lease");
    assert_eq!(store.lease(&id(RUN_A), 10).expect("lease"), None, "released");
    assert_eq!(acquire(store, &other, 10), LeaseOutcome::Acquired, "a released run is free");
}

fn cancel(reason: &str) -> Command {
    Command::Cancel { reason: reason.into(), by: None }
}

pub fn commands_are_taken_once_in_order(store: &mut dyn Store) {
    new_run(store, RUN_A, 1);
    new_run(store, RUN_B, 1);
    let resolve = Command::Resolve {
        effect: "root/1".into(),
        outcome: Outcome::Error { error: ErrorInfo::new("Rejected", "no").with_data(json!({"by": "me"})) },
        by: Some(crate::Actor { user: "ann".into(), host: "h".into(), tty: None, pid: 7, via: "cli".into() }),
    };
    store.post_command(&id(RUN_A), &resolve).expect("post_command");
    store.post_command(&id(RUN_B), &cancel("b")).expect("post_command");
    store.post_command(&id(RUN_A), &cancel("a")).expect("post_command");
    assert_eq!(store.queued_commands(&id(RUN_A)).expect("queued"), [resolve.clone(), cancel("a")], "peeked");
    assert_eq!(store.take_commands(&id(RUN_A)).expect("take"), [resolve, cancel("a")], "oldest first");
    assert!(store.take_commands(&id(RUN_A)).expect("take").is_empty(), "a command is taken only once");
    store.post_command(&id(RUN_A), &cancel("later")).expect("post_command");
    assert_eq!(store.take_commands(&id(RUN_A)).expect("take"), [cancel("later")], "new commands still arrive");
    assert_eq!(store.take_commands(&id(RUN_B)).expect("take"), [cancel("b")], "commands stay with their run");
}

pub fn commands_to_unknown_run_are_refused(store: &mut dyn Store) {
    let err = store.post_command(&id(RUN_A), &cancel("x")).expect_err("post_command to an unknown run");
    assert!(matches!(&err, Error::UnknownRun(run) if run == RUN_A), "expected UnknownRun, got {err:?}");
    assert!(store.take_commands(&id(RUN_A)).expect("take_commands").is_empty());
}
