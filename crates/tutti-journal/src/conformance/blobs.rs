//! Conformance checks of [`Blobs`]: payloads above the inline limit move to the blob store and load back as
//! they were, identical content shares one hash, and a missing blob is an error.

use serde_json::json;

use super::{Check, RUN_A, RUN_B, big, completed, created, id, new_run};
use crate::blob::INLINE_LIMIT;
use crate::event::{Event, NewEvent, Outcome, Payload};
use crate::store::{Blobs, Error, EventLog, Store};

/// The checks of this part, by name.
pub const BLOB_CHECKS: &[(&str, Check)] = &[
    check!(large_payloads_move_to_blobs),
    check!(small_payloads_stay_inline),
    check!(identical_blobs_share_a_hash),
    check!(missing_blob_is_an_error),
];

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

pub fn small_payloads_stay_inline(store: &mut dyn EventLog) {
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

pub fn missing_blob_is_an_error(store: &mut dyn Blobs) {
    let err = store.get_blob("00").expect_err("get_blob of an unknown hash");
    assert!(matches!(err, Error::MissingBlob(_)), "expected MissingBlob, got {err:?}");
}
