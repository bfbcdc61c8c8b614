//! Tests of the PostgreSQL backend against a real server (`tutti_testkit::postgres`): the conformance suite
//! part by part, each check in a schema of its own, and what only a shared server can show — two stores
//! appending to one run, two drivers racing for one lease, a schema from an unknown version, bad URLs.

use serde_json::json;

use super::*;
use crate::conformance::{self, Check};
use crate::event::Payload;

fn store(tag: &str) -> PgStore {
    let url = tutti_testkit::postgres::schema_url(tag);
    PgStore::open(&url).unwrap_or_else(|e| panic!("open {url}: {e:?}"))
}

fn conformance_part(part: &str, checks: &[(&str, Check)]) {
    conformance::run_checks(part, checks, &|| Box::new(store(part)));
}

#[test]
fn conformance_event_log() {
    conformance_part("event_log", conformance::EVENT_LOG_CHECKS);
}

#[test]
fn conformance_blobs() {
    conformance_part("blobs", conformance::BLOB_CHECKS);
}

#[test]
fn conformance_leases() {
    conformance_part("leases", conformance::LEASE_CHECKS);
}

#[test]
fn conformance_commands() {
    conformance_part("commands", conformance::COMMAND_CHECKS);
}

fn created(ts_ms: i64) -> NewEvent {
    let event = Event::RunCreated {
        process: "p.js".into(),
        inputs: Payload::null(),
        code_hash: "h".into(),
        modules: Vec::new(),
        options: json!({}),
    };
    NewEvent { ts_ms, event }
}

fn log(ts_ms: i64, message: String) -> NewEvent {
    NewEvent { ts_ms, event: Event::Log { scope: "root".into(), message } }
}

#[test]
fn two_stores_appending_to_one_run_number_its_events_without_gaps() {
    let url = tutti_testkit::postgres::schema_url("concurrent");
    let mut first = PgStore::open(&url).unwrap();
    first.create_run(&"r".to_string(), &[created(1)]).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut s = PgStore::open(&url).unwrap();
                for i in 0..25 {
                    s.append(&[("r".to_string(), vec![log(2, format!("{t}-{i}")), log(2, format!("{t}-{i}b"))])])
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let records = first.read(&"r".to_string(), 0).unwrap();
    assert_eq!(records.len(), 1 + 4 * 25 * 2);
    assert!(records.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1), "numbered 1..=n");
    // Each append's two events stay together.
    for pair in records[1..].chunks(2) {
        let [Event::Log { message: a, .. }, Event::Log { message: b, .. }] = [&pair[0].event, &pair[1].event] else {
            panic!("logs expected");
        };
        assert_eq!(format!("{a}b"), *b);
    }
    first.verify().unwrap();
}

#[test]
fn two_drivers_racing_for_a_free_lease_get_it_once() {
    let url = tutti_testkit::postgres::schema_url("race");
    PgStore::open(&url).unwrap().create_run(&"r".to_string(), &[created(1)]).unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut s = PgStore::open(&url).unwrap();
                let me = LeaseHolder { id: format!("d{t}"), host: "h".into(), pid: t };
                barrier.wait();
                s.acquire_lease(&"r".to_string(), &me, 1000, 10_000, &|_| false).unwrap() == LeaseOutcome::Acquired
            })
        })
        .collect();
    let won = threads.into_iter().filter(|_| true).map(|t| t.join().unwrap()).filter(|w| *w).count();
    assert_eq!(won, 1, "exactly one driver holds the run");
}

#[test]
fn a_schema_from_a_newer_tutti_is_refused() {
    let url = tutti_testkit::postgres::schema_url("newer");
    let store = PgStore::open(&url).unwrap();
    store.client.borrow_mut().execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'", &[]).unwrap();
    let err = PgStore::open(&url).unwrap_err();
    assert!(matches!(err, Error::SchemaTooNew { found: 99, .. }), "{err:?}");
}

#[test]
fn foreign_tables_are_left_alone() {
    let url = tutti_testkit::postgres::schema_url("foreign");
    let store = PgStore::open(&url).unwrap();
    store.client.borrow_mut().batch_execute("DROP TABLE meta").unwrap();
    let err = PgStore::open(&url).unwrap_err();
    assert!(matches!(&err, Error::Corrupt { detail, .. } if detail.contains("not tutti's")), "{err:?}");
}

#[test]
fn bad_urls_and_unreachable_servers_are_named_without_their_password() {
    let err = PgStore::open("postgres://ann:secret@127.0.0.1:1/db?nonsense=1").unwrap_err();
    assert!(matches!(&err, Error::BadUrl { url, .. } if !url.contains("secret") && url.contains("ann:***")), "{err:?}");
    let err = PgStore::open("postgres://ann:secret@127.0.0.1:1/db?connect_timeout=2").unwrap_err();
    assert!(matches!(&err, Error::Connect { url, .. } if !url.contains("secret")), "{err:?}");
}
