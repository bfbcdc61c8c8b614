//! The SQLite journal backend, the embedded default: schema creation and open-time checks, and each method of
//! the four parts of [`Store`](crate::Store) as SQL. It commits what it is given; batching several callers into
//! one commit is the writer's job (`writer.rs`).

use std::path::Path;
use std::time::Duration;

use rusqlite::{CachedStatement, Connection, OptionalExtension, TransactionBehavior, params};

use crate::blob::{blob_hash, encode_event};
use crate::event::{Event, NewEvent, Record, RunId, RunStatus, SCHEMA_VERSION, Seq};
use crate::store::{
    Blobs, Command, CommandQueue, Error, EventLog, LeaseHolder, LeaseOutcome, Leases, Result, RunSummary,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    process TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    events INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_ms, id);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    v INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs (hash TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    run_id TEXT PRIMARY KEY,
    holder_id TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    body TEXT NOT NULL,
    taken INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS commands_untaken ON commands (run_id, id) WHERE taken = 0;
";

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A journal in one SQLite database (WAL mode, `synchronous=FULL`), holding every run of a project.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    /// Shown in errors.
    path: String,
}

impl SqliteStore {
    /// Opens (creating if needed) the journal at `path` and its parent directories. A file that is not a
    /// SQLite database, or a damaged one, gives [`Error::Corrupt`].
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| Error::CreateDir { path: dir.display().to_string(), source })?;
        }
        lost_log(path)?;
        let conn = Connection::open(path).map_err(|source| Error::Open { path: shown.clone(), source })?;
        Self::init(conn, shown)
    }

    /// A private, empty journal in memory, for tests.
    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(|source| Error::Open { path: ":memory:".into(), source })?;
        Self::init(conn, ":memory:".into())
    }

    /// Check the journal like [`EventLog::verify`], unless it is sealed: its main file is exactly as a tutti
    /// process left it when it last emptied the log at a clean end, and no log holds anything since. A
    /// journal checked once is then not read whole again by every command; a file changed by anything else
    /// (its size, time or inode differ), a crash (a log left behind) or a missing seal means a full check.
    pub fn verify_unless_sealed(&self) -> Result<()> {
        if seal::holds(Path::new(&self.path)) {
            return Ok(());
        }
        self.verify()
    }

    /// Run `f`'s commits with `synchronous = NORMAL` (written to the log, not fsynced), then restore `FULL`,
    /// also when `f` fails.
    fn unsynced<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.conn.prepare_cached("PRAGMA synchronous = NORMAL")?.execute([])?;
        let result = f(self);
        let restored = self.conn.prepare_cached("PRAGMA synchronous = FULL").and_then(|mut s| s.execute([]));
        let value = result?;
        restored?;
        Ok(value)
    }

    /// Where the journal lives, as shown in errors.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn init(conn: Connection, path: String) -> Result<Self> {
        let mut store = Self { conn, path };
        match store.configure().and_then(|()| store.migrate()) {
            Ok(()) => Ok(store),
            Err(Error::Sqlite(e)) if !is_corruption(&e) => Err(Error::Open { path: store.path, source: e }),
            Err(e) => Err(classify(&store.path, e)),
        }
    }

    fn configure(&self) -> Result<()> {
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        // Reading the journal mode touches the file header: a file that is not a database fails here.
        self.conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        self.conn.set_prepared_statement_cache_capacity(32);
        Ok(())
    }

    fn migrate(&mut self) -> Result<()> {
        match self.stored_version()? {
            Some(found) if found > SCHEMA_VERSION => Err(Error::SchemaTooNew { found, supported: SCHEMA_VERSION }),
            Some(_) => Ok(()),
            None => self.create_schema(),
        }
    }

    fn stored_version(&self) -> Result<Option<u32>> {
        if !self.has_table("meta")? {
            return Ok(None);
        }
        let value: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |row| row.get(0))
            .optional()?;
        let Some(value) = value else { return Ok(None) };
        value.parse().map(Some).map_err(|_| self.corrupt(format!("schema_version is {value:?}")))
    }

    fn create_schema(&mut self) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let tables: i64 = tx.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT IN (
                'meta', 'runs', 'events', 'blobs', 'leases', 'commands', 'sqlite_sequence')",
            [],
            |row| row.get(0),
        )?;
        if tables > 0 {
            return Err(corrupt(&self.path, "it holds tables that are not tutti's".into()));
        }
        tx.execute_batch(SCHEMA)?;
        tx.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?1)",
            [SCHEMA_VERSION.to_string()],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn has_table(&self, name: &str) -> Result<bool> {
        let found = self
            .conn
            .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", [name], |_| Ok(()))
            .optional()?;
        Ok(found.is_some())
    }

    fn corrupt(&self, detail: String) -> Error {
        corrupt(&self.path, detail)
    }

    fn checked<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|e| classify(&self.path, e))
    }

    /// Run `f` in a write transaction and commit it; roll back if either fails. `BEGIN` and `COMMIT` are
    /// cached statements: this is every commit's path, and parsing them each time showed in profiles.
    fn write<T>(&mut self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = &self.conn;
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let result = f(conn).and_then(|value| {
            conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(value)
        });
        if result.is_err() && !conn.is_autocommit() {
            // Best effort: a rollback that fails leaves the transaction to end with the connection.
            let _ = conn.execute_batch("ROLLBACK");
        }
        result
    }

    fn create_run_in(conn: &Connection, run: &RunId, events: &[NewEvent]) -> Result<()> {
        let Some(NewEvent { ts_ms, event: Event::RunCreated { process, .. } }) = events.first() else {
            return Err(Error::MissingRunCreated(run.clone()));
        };
        if run_exists(conn, run)? {
            return Err(Error::RunExists(run.clone()));
        }
        conn.prepare_cached(
            "INSERT INTO runs (id, process, created_ms, updated_ms, status, events)
             VALUES (?1, ?2, ?3, ?3, 'running', 0)",
        )?
        .execute(params![run, process, ts_ms])?;
        EventWriter::new(conn)?.write(run, events)?;
        Ok(())
    }

    /// Events of `run` after `after`, at most `limit` of them (all when `None`).
    fn read_in(&self, run: &RunId, after: Seq, limit: Option<usize>) -> Result<Vec<Record>> {
        if !run_exists(&self.conn, run)? {
            return Err(Error::UnknownRun(run.clone()));
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, ts_ms, body FROM events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        // SQLite reads a negative LIMIT as none.
        let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let mut rows = stmt.query(params![run, to_sql_seq(after), limit])?;
        let mut raw = Vec::new();
        while let Some(row) = rows.next()? {
            let seq = row.get::<_, i64>(0)? as Seq;
            let body = row
                .get_ref(2)?
                .as_str()
                .map_err(|e| self.corrupt(format!("event {seq} of run {run} is not text: {e}")))?;
            raw.push((seq, row.get::<_, i64>(1)?, body.to_owned()));
        }
        decode_all(run, raw).map_err(|e| match e {
            Error::Decode { run, seq, source } => {
                self.corrupt(format!("event {seq} of run {run} cannot be decoded: {source}"))
            }
            other => other,
        })
    }

    fn summaries(&self, filter: Option<&RunId>) -> Result<Vec<RunSummary>> {
        let sql = match filter {
            Some(_) => "SELECT id, process, created_ms, updated_ms, status, events FROM runs WHERE id = ?1",
            None => "SELECT id, process, created_ms, updated_ms, status, events FROM runs ORDER BY created_ms, id",
        };
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = match filter {
            Some(run) => stmt.query([run])?,
            None => stmt.query([])?,
        };
        rows.and_then(|row| self.summary(row)).collect()
    }

    fn summary(&self, row: &rusqlite::Row<'_>) -> Result<RunSummary> {
        let status: String = row.get(4)?;
        let status = RunStatus::parse(&status).ok_or_else(|| self.corrupt(format!("run status {status:?}")))?;
        Ok(RunSummary {
            id: row.get(0)?,
            process: row.get(1)?,
            created_ms: row.get(2)?,
            updated_ms: row.get(3)?,
            status,
            events: row.get::<_, i64>(5)? as u64,
        })
    }

    fn acquire_in(
        conn: &Connection,
        run: &RunId,
        me: &LeaseHolder,
        (now_ms, ttl_ms): (i64, i64),
        is_stale: &dyn Fn(&LeaseHolder) -> bool,
    ) -> Result<LeaseOutcome> {
        if let Some((holder, expires_ms)) = lease_row(conn, run)? {
            let free = holder.id == me.id || expires_ms <= now_ms || is_stale(&holder);
            if !free {
                return Ok(LeaseOutcome::Busy { holder, expires_ms });
            }
        }
        conn.prepare_cached(
            "INSERT OR REPLACE INTO leases (run_id, holder_id, host, pid, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![run, me.id, me.host, me.pid, now_ms.saturating_add(ttl_ms)])?;
        Ok(LeaseOutcome::Acquired)
    }

    fn take_in(conn: &Connection, run: &RunId) -> Result<Vec<Command>> {
        let commands = Self::untaken(conn, run)?;
        conn.prepare_cached("UPDATE commands SET taken = 1 WHERE run_id = ?1 AND taken = 0")?.execute([run])?;
        Ok(commands)
    }

    fn untaken(conn: &Connection, run: &RunId) -> Result<Vec<Command>> {
        let mut stmt =
            conn.prepare_cached("SELECT id, body FROM commands WHERE run_id = ?1 AND taken = 0 ORDER BY id")?;
        let rows = stmt.query_map([run], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)))?;
        let mut commands = Vec::new();
        for row in rows {
            let (id, body) = row?;
            let command =
                serde_json::from_str(&body).map_err(|source| Error::DecodeCommand { run: run.clone(), id, source })?;
            commands.push(command);
        }
        Ok(commands)
    }
}

impl EventLog for SqliteStore {
    fn create_run(&mut self, run: &RunId, events: &[NewEvent]) -> Result<()> {
        let result = self.write(|conn| Self::create_run_in(conn, run, events));
        self.checked(result)
    }

    fn create_run_holding(
        &mut self,
        run: &RunId,
        events: &[NewEvent],
        holder: &LeaseHolder,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool> {
        let result = self.write(|conn| {
            Self::create_run_in(conn, run, events)?;
            // A new run has no lease yet, so nobody else can hold it.
            Self::acquire_in(conn, run, holder, (now_ms, ttl_ms), &|_| false)
        });
        self.checked(result).map(|outcome| outcome == LeaseOutcome::Acquired)
    }

    fn append(&mut self, batches: &[(RunId, Vec<NewEvent>)]) -> Result<Vec<Seq>> {
        let result = self.write(|conn| {
            let mut writer = EventWriter::new(conn)?;
            batches.iter().map(|(run, events)| writer.write(run, events)).collect()
        });
        self.checked(result)
    }

    /// The log is written but not fsynced (`synchronous = NORMAL` for this one transaction): the OS holds it
    /// for readers and survives tutti's death, and the next synced commit's fsync of the log covers it.
    fn append_unsynced(&mut self, batches: &[(RunId, Vec<NewEvent>)]) -> Result<Vec<Seq>> {
        self.unsynced(|store| store.append(batches))
    }

    fn read(&self, run: &RunId, after: Seq) -> Result<Vec<Record>> {
        self.checked(self.read_in(run, after, None))
    }

    fn first_event(&self, run: &RunId) -> Result<Option<Record>> {
        self.checked(self.read_in(run, 0, Some(1)).map(|mut first| first.pop()))
    }

    fn runs(&self) -> Result<Vec<RunSummary>> {
        self.checked(self.summaries(None))
    }

    fn run(&self, run: &RunId) -> Result<Option<RunSummary>> {
        self.checked(self.summaries(Some(run)).map(|mut found| found.pop()))
    }

    fn verify(&self) -> Result<()> {
        let result = self.verify_in();
        self.checked(result)
    }

    /// A checkpoint that empties the log (`truncate`) also seals the journal (see [`SqliteStore::verify_unless_sealed`]):
    /// the main file now holds everything, as this process wrote it.
    fn checkpoint(&mut self, truncate: bool) -> Result<()> {
        let mode = if truncate { "TRUNCATE" } else { "PASSIVE" };
        // The result row says whether readers kept some frames in the log (busy = 1, or frames left over);
        // the next checkpoint moves them.
        let result = self.conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
        });
        let (busy, frames) = self.checked(result.map_err(Error::from))?;
        if truncate && busy == 0 && frames == 0 {
            seal::write(Path::new(&self.path));
        }
        Ok(())
    }

    /// A passive checkpoint: it waits for nobody, and syncs the log before it moves frames. When readers
    /// keep some frames in the log (or the checkpoint fails), the log is fsynced here instead.
    fn persist(&mut self) -> Result<()> {
        let result = self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        // In WAL mode the row is (busy, frames in the log, frames moved); every frame moved means the
        // checkpoint synced the log first (this one or an earlier one). Not in WAL mode (in memory): -1, -1.
        let moved_all = matches!(result, Ok((0, log, moved)) if log == moved);
        if !moved_all {
            let synced = sync_log(Path::new(&self.path));
            self.checked(synced)?;
        }
        self.checked(result.map_err(Error::from)).map(|_| ())
    }
}

/// Fsyncs the write-ahead log of the journal at `db`, if there is one.
fn sync_log(db: &Path) -> Result<()> {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    let log = std::path::PathBuf::from(name);
    let failed = |source| Error::Sync { path: log.display().to_string(), source };
    match std::fs::File::open(&log) {
        Ok(file) => file.sync_data().map_err(failed),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(failed(e)),
    }
}

impl Blobs for SqliteStore {
    fn put_blob(&mut self, bytes: &[u8]) -> Result<String> {
        let hash = blob_hash(bytes);
        let result = insert_blob(&self.conn, &hash, bytes);
        self.checked(result).map(|()| hash)
    }

    fn get_blob(&self, hash: &str) -> Result<Vec<u8>> {
        let result = (|| {
            let mut stmt = self.conn.prepare_cached("SELECT data FROM blobs WHERE hash = ?1")?;
            let data: Option<Vec<u8>> = stmt.query_row([hash], |row| row.get(0)).optional()?;
            let data = data.ok_or_else(|| Error::MissingBlob(hash.to_owned()))?;
            if blob_hash(&data) != hash {
                return Err(self.corrupt(format!("blob {hash} does not match its content")));
            }
            Ok(data)
        })();
        self.checked(result)
    }
}

impl Leases for SqliteStore {
    fn acquire_lease(
        &mut self,
        run: &RunId,
        me: &LeaseHolder,
        now_ms: i64,
        ttl_ms: i64,
        is_stale: &dyn Fn(&LeaseHolder) -> bool,
    ) -> Result<LeaseOutcome> {
        let result = self.write(|conn| Self::acquire_in(conn, run, me, (now_ms, ttl_ms), is_stale));
        self.checked(result)
    }

    /// Not fsynced: a renewal lost with the machine only lets the lease expire sooner, and its holder died
    /// with the machine anyway.
    fn renew_lease(&mut self, run: &RunId, me: &LeaseHolder, now_ms: i64, ttl_ms: i64) -> Result<bool> {
        let result = self.unsynced(|store| {
            let mut stmt =
                store.conn.prepare_cached("UPDATE leases SET expires_ms = ?3 WHERE run_id = ?1 AND holder_id = ?2")?;
            Ok(stmt.execute(params![run, me.id, now_ms.saturating_add(ttl_ms)])? == 1)
        });
        self.checked(result)
    }

    /// Not fsynced: a release lost with the machine leaves a lease that expires by itself, held by a process
    /// that is gone.
    fn release_lease(&mut self, run: &RunId, me: &LeaseHolder) -> Result<()> {
        let result = self.unsynced(|store| {
            let mut stmt = store.conn.prepare_cached("DELETE FROM leases WHERE run_id = ?1 AND holder_id = ?2")?;
            stmt.execute(params![run, me.id])?;
            Ok(())
        });
        self.checked(result)
    }

    fn lease(&self, run: &RunId, now_ms: i64) -> Result<Option<LeaseHolder>> {
        let result = lease_row(&self.conn, run)
            .map(|row| row.filter(|(_, expires_ms)| *expires_ms > now_ms).map(|(holder, _)| holder));
        self.checked(result)
    }
}

impl CommandQueue for SqliteStore {
    fn post_command(&mut self, run: &RunId, command: &Command) -> Result<()> {
        let body = serde_json::to_string(command).map_err(Error::Encode)?;
        let result = self.write(|conn| {
            if !run_exists(conn, run)? {
                return Err(Error::UnknownRun(run.clone()));
            }
            conn.prepare_cached("INSERT INTO commands (run_id, body) VALUES (?1, ?2)")?.execute([run, &body])?;
            Ok(())
        });
        self.checked(result)
    }

    fn queued_commands(&self, run: &RunId) -> Result<Vec<Command>> {
        let result = Self::untaken(&self.conn, run);
        self.checked(result)
    }

    /// A read first: a driver asks after every step, and there is rarely anything; a write transaction
    /// (its locks and its commit) only when there is.
    fn take_commands(&mut self, run: &RunId) -> Result<Vec<Command>> {
        let any = self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM commands WHERE run_id = ?1 AND taken = 0)")
            .and_then(|mut stmt| stmt.query_row([run], |row| row.get::<_, bool>(0)));
        if !self.checked(any.map_err(Error::from))? {
            return Ok(Vec::new());
        }
        let result = self.write(|conn| Self::take_in(conn, run));
        self.checked(result)
    }
}

/// Refuses a journal whose write-ahead log was deleted while its index (`-shm`) remains: SQLite would open
/// the main file as if nothing had been committed since the last checkpoint, silently losing those events
/// (and a resume would start again work whose end was journaled). A clean close removes both files, and a
/// checkpoint empties the log without deleting it, so this state means the log was lost. Looked at a few
/// times, since another process may be closing the journal at this very moment.
fn lost_log(path: &Path) -> Result<()> {
    let with_suffix = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    let (wal, shm) = (with_suffix("-wal"), with_suffix("-shm"));
    for attempt in 0..3 {
        if wal.exists() || !shm.exists() || !path.exists() {
            return Ok(());
        }
        if attempt < 2 {
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    Err(corrupt(
        &path.display().to_string(),
        format!(
            "its write-ahead log {} is missing while {} remains, so events committed since the last checkpoint \
             are lost. Put the log file back if you have it; to accept the loss, delete {}",
            wal.display(),
            shm.display(),
            shm.display()
        ),
    ))
}

/// Writes events inside a caller's transaction, keeping each run's row (last seq, status, update time) in
/// step. Statements are prepared once per transaction: this is the hot path.
struct EventWriter<'c> {
    conn: &'c Connection,
    insert: CachedStatement<'c>,
    last_seq: CachedStatement<'c>,
    update_run: CachedStatement<'c>,
}

impl<'c> EventWriter<'c> {
    fn new(conn: &'c Connection) -> Result<Self> {
        Ok(Self {
            conn,
            insert: conn.prepare_cached(
                "INSERT INTO events (run_id, seq, ts_ms, kind, v, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?,
            last_seq: conn.prepare_cached("SELECT events FROM runs WHERE id = ?1")?,
            update_run: conn.prepare_cached(
                "UPDATE runs SET events = ?2, updated_ms = max(updated_ms, ?3), status = coalesce(?4, status)
                 WHERE id = ?1",
            )?,
        })
    }

    /// Appends `events` to `run`; returns the run's new last seq.
    fn write(&mut self, run: &RunId, events: &[NewEvent]) -> Result<Seq> {
        let last: Option<i64> = self.last_seq.query_row([run], |row| row.get(0)).optional()?;
        let mut seq = last.ok_or_else(|| Error::UnknownRun(run.clone()))? as Seq;
        let Some(updated_ms) = events.iter().map(|e| e.ts_ms).max() else { return Ok(seq) };
        let conn = self.conn;
        let mut put = |hash: &str, bytes: &[u8]| insert_blob(conn, hash, bytes);
        let mut status = None;
        for NewEvent { ts_ms, event } in events {
            seq += 1;
            let body = encode_event(event, &mut put)?;
            self.insert.execute(params![run, to_sql_seq(seq), ts_ms, event.kind(), SCHEMA_VERSION, body])?;
            status = event.terminal_status().or(status);
        }
        let status = status.map(RunStatus::as_str);
        self.update_run.execute(params![run, to_sql_seq(seq), updated_ms, status])?;
        Ok(seq)
    }
}

fn insert_blob(conn: &Connection, hash: &str, bytes: &[u8]) -> Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO blobs (hash, data) VALUES (?1, ?2)")?.execute(params![hash, bytes])?;
    Ok(())
}

fn run_exists(conn: &Connection, run: &RunId) -> Result<bool> {
    let found = conn.prepare_cached("SELECT 1 FROM runs WHERE id = ?1")?.query_row([run], |_| Ok(())).optional()?;
    Ok(found.is_some())
}

fn lease_row(conn: &Connection, run: &RunId) -> Result<Option<(LeaseHolder, i64)>> {
    let mut stmt = conn.prepare_cached("SELECT holder_id, host, pid, expires_ms FROM leases WHERE run_id = ?1")?;
    let row = stmt
        .query_row([run], |row| {
            let holder = LeaseHolder { id: row.get(0)?, host: row.get(1)?, pid: row.get(2)? };
            Ok((holder, row.get(3)?))
        })
        .optional()?;
    Ok(row)
}

/// SQLite integers are signed; sequence numbers never come near `i64::MAX`.
fn to_sql_seq(seq: Seq) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

mod damage;
mod seal;
use damage::{classify, corrupt, is_corruption};

#[cfg(test)]
mod tests;

/// Decode event bodies; a long journal (a resume) is decoded on every core, since nothing else runs yet.
pub(crate) fn decode_all(run: &RunId, raw: Vec<(Seq, i64, String)>) -> Result<Vec<Record>> {
    const PARALLEL_FROM: usize = 8192;
    let decode = |chunk: &[(Seq, i64, String)]| -> Result<Vec<Record>> {
        chunk
            .iter()
            .map(|(seq, ts_ms, body)| {
                let event = serde_json::from_str(body).map_err(|source| Error::Decode {
                    run: run.clone(),
                    seq: *seq,
                    source,
                })?;
                Ok(Record { seq: *seq, ts_ms: *ts_ms, event })
            })
            .collect()
    };
    if raw.len() < PARALLEL_FROM {
        return decode(&raw);
    }
    // Asked only for a long journal: finding the cores reads cgroup files, which costs more than decoding a
    // short run's events.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    if threads < 2 {
        return decode(&raw);
    }
    let chunk = raw.len().div_ceil(threads);
    let parts: Vec<Result<Vec<Record>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = raw.chunks(chunk).map(|c| scope.spawn(move || decode(c))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    let mut records = Vec::with_capacity(raw.len());
    for part in parts {
        records.extend(part?);
    }
    Ok(records)
}
