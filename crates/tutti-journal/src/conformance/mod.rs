//! The backend-agnostic test suite: every [`Store`] implementation must pass [`run_all`]. Each check takes a
//! fresh, empty store and panics with a message saying what broke. It tests the traits' contract only, not
//! how a backend lays out its tables. The checks are grouped by the part of [`Store`] they test, one file
//! each (`event_log.rs`, `blobs.rs`, `leases.rs`, `commands.rs`); this file runs them and holds the helpers
//! they share.

use serde_json::{Value, json};

use crate::blob::INLINE_LIMIT;
use crate::event::{Event, NewEvent, Payload, Record, RunId};
use crate::store::{EventLog, Store};

/// One check: it panics, saying what broke, when the store it is given breaks the contract.
pub type Check = fn(&mut dyn Store);

/// A check as a list entry: its name, and a function that hands it the part of the store it takes.
macro_rules! check {
    ($f:ident) => {
        (stringify!($f), |store: &mut dyn crate::store::Store| $f(store))
    };
}

pub mod blobs;
pub mod commands;
pub mod event_log;
pub mod leases;

pub use blobs::BLOB_CHECKS;
pub use commands::COMMAND_CHECKS;
pub use event_log::EVENT_LOG_CHECKS;
pub use leases::LEASE_CHECKS;

/// The checks of each part of [`Store`], by part.
pub const PARTS: &[(&str, &[(&str, Check)])] =
    &[("event_log", EVENT_LOG_CHECKS), ("blobs", BLOB_CHECKS), ("leases", LEASE_CHECKS), ("commands", COMMAND_CHECKS)];

/// Every check, by name: the lists of [`PARTS`] one after another.
pub const CHECKS: &[(&str, Check)] = &all_checks::<{ count_checks() }>();

const fn count_checks() -> usize {
    let (mut n, mut p) = (0, 0);
    while p < PARTS.len() {
        n += PARTS[p].1.len();
        p += 1;
    }
    n
}

const fn all_checks<const N: usize>() -> [(&'static str, Check); N] {
    let mut all = [EVENT_LOG_CHECKS[0]; N];
    let (mut n, mut p) = (0, 0);
    while p < PARTS.len() {
        let checks = PARTS[p].1;
        let mut i = 0;
        while i < checks.len() {
            all[n] = checks[i];
            n += 1;
            i += 1;
        }
        p += 1;
    }
    all
}

/// Runs every check, each on a fresh store from `make`.
pub fn run_all(make: &dyn Fn() -> Box<dyn Store>) {
    for (part, checks) in PARTS {
        run_checks(part, checks, make);
    }
}

/// Runs the checks of one part (`part` names it in a failure), each on a fresh store from `make`.
pub fn run_checks(part: &str, checks: &[(&str, Check)], make: &dyn Fn() -> Box<dyn Store>) {
    for (name, check) in checks {
        let mut store = make();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(store.as_mut())));
        if let Err(cause) = outcome {
            let message = cause
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| cause.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!("store conformance check `{name}` ({part}) failed: {message}");
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

fn new_run(store: &mut dyn EventLog, run: &str, ts_ms: i64) {
    store.create_run(&id(run), &[created(ts_ms, "p.js")]).expect("create_run of a new run should succeed");
}

fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

fn messages(store: &dyn EventLog, run: &str) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn checks_hold_every_check_of_every_part_once() {
        let by_part: Vec<&str> = PARTS.iter().flat_map(|(_, checks)| checks.iter().map(|(name, _)| *name)).collect();
        let all: Vec<&str> = CHECKS.iter().map(|(name, _)| *name).collect();
        assert_eq!(all, by_part);
        assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 25, "25 distinct checks: {all:?}");
    }
}
