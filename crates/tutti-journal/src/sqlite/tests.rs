//! Tests of the SQLite backend: the conformance suite, part by part on real files and whole in memory, and
//! what happens to damaged files.

use std::fs;
use std::path::Path;

use serde_json::json;

use super::*;
use crate::conformance::{self, Check};
use crate::event::Payload;

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

/// A journal with a few runs and enough events to span many pages.
fn write_sample(path: &Path) {
    let mut store = SqliteStore::open(path).unwrap();
    for r in 0..4 {
        let run = format!("run-{r}");
        store.create_run(&run, &[created(r)]).unwrap();
        let events = (0..500).map(|i| log(i, format!("event {i} of run {r}, padded {}", "-".repeat(100)))).collect();
        store.append(&[(run, events)]).unwrap();
    }
}

/// Runs one part of the conformance suite, each check on a fresh journal in a file of its own.
fn conformance_on_temp_files(part: &str, checks: &[(&str, Check)]) {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::cell::Cell::new(0);
    conformance::run_checks(part, checks, &|| {
        counter.set(counter.get() + 1);
        let path = dir.path().join(format!("journal-{}.db", counter.get()));
        Box::new(SqliteStore::open(&path).unwrap())
    });
}

#[test]
fn conformance_event_log_on_temp_files() {
    conformance_on_temp_files("event_log", conformance::EVENT_LOG_CHECKS);
}

#[test]
fn conformance_blobs_on_temp_files() {
    conformance_on_temp_files("blobs", conformance::BLOB_CHECKS);
}

#[test]
fn conformance_leases_on_temp_files() {
    conformance_on_temp_files("leases", conformance::LEASE_CHECKS);
}

#[test]
fn conformance_commands_on_temp_files() {
    conformance_on_temp_files("commands", conformance::COMMAND_CHECKS);
}

#[test]
fn conformance_in_memory() {
    conformance::run_all(&|| Box::new(SqliteStore::open_in_memory().unwrap()));
}

#[test]
fn open_creates_parent_directories_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/.tutti/tutti.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store.create_run(&"r".to_owned(), &[created(1)]).unwrap();
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.read(&"r".to_owned(), 0).unwrap().len(), 1);
    let mode: String = store.conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn garbage_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tutti.db");
    fs::write(&path, b"this is not a database, just some text that is long enough to matter".repeat(100)).unwrap();
    let err = SqliteStore::open(&path).expect_err("a garbage file must not open");
    assert!(matches!(&err, Error::Corrupt { path: p, .. } if p.ends_with("tutti.db")), "got {err:?}");
}

#[test]
fn truncated_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tutti.db");
    write_sample(&path);
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
    let err = SqliteStore::open(&path).expect_err("a truncated journal must not open");
    assert!(matches!(err, Error::Corrupt { .. }), "got {err:?}");
}

#[test]
fn damaged_page_is_reported_as_corrupt_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tutti.db");
    write_sample(&path);
    let mut bytes = fs::read(&path).unwrap();
    let page = 4096;
    // Scribble over every page but the first (the header and schema), leaving the size intact.
    for b in &mut bytes[page..] {
        *b = 0xA5;
    }
    fs::write(&path, &bytes).unwrap();
    let result = SqliteStore::open(&path).and_then(|store| store.read(&"run-0".to_owned(), 0));
    let err = result.expect_err("a scribbled journal must not read");
    assert!(matches!(err, Error::Corrupt { .. }), "got {err:?}");
}

#[test]
fn another_applications_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    Connection::open(&path).unwrap().execute_batch("CREATE TABLE contacts (name TEXT)").unwrap();
    let err = SqliteStore::open(&path).expect_err("a foreign database must not open");
    assert!(matches!(err, Error::Corrupt { .. }), "got {err:?}");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tutti.db");
    drop(SqliteStore::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE meta SET value = ?1 WHERE key = 'schema_version'", [(SCHEMA_VERSION + 1).to_string()])
        .unwrap();
    let err = SqliteStore::open(&path).expect_err("a newer schema must not open");
    assert!(
        matches!(err, Error::SchemaTooNew { found, supported } if found == SCHEMA_VERSION + 1
            && supported == SCHEMA_VERSION),
        "got {err:?}"
    );
}

#[test]
fn a_cell_that_is_not_utf8_is_damage() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    store.create_run(&"r".to_owned(), &[created(1)]).unwrap();
    store.conn.execute("UPDATE runs SET status = CAST(x'ff' AS TEXT), process = CAST(x'c3' AS TEXT)", []).unwrap();
    for err in [store.runs().map(drop).unwrap_err(), store.run(&"r".to_owned()).map(drop).unwrap_err()] {
        assert!(matches!(&err, Error::Corrupt { .. }), "got {err:?}");
    }
}

#[test]
fn undecodable_body_names_its_event() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    store.create_run(&"r".to_owned(), &[created(1), log(2, "fine".into())]).unwrap();
    store.conn.execute("UPDATE events SET body = '{\"type\":\"from_the_future\"}' WHERE seq = 2", []).unwrap();
    let err = store.read(&"r".to_owned(), 0).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { detail, .. } if detail.starts_with("event 2 of run r cannot be decoded")),
        "got {err:?}"
    );
}

#[test]
fn verify_finds_damage_that_reads_would_stumble_on_later() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    store.create_run(&"r".to_owned(), &[created(1), log(2, "fine".into()), log(3, "also fine".into())]).unwrap();
    store.verify().unwrap();
    let damage = [
        ("UPDATE events SET body = '{\"type\":\"log' WHERE seq = 2", "event 2 of run r is not valid JSON"),
        ("DELETE FROM events WHERE seq = 2", "run r records 3 events but 2 are stored"),
        ("UPDATE runs SET events = 2", "run r records 2 events but 3 are stored, the last numbered 3"),
        ("DELETE FROM runs", "events of run r are stored, but the run is not"),
        ("UPDATE events SET ts_ms = 96669080179199 WHERE seq = 2", "run r: the time of event 2 cannot be right"),
        ("UPDATE events SET ts_ms = -96669080179199 WHERE seq = 2", "run r: the time of event 2 cannot be right"),
        ("UPDATE events SET ts_ms = 'noon' WHERE seq = 2", "run r: the time of event 2 cannot be right"),
        ("UPDATE runs SET updated_ms = 96669080179199", "run r: its times cannot be right"),
    ];
    for (sql, expected) in damage {
        let mut copy = SqliteStore::open_in_memory().unwrap();
        copy.create_run(&"r".to_owned(), &[created(1), log(2, "fine".into()), log(3, "also fine".into())]).unwrap();
        copy.conn.execute(sql, []).unwrap();
        let err = copy.verify().unwrap_err();
        assert!(matches!(&err, Error::Corrupt { detail, .. } if detail.starts_with(expected)), "{sql}: got {err:?}");
    }
}

#[test]
fn a_deleted_log_with_its_index_left_behind_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tutti.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store.create_run(&"r".to_owned(), &[created(1)]).unwrap();
    // A crash leaves both files; losing the log then loses what it held.
    std::fs::remove_file(dir.path().join("tutti.db-wal")).unwrap();
    assert!(dir.path().join("tutti.db-shm").exists());
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(&err, Error::Corrupt { detail, .. } if detail.contains("tutti.db-wal is missing")), "{err:?}");
    drop(store);
}

/// A journal on disk in `dir` holding run `r`, created with `events`.
fn journal_on_disk(dir: &tempfile::TempDir, events: &[NewEvent]) -> (std::path::PathBuf, SqliteStore) {
    let path = dir.path().join("tutti.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store.create_run(&"r".to_owned(), events).unwrap();
    (path, store)
}

/// How many events of run `r` a copy of the main file alone holds (its log left behind).
fn events_in_a_copy_of_the_main_file(dir: &tempfile::TempDir, path: &Path) -> usize {
    let copy = dir.path().join("copy.db");
    std::fs::copy(path, &copy).unwrap();
    SqliteStore::open(&copy).unwrap().read(&"r".to_owned(), 0).unwrap().len()
}

#[test]
fn a_truncating_checkpoint_leaves_the_whole_journal_in_the_main_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut store) = journal_on_disk(&dir, &[created(1), log(2, "kept".into())]);
    assert!(std::fs::metadata(dir.path().join("tutti.db-wal")).unwrap().len() > 0);
    store.checkpoint(true).unwrap();
    assert_eq!(std::fs::metadata(dir.path().join("tutti.db-wal")).unwrap().len(), 0);
    assert_eq!(events_in_a_copy_of_the_main_file(&dir, &path), 2);
    drop(store);
}

#[test]
fn persist_moves_an_unsynced_commit_into_the_main_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut store) = journal_on_disk(&dir, &[created(1)]);
    store.append_unsynced(&[("r".to_owned(), vec![log(2, "the end".into())])]).unwrap();
    store.persist().unwrap();
    assert_eq!(events_in_a_copy_of_the_main_file(&dir, &path), 2);
    drop(store);
}

/// The checkpoint cannot move what a reader still sees, so `persist` falls back to fsyncing the log; that
/// fsync is not observable here, only that `persist` succeeds on that path.
#[test]
fn persist_succeeds_when_a_reader_keeps_frames_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut store) = journal_on_disk(&dir, &[created(1)]);
    let reader = SqliteStore::open(&path).unwrap();
    reader.conn.execute_batch("BEGIN; SELECT count(*) FROM events;").unwrap();
    store.append_unsynced(&[("r".to_owned(), vec![log(2, "the end".into())])]).unwrap();
    store.persist().unwrap();
    let moved: (i64, i64, i64) =
        store.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
    assert!(moved.1 > moved.2, "the reader kept frames in the log: {moved:?}");
    reader.conn.execute_batch("COMMIT").unwrap();
}

#[test]
fn events_are_stored_with_kind_and_version() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    store.create_run(&"r".to_owned(), &[created(1)]).unwrap();
    let (kind, v): (String, u32) =
        store.conn.query_row("SELECT kind, v FROM events WHERE seq = 1", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((kind.as_str(), v), ("run_created", SCHEMA_VERSION));
}

#[test]
fn identical_blobs_are_stored_once() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    let big = Payload::Inline(json!("z".repeat(crate::INLINE_LIMIT * 2)));
    let done = |ts_ms| NewEvent { ts_ms, event: Event::RunCompleted { output: big.clone() } };
    store.create_run(&"a".to_owned(), &[created(1), done(2)]).unwrap();
    store.create_run(&"b".to_owned(), &[created(1), done(2)]).unwrap();
    let blobs: i64 = store.conn.query_row("SELECT count(*) FROM blobs", [], |r| r.get(0)).unwrap();
    assert_eq!(blobs, 1);
}

#[test]
fn an_unsynced_append_is_visible_at_once_and_leaves_commits_synced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tutti.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store.create_run(&"run-a".to_string(), &[created(0)]).unwrap();
    let synchronous = |s: &SqliteStore| s.conn.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(synchronous(&store), 2, "FULL by default");

    let seqs = store.append_unsynced(&[("run-a".to_string(), vec![log(1, "started".into())])]).unwrap();
    assert_eq!(seqs, vec![2]);
    assert_eq!(synchronous(&store), 2, "back to FULL for the next commit");
    let reader = SqliteStore::open(&path).unwrap();
    assert_eq!(reader.read(&"run-a".to_string(), 0).unwrap().len(), 2, "another connection sees it");

    assert!(store.append_unsynced(&[("run-b".to_string(), vec![log(2, "lost".into())])]).is_err());
    assert_eq!(synchronous(&store), 2, "a failed unsynced append also restores FULL");
}

#[test]
fn a_sealed_journal_is_not_checked_again_until_something_else_touches_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tutti.db");
    write_sample(&path);
    let seal = dir.path().join("tutti.db-sealed");
    assert!(!seal.exists(), "closing without emptying the log seals nothing");

    // Damage one event's JSON in place, keeping the file's size, inode and time: only a full check sees it.
    let damage = |path: &Path| {
        let file = fs::OpenOptions::new().write(true).open(path).unwrap();
        let modified = fs::metadata(path).unwrap().modified().unwrap();
        let bytes = fs::read(path).unwrap();
        let at = bytes.windows(9).position(|w| w == b"event 250").unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, b"\"", at as u64).unwrap();
        file.set_modified(modified).unwrap();
    };

    let mut store = SqliteStore::open(&path).unwrap();
    store.verify_unless_sealed().unwrap();
    store.checkpoint(true).unwrap();
    drop(store);
    assert!(seal.exists(), "a clean end that empties the log seals the journal");
    damage(&path);
    let store = SqliteStore::open(&path).unwrap();
    store.verify_unless_sealed().expect("the seal holds: the whole journal is not read");
    assert!(matches!(store.verify(), Err(Error::Corrupt { .. })), "a full check finds the damage");
    drop(store);

    // Any other change breaks the seal, and the next open checks everything.
    write_sample(&dir.path().join("other.db"));
    let mut store = SqliteStore::open(&dir.path().join("other.db")).unwrap();
    store.checkpoint(true).unwrap();
    drop(store);
    let other = dir.path().join("other.db");
    let bytes = fs::read(&other).unwrap();
    let at = bytes.windows(9).position(|w| w == b"event 250").unwrap();
    let mut damaged = bytes.clone();
    damaged[at] = b'"';
    fs::write(&other, damaged).unwrap();
    let store = SqliteStore::open(&other).unwrap();
    assert!(matches!(store.verify_unless_sealed(), Err(Error::Corrupt { .. })), "a rewritten file is checked");
}
