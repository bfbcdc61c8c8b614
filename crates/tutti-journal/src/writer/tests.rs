//! Tests of the group-commit writer, on an in-memory store wrapped to count (and hold back) its commits.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Barrier};

use serde_json::{Value, json};

use super::*;
use crate::event::{Event, Payload, Record};
use crate::sqlite::SqliteStore;
use crate::store::{Blobs, Command, CommandQueue, EventLog, LeaseHolder, LeaseOutcome, Leases, RunSummary};

/// Delegates to SQLite, counting `append` calls. With a gate, the first `append` says it has started and
/// then waits for the test to let it go, so that the test can queue requests behind it.
struct Counting {
    inner: SqliteStore,
    appends: Arc<AtomicUsize>,
    gate: Option<(mpsc::Sender<()>, Receiver<()>)>,
}

impl EventLog for Counting {
    fn create_run(&mut self, run: &RunId, events: &[NewEvent]) -> Result<()> {
        self.inner.create_run(run, events)
    }
    fn append(&mut self, batches: &[(RunId, Vec<NewEvent>)]) -> Result<Vec<Seq>> {
        if let Some((entered, release)) = self.gate.take() {
            entered.send(()).unwrap();
            release.recv().unwrap();
        }
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.inner.append(batches)
    }
    fn read(&self, run: &RunId, after: Seq) -> Result<Vec<Record>> {
        self.inner.read(run, after)
    }
    fn runs(&self) -> Result<Vec<RunSummary>> {
        self.inner.runs()
    }
    fn run(&self, run: &RunId) -> Result<Option<RunSummary>> {
        self.inner.run(run)
    }
}

impl Blobs for Counting {
    fn put_blob(&mut self, bytes: &[u8]) -> Result<String> {
        self.inner.put_blob(bytes)
    }
    fn get_blob(&self, hash: &str) -> Result<Vec<u8>> {
        self.inner.get_blob(hash)
    }
}

impl Leases for Counting {
    fn acquire_lease(
        &mut self,
        run: &RunId,
        me: &LeaseHolder,
        now_ms: i64,
        ttl_ms: i64,
        is_stale: &dyn Fn(&LeaseHolder) -> bool,
    ) -> Result<LeaseOutcome> {
        self.inner.acquire_lease(run, me, now_ms, ttl_ms, is_stale)
    }
    fn renew_lease(&mut self, run: &RunId, me: &LeaseHolder, now_ms: i64, ttl_ms: i64) -> Result<bool> {
        self.inner.renew_lease(run, me, now_ms, ttl_ms)
    }
    fn release_lease(&mut self, run: &RunId, me: &LeaseHolder) -> Result<()> {
        self.inner.release_lease(run, me)
    }
    fn lease(&self, run: &RunId, now_ms: i64) -> Result<Option<LeaseHolder>> {
        self.inner.lease(run, now_ms)
    }
}

impl CommandQueue for Counting {
    fn post_command(&mut self, run: &RunId, command: &Command) -> Result<()> {
        self.inner.post_command(run, command)
    }
    fn queued_commands(&self, run: &RunId) -> Result<Vec<Command>> {
        self.inner.queued_commands(run)
    }

    fn take_commands(&mut self, run: &RunId) -> Result<Vec<Command>> {
        self.inner.take_commands(run)
    }
}

fn run_id(i: usize) -> RunId {
    format!("run-{i}")
}

fn log(message: String) -> NewEvent {
    NewEvent { ts_ms: 1, event: Event::Log { scope: "root".into(), message } }
}

/// An in-memory store holding `runs` runs, each with its `run_created` event.
fn store_with_runs(runs: usize) -> SqliteStore {
    let mut store = SqliteStore::open_in_memory().unwrap();
    for i in 0..runs {
        store.create_run(&run_id(i), &[NewEvent { ts_ms: 0, event: created_event() }]).unwrap();
    }
    store
}

fn created_event() -> Event {
    Event::RunCreated {
        process: "p.js".into(),
        inputs: Payload::null(),
        code_hash: "h".into(),
        modules: Vec::new(),
        options: Value::Null,
    }
}

fn counting(runs: usize) -> (Counting, Arc<AtomicUsize>) {
    let appends = Arc::new(AtomicUsize::new(0));
    (Counting { inner: store_with_runs(runs), appends: Arc::clone(&appends), gate: None }, appends)
}

#[test]
fn concurrent_appends_are_all_acknowledged() {
    const THREADS: usize = 8;
    const APPENDS: usize = 50;
    let (store, appends) = counting(THREADS);
    let handle = Writer::spawn(Box::new(store)).unwrap();
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (handle, start) = (handle.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                (0..APPENDS)
                    .map(|i| handle.append(run_id(t), vec![log(format!("{t}/{i}")), log("pad".into())]).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for thread in threads {
        let seqs = thread.join().unwrap();
        let expected: Vec<Seq> = (0..APPENDS as u64).map(|i| 1 + 2 * (i + 1)).collect();
        assert_eq!(seqs, expected, "each caller gets its own run's last seq");
    }
    let commits = handle.commits();
    assert_eq!(commits, appends.load(Ordering::SeqCst) as u64, "every store append is one commit");
    assert!(commits <= (THREADS * APPENDS) as u64);
    let store = handle.shutdown().expect("the last handle gets the store back");
    for t in 0..THREADS {
        assert_eq!(store.run(&run_id(t)).unwrap().unwrap().events, 1 + 2 * APPENDS as u64);
    }
}

#[test]
fn appends_queued_during_a_commit_share_the_next_one() {
    const QUEUED: usize = 10;
    let (mut store, appends) = counting(QUEUED + 1);
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    store.gate = Some((entered_tx, release_rx));
    let handle = Writer::spawn(Box::new(store)).unwrap();

    let first = handle.submit(run_id(0), vec![log("first".into())]).unwrap();
    entered.recv().unwrap(); // the writer is now inside its first commit
    let queued: Vec<Pending> =
        (1..=QUEUED).map(|i| handle.submit(run_id(i), vec![log(format!("queued {i}"))]).unwrap()).collect();
    release.send(()).unwrap();

    assert_eq!(first.wait().unwrap(), 2);
    for pending in queued {
        assert_eq!(pending.wait().unwrap(), 2);
    }
    assert_eq!(appends.load(Ordering::SeqCst), 2, "{QUEUED} queued appends share one commit");
    assert_eq!(handle.commits(), 2);
}

#[test]
fn a_bad_batch_fails_only_its_own_caller() {
    let (mut store, _) = counting(2);
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    store.gate = Some((entered_tx, release_rx));
    let handle = Writer::spawn(Box::new(store)).unwrap();

    let first = handle.submit(run_id(0), vec![log("first".into())]).unwrap();
    entered.recv().unwrap();
    let good = handle.submit(run_id(1), vec![log("good".into())]).unwrap();
    let bad = handle.submit("no-such-run".into(), vec![log("bad".into())]).unwrap();
    let also_good = handle.submit(run_id(1), vec![log("also good".into())]).unwrap();
    release.send(()).unwrap();

    assert_eq!(first.wait().unwrap(), 2);
    assert_eq!(good.wait().unwrap(), 2);
    let err = bad.wait().unwrap_err();
    assert!(matches!(&err, Error::UnknownRun(run) if run == "no-such-run"), "got {err:?}");
    assert_eq!(also_good.wait().unwrap(), 3);
}

#[test]
fn large_payloads_through_the_writer_become_blobs() {
    let (store, _) = counting(1);
    let handle = Writer::spawn(Box::new(store)).unwrap();
    let big = json!("q".repeat(crate::INLINE_LIMIT + 10));
    let done = NewEvent { ts_ms: 2, event: Event::RunCompleted { output: Payload::Inline(big.clone()) } };
    assert_eq!(handle.append(run_id(0), vec![done]).unwrap(), 2);
    let store = handle.shutdown().unwrap();
    let Event::RunCompleted { output } = store.read(&run_id(0), 1).unwrap().remove(0).event else {
        panic!("expected run_completed");
    };
    assert!(matches!(output, Payload::Blob { .. }));
    assert_eq!(store.load(&output).unwrap(), big);
}

#[test]
fn shutdown_by_a_clone_leaves_the_writer_running() {
    let (store, _) = counting(1);
    let handle = Writer::spawn(Box::new(store)).unwrap();
    let clone = handle.clone();
    assert!(clone.shutdown().is_none(), "another handle is still alive");
    assert_eq!(handle.append(run_id(0), vec![log("still here".into())]).unwrap(), 2);
    assert!(handle.shutdown().is_some());
}

#[test]
fn the_last_handle_leaves_the_journal_in_the_main_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tutti.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store.create_run(&run_id(0), &[NewEvent { ts_ms: 1, event: created_event() }]).unwrap();
    let handle = Writer::spawn(Box::new(store)).unwrap();
    handle.append(run_id(0), vec![log("journaled".into())]).unwrap();
    let wal = dir.path().join("tutti.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0, "commits go to the log first");
    let store = handle.shutdown().unwrap();
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
    drop(store);
}

#[test]
fn append_now_commits_on_the_callers_thread_after_the_commit_under_way() {
    let (mut store, appends) = counting(2);
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    store.gate = Some((entered_tx, release_rx));
    let handle = Writer::spawn(Box::new(store)).unwrap();

    let queued = handle.submit(run_id(0), vec![log("queued".into())]).unwrap();
    entered.recv().unwrap(); // the writer is now inside that commit
    let now = {
        let handle = handle.clone();
        std::thread::spawn(move || {
            handle.append_now(run_id(1), vec![log("now".into()), log("now".into())], Durability::Stable)
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(!now.is_finished(), "append_now waits for the commit under way");
    release.send(()).unwrap();
    assert_eq!(queued.wait().unwrap(), 2);
    assert_eq!(now.join().unwrap().unwrap(), 3);
    assert_eq!((appends.load(Ordering::SeqCst), handle.commits()), (2, 2));

    // An append_now of an unknown run fails alone, and the writer goes on.
    assert!(handle.append_now(run_id(9), vec![log("lost".into())], Durability::Process).is_err());
    assert_eq!(handle.append(run_id(0), vec![log("after".into())]).unwrap(), 3);
    let store = handle.shutdown().expect("the last handle gets the store back");
    assert_eq!(store.run(&run_id(1)).unwrap().unwrap().events, 3);
}
