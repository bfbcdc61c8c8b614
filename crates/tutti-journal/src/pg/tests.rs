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

// ---- the work queue ----

use crate::work::{Offer, WorkQueue, WorkState, WorkerInfo};

fn queue(url: &str, listen: Listen<'_>) -> PgWorkQueue {
    PgWorkQueue::open(url, listen).unwrap_or_else(|e| panic!("open the work queue: {e:?}"))
}

fn offer(effect: &str, attempt: u32, session: Option<&str>) -> Offer {
    Offer {
        run: "r".into(),
        effect: effect.into(),
        attempt,
        harness: "shell".into(),
        job: json!({ "effect": effect }),
        session: session.map(String::from),
    }
}

fn worker(id: &str, now_ms: i64) -> WorkerInfo {
    WorkerInfo {
        id: id.into(),
        host: "h".into(),
        pid: 1,
        harnesses: vec!["shell".into()],
        capacity: 4,
        running: 0,
        heartbeat_ms: now_ms,
        draining: false,
    }
}

const SHELL: &[&str] = &["shell"];

fn harnesses() -> Vec<String> {
    SHELL.iter().map(|s| s.to_string()).collect()
}

#[test]
fn workers_claiming_together_get_each_offer_once() {
    let url = tutti_testkit::postgres::schema_url("claims");
    let mut driver = queue(&url, Listen::Run(&"r".to_string()));
    for i in 0..60 {
        driver.offer(&offer(&format!("root/{i}"), 1, None)).unwrap();
    }
    let threads: Vec<_> = (0..3)
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut q = queue(&url, Listen::Offers);
                let mut got = Vec::new();
                while let Some(c) = q.claim(&format!("w{w}"), &harnesses(), 1000, 10_000).unwrap() {
                    assert!(q.complete(c.id, c.token, &format!("w{w}"), &json!({"ok": 1}), None).unwrap());
                    got.push(c.id);
                }
                got
            })
        })
        .collect();
    let mut all: Vec<i64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort();
    let len = all.len();
    all.dedup();
    assert_eq!((len, all.len()), (60, 60), "each offer claimed exactly once");
}

#[test]
fn an_expired_claim_is_taken_over_and_the_stale_token_refused() {
    let url = tutti_testkit::postgres::schema_url("fencing");
    let mut driver = queue(&url, Listen::Run(&"r".to_string()));
    let id = driver.offer(&offer("root/0", 1, None)).unwrap();
    let (mut a, mut b) = (queue(&url, Listen::Offers), queue(&url, Listen::Offers));
    let first = a.claim("a", &harnesses(), 1000, 500).unwrap().expect("a claims");
    assert_eq!(first.previous, None);
    assert!(b.claim("b", &harnesses(), 1200, 500).unwrap().is_none(), "a's lease still holds");
    // A heartbeat keeps it.
    assert_eq!(a.heartbeat(&worker("a", 1400), &[(id, first.token)], 1400, 500).unwrap(), [true]);
    assert!(b.claim("b", &harnesses(), 1800, 500).unwrap().is_none(), "renewed until 1900");
    // Then a goes quiet; after its lease, b takes the attempt over.
    let second = b.claim("b", &harnesses(), 2000, 500).unwrap().expect("b re-claims");
    assert_eq!(second.previous.as_deref(), Some("a"), "a re-dispatch names the worker that lost it");
    assert!(second.token > first.token);
    assert_eq!(a.heartbeat(&worker("a", 2100), &[(id, first.token)], 2100, 500).unwrap(), [false], "a lost it");
    assert!(!a.complete(id, first.token, "a", &json!({"late": true}), None).unwrap(), "stale token refused");
    assert!(b.complete(id, second.token, "b", &json!({"ok": true}), None).unwrap());
    assert!(!b.complete(id, second.token, "b", &json!({"twice": true}), None).unwrap(), "completed once");
    let states = driver.work_states(&[id]).unwrap();
    let [(_, WorkState::Done { worker, claims, previous, outcome })] = states.as_slice() else { panic!("{states:?}") };
    assert_eq!((worker.as_str(), *claims, previous.as_deref()), ("b", 2, Some("a")));
    assert_eq!(*outcome, json!({"ok": true}));
}

#[test]
fn withdrawn_work_is_neither_claimed_nor_kept() {
    let url = tutti_testkit::postgres::schema_url("withdraw");
    let mut driver = queue(&url, Listen::Run(&"r".to_string()));
    let (queued, running) =
        (driver.offer(&offer("root/0", 1, None)).unwrap(), driver.offer(&offer("root/1", 1, None)).unwrap());
    let mut w = queue(&url, Listen::Offers);
    let c = w.claim("w", &harnesses(), 1000, 10_000).unwrap().expect("claim");
    assert_eq!(c.id, queued, "oldest first");
    driver.withdraw(queued).unwrap();
    assert_eq!(w.heartbeat(&worker("w", 1100), &[(c.id, c.token)], 1100, 10_000).unwrap(), [false]);
    assert!(!w.complete(c.id, c.token, "w", &json!(1), None).unwrap());
    driver.withdraw(running).unwrap();
    assert!(w.claim("w", &harnesses(), 1200, 10_000).unwrap().is_none());
    // A new attempt of an effect withdraws the earlier one.
    let first = driver.offer(&offer("root/2", 1, None)).unwrap();
    let again = driver.offer(&offer("root/2", 1, None)).unwrap();
    assert_eq!(first, again, "offering the same attempt twice is one offer");
    driver.offer(&offer("root/2", 2, None)).unwrap();
    assert_eq!(driver.work_states(&[first]).unwrap()[0].1, WorkState::Withdrawn);
}

#[test]
fn a_session_is_offered_to_the_worker_holding_it_while_it_lives() {
    let url = tutti_testkit::postgres::schema_url("affinity");
    let mut driver = queue(&url, Listen::Run(&"r".to_string()));
    let (mut a, mut b) = (queue(&url, Listen::Offers), queue(&url, Listen::Offers));
    a.heartbeat(&worker("a", 1000), &[], 1000, 5000).unwrap();
    b.heartbeat(&worker("b", 1000), &[], 1000, 5000).unwrap();
    driver.offer(&offer("g/m/0", 1, None)).unwrap();
    let turn = a.claim("a", &harnesses(), 1000, 5000).unwrap().expect("a claims round 1");
    assert!(a.complete(turn.id, turn.token, "a", &json!(1), Some("sess-1")).unwrap());
    driver.offer(&offer("g/m/1", 1, Some("sess-1"))).unwrap();
    assert!(b.claim("b", &harnesses(), 2000, 5000).unwrap().is_none(), "a holds the session and lives");
    let round2 = a.claim("a", &harnesses(), 2000, 5000).unwrap().expect("a claims round 2");
    assert_eq!(round2.session_holder, None);
    driver.offer(&offer("g/m/2", 1, Some("sess-1"))).unwrap();
    // a stops heartbeating: after its lease the session's turn goes elsewhere, saying where it lived.
    b.heartbeat(&worker("b", 9000), &[], 9000, 5000).unwrap();
    let round3 = b.claim("b", &harnesses(), 9000, 5000).unwrap().expect("b takes the turn of a gone worker");
    assert_eq!(round3.session_holder.as_deref(), Some("a"));
}

#[test]
fn workers_hear_offers_and_drivers_hear_claims_and_completions() {
    let url = tutti_testkit::postgres::schema_url("notify");
    let mut driver = queue(&url, Listen::Run(&"r".to_string()));
    let mut w = queue(&url, Listen::Offers);
    let short = std::time::Duration::from_millis(100);
    assert!(!w.wait_for_work(short).unwrap());
    driver.offer(&offer("root/0", 1, None)).unwrap();
    assert!(w.wait_for_work(std::time::Duration::from_secs(10)).unwrap(), "an offer wakes workers");
    let c = w.claim("w", &harnesses(), 1000, 10_000).unwrap().unwrap();
    assert!(driver.wait_for_work(std::time::Duration::from_secs(10)).unwrap(), "a claim wakes the driver");
    assert!(!driver.wait_for_work(short).unwrap());
    w.complete(c.id, c.token, "w", &json!(1), None).unwrap();
    assert!(driver.wait_for_work(std::time::Duration::from_secs(10)).unwrap(), "a completion wakes the driver");
    assert_eq!(w.workers().unwrap(), Vec::<WorkerInfo>::new(), "no heartbeat, no registration");
    w.heartbeat(&worker("w", 5), &[], 5, 10).unwrap();
    assert_eq!(w.workers().unwrap()[0].id, "w");
    w.unregister("w").unwrap();
    assert!(w.workers().unwrap().is_empty());
}
