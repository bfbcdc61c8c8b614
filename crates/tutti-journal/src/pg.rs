//! The PostgreSQL journal backend, for distributed mode: the SQLite backend's tables and semantics on a
//! server that many machines reach. Writers serialize per run on row locks (`SELECT … FOR UPDATE` of the
//! run's row) instead of SQLite's one database lock; commands posted to a run are announced with `NOTIFY`,
//! so a driver is told at once instead of polling ([`CommandListener`]). It commits what it is given;
//! batching is the writer's job, as with SQLite. The work queue of remote executors is `pg/work.rs`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, GenericClient, NoTls, Statement};

use crate::blob::{blob_hash, encode_event};
use crate::event::{Event, NewEvent, Record, RunId, RunStatus, SCHEMA_VERSION, Seq};
use crate::store::{
    Blobs, Command, CommandListener, CommandQueue, Error, EventLog, LeaseHolder, LeaseOutcome, Leases, Result,
    RunSummary,
};

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    process TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    events BIGINT NOT NULL
);
CREATE INDEX runs_by_created ON runs (created_ms, id);
CREATE TABLE events (
    run_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    ts_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    v INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE blobs (hash TEXT PRIMARY KEY, data BYTEA NOT NULL);
CREATE TABLE leases (
    run_id TEXT PRIMARY KEY,
    holder_id TEXT NOT NULL,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE TABLE commands (
    id BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL,
    body TEXT NOT NULL,
    taken BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX commands_untaken ON commands (run_id, id) WHERE NOT taken;
CREATE TABLE work (
    id BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL,
    effect TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    harness TEXT NOT NULL,
    job TEXT NOT NULL,
    session TEXT,
    state TEXT NOT NULL DEFAULT 'queued',
    worker TEXT,
    previous TEXT,
    token BIGINT NOT NULL DEFAULT 0,
    claims INTEGER NOT NULL DEFAULT 0,
    lease_until BIGINT NOT NULL DEFAULT 0,
    outcome TEXT,
    UNIQUE (run_id, effect, attempt)
);
CREATE INDEX work_open ON work (harness, id) WHERE state IN ('queued', 'claimed');
CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    harnesses TEXT[] NOT NULL,
    capacity INTEGER NOT NULL,
    running INTEGER NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    draining BOOLEAN NOT NULL
);
CREATE TABLE sessions (session TEXT PRIMARY KEY, worker TEXT NOT NULL);
";

/// The tables of the schema: a database (schema) holding some of them but no `meta` is not tutti's.
const TABLES: &[&str] = &["runs", "events", "blobs", "leases", "commands", "work", "workers", "sessions"];

/// Taken while a schema is created or migrated, so that processes starting together do it once.
const MIGRATION_LOCK: i64 = 0x7475_7474_6900;

/// A journal in a PostgreSQL database, holding every run of the teams that share it. Its tables live in the
/// first schema of the connection's search path (`?options=-csearch_path%3DNAME` in the URL picks one; tutti
/// creates it if missing).
pub struct PgStore {
    client: RefCell<Client>,
    statements: RefCell<HashMap<&'static str, Statement>>,
    config: postgres::Config,
    /// The URL without its password, shown in errors.
    shown: String,
    /// The schema holding the tables: notification channels are the database's, so their names carry it.
    schema: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.shown).finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the journal at `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?…]`) and creates its
    /// tables on first use.
    pub fn open(url: &str) -> Result<Self> {
        let shown = without_password(url);
        let config =
            postgres::Config::from_str(url).map_err(|e| Error::BadUrl { url: shown.clone(), detail: e.to_string() })?;
        let client = connect(&config, &shown)?;
        let mut store = Self {
            client: RefCell::new(client),
            statements: RefCell::new(HashMap::new()),
            config,
            shown,
            schema: String::new(),
        };
        store.migrate()?;
        store.schema = store.client.borrow_mut().query_one("SELECT current_schema()", &[])?.get(0);
        Ok(store)
    }

    /// Where the journal lives, as shown in errors (no password).
    pub fn url(&self) -> &str {
        &self.shown
    }

    fn migrate(&self) -> Result<()> {
        let mut client = self.client.borrow_mut();
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        ensure_schema(&mut tx)?;
        let has = |tx: &mut postgres::Transaction<'_>, table: &str| -> Result<bool> {
            Ok(tx.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])?.get(0))
        };
        if has(&mut tx, "meta")? {
            let row = tx.query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])?;
            let value: String = row.map(|r| r.get(0)).unwrap_or_default();
            let found: u32 = value.parse().map_err(|_| self.corrupt(format!("schema_version is {value:?}")))?;
            if found > SCHEMA_VERSION {
                return Err(Error::SchemaTooNew { found, supported: SCHEMA_VERSION });
            }
            return Ok(tx.commit()?);
        }
        for table in TABLES {
            if has(&mut tx, table)? {
                return Err(self.corrupt(format!("it holds a table `{table}` that is not tutti's")));
            }
        }
        tx.batch_execute(SCHEMA)?;
        tx.execute("INSERT INTO meta (key, value) VALUES ('schema_version', $1)", &[&SCHEMA_VERSION.to_string()])?;
        Ok(tx.commit()?)
    }

    fn corrupt(&self, detail: String) -> Error {
        Error::Corrupt { path: self.shown.clone(), detail }
    }

    /// The prepared statement for `sql` on this connection, prepared once.
    fn statement(&self, conn: &mut impl GenericClient, sql: &'static str) -> Result<Statement> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let prepared = conn.prepare(sql)?;
        self.statements.borrow_mut().insert(sql, prepared.clone());
        Ok(prepared)
    }

    /// Run `f` in a transaction and commit it; with `synced` false, the commit does not wait for the server's
    /// flush of its log (`synchronous_commit = off`). A failure rolls back.
    fn write<T>(&self, synced: bool, f: impl FnOnce(&Self, &mut postgres::Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut client = self.client.borrow_mut();
        let mut tx = client.transaction()?;
        if !synced {
            tx.batch_execute("SET LOCAL synchronous_commit = off")?;
        }
        let value = f(self, &mut tx)?;
        tx.commit()?;
        Ok(value)
    }

    fn create_run_in(&self, tx: &mut postgres::Transaction<'_>, run: &RunId, events: &[NewEvent]) -> Result<()> {
        let Some(NewEvent { ts_ms, event: Event::RunCreated { process, .. } }) = events.first() else {
            return Err(Error::MissingRunCreated(run.clone()));
        };
        let insert = self.statement(
            tx,
            "INSERT INTO runs (id, process, created_ms, updated_ms, status, events)
             VALUES ($1, $2, $3, $3, 'running', 0) ON CONFLICT (id) DO NOTHING",
        )?;
        if tx.execute(&insert, &[run, process, ts_ms])? == 0 {
            return Err(Error::RunExists(run.clone()));
        }
        self.write_events(tx, run, events)?;
        Ok(())
    }

    /// Appends `events` to `run` inside the caller's transaction, holding the run's row lock, and keeps the
    /// run's row in step; returns the run's new last seq.
    fn write_events(&self, tx: &mut postgres::Transaction<'_>, run: &RunId, events: &[NewEvent]) -> Result<Seq> {
        let last = self.statement(tx, "SELECT events FROM runs WHERE id = $1 FOR UPDATE")?;
        let last: i64 = tx.query_opt(&last, &[run])?.ok_or_else(|| Error::UnknownRun(run.clone()))?.get(0);
        let Some(updated_ms) = events.iter().map(|e| e.ts_ms).max() else { return Ok(last as Seq) };
        let (mut seqs, mut times, mut kinds, mut bodies) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut status = None;
        {
            let mut put = |hash: &str, bytes: &[u8]| self.insert_blob(tx, hash, bytes);
            for (i, NewEvent { ts_ms, event }) in events.iter().enumerate() {
                seqs.push(last + 1 + i as i64);
                times.push(*ts_ms);
                kinds.push(event.kind());
                bodies.push(encode_event(event, &mut put)?);
                status = event.terminal_status().or(status);
            }
        }
        let insert = self.statement(
            tx,
            "INSERT INTO events (run_id, seq, ts_ms, kind, v, body)
             SELECT $1, s, t, k, $5, b FROM unnest($2::bigint[], $3::bigint[], $4::text[], $6::text[]) AS x(s, t, k, b)",
        )?;
        tx.execute(&insert, &[run, &seqs, &times, &kinds, &(SCHEMA_VERSION as i32), &bodies])?;
        let new_last = last + events.len() as i64;
        let update = self.statement(
            tx,
            "UPDATE runs SET events = $2, updated_ms = GREATEST(updated_ms, $3), status = COALESCE($4, status)
             WHERE id = $1",
        )?;
        tx.execute(&update, &[run, &new_last, &updated_ms, &status.map(RunStatus::as_str)])?;
        Ok(new_last as Seq)
    }

    fn insert_blob(&self, conn: &mut impl GenericClient, hash: &str, bytes: &[u8]) -> Result<()> {
        let insert = self.statement(conn, "INSERT INTO blobs (hash, data) VALUES ($1, $2) ON CONFLICT DO NOTHING")?;
        conn.execute(&insert, &[&hash, &bytes])?;
        Ok(())
    }

    fn run_exists(&self, conn: &mut impl GenericClient, run: &RunId) -> Result<bool> {
        let exists = self.statement(conn, "SELECT 1 FROM runs WHERE id = $1")?;
        Ok(conn.query_opt(&exists, &[run])?.is_some())
    }

    fn read_in(&self, run: &RunId, after: Seq, limit: Option<i64>) -> Result<Vec<Record>> {
        let mut client = self.client.borrow_mut();
        if !self.run_exists(&mut *client, run)? {
            return Err(Error::UnknownRun(run.clone()));
        }
        let select = self.statement(
            &mut *client,
            "SELECT seq, ts_ms, body FROM events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = client.query(&select, &[run, &after, &limit])?;
        let raw = rows.iter().map(|r| (r.get::<_, i64>(0) as Seq, r.get::<_, i64>(1), r.get::<_, String>(2))).collect();
        crate::sqlite::decode_all(run, raw).map_err(|e| match e {
            Error::Decode { run, seq, source } => {
                self.corrupt(format!("event {seq} of run {run} cannot be decoded: {source}"))
            }
            other => other,
        })
    }

    fn summaries(&self, filter: Option<&RunId>) -> Result<Vec<RunSummary>> {
        let mut client = self.client.borrow_mut();
        let rows = match filter {
            Some(run) => {
                let s = self.statement(
                    &mut *client,
                    "SELECT id, process, created_ms, updated_ms, status, events FROM runs WHERE id = $1",
                )?;
                client.query(&s, &[run])?
            }
            None => {
                let s = self.statement(
                    &mut *client,
                    "SELECT id, process, created_ms, updated_ms, status, events FROM runs ORDER BY created_ms, id",
                )?;
                client.query(&s, &[])?
            }
        };
        rows.iter()
            .map(|row| {
                let status: String = row.get(4);
                let status = RunStatus::parse(&status).ok_or_else(|| self.corrupt(format!("run status {status:?}")))?;
                Ok(RunSummary {
                    id: row.get(0),
                    process: row.get(1),
                    created_ms: row.get(2),
                    updated_ms: row.get(3),
                    status,
                    events: row.get::<_, i64>(5) as u64,
                })
            })
            .collect()
    }

    fn lease_row(&self, conn: &mut impl GenericClient, run: &RunId, lock: bool) -> Result<Option<(LeaseHolder, i64)>> {
        let sql = if lock {
            "SELECT holder_id, host, pid, expires_ms FROM leases WHERE run_id = $1 FOR UPDATE"
        } else {
            "SELECT holder_id, host, pid, expires_ms FROM leases WHERE run_id = $1"
        };
        let select = self.statement(conn, sql)?;
        Ok(conn.query_opt(&select, &[run])?.map(|row| {
            let holder = LeaseHolder { id: row.get(0), host: row.get(1), pid: row.get::<_, i64>(2) as u32 };
            (holder, row.get(3))
        }))
    }

    /// Take the lease inside the caller's transaction. A missing row is inserted only if nobody inserted one
    /// meanwhile; then the row is looked at again under its lock.
    fn acquire_in(
        &self,
        tx: &mut postgres::Transaction<'_>,
        run: &RunId,
        me: &LeaseHolder,
        (now_ms, ttl_ms): (i64, i64),
        is_stale: &dyn Fn(&LeaseHolder) -> bool,
    ) -> Result<LeaseOutcome> {
        let expires = now_ms.saturating_add(ttl_ms);
        let pid = i64::from(me.pid);
        for _ in 0..3 {
            match self.lease_row(tx, run, true)? {
                Some((holder, expires_ms)) => {
                    let free = holder.id == me.id || expires_ms <= now_ms || is_stale(&holder);
                    if !free {
                        return Ok(LeaseOutcome::Busy { holder, expires_ms });
                    }
                    let update = self.statement(
                        tx,
                        "UPDATE leases SET holder_id = $2, host = $3, pid = $4, expires_ms = $5 WHERE run_id = $1",
                    )?;
                    tx.execute(&update, &[run, &me.id, &me.host, &pid, &expires])?;
                    return Ok(LeaseOutcome::Acquired);
                }
                None => {
                    let insert = self.statement(
                        tx,
                        "INSERT INTO leases (run_id, holder_id, host, pid, expires_ms) VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (run_id) DO NOTHING",
                    )?;
                    if tx.execute(&insert, &[run, &me.id, &me.host, &pid, &expires])? == 1 {
                        return Ok(LeaseOutcome::Acquired);
                    }
                }
            }
        }
        Err(Error::Contended(format!("the lease of run {run}")))
    }

    fn untaken(&self, conn: &mut impl GenericClient, run: &RunId) -> Result<Vec<Command>> {
        let select =
            self.statement(conn, "SELECT id, body FROM commands WHERE run_id = $1 AND NOT taken ORDER BY id")?;
        let rows = conn.query(&select, &[run])?;
        decode_commands(run, rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

impl EventLog for PgStore {
    fn create_run(&mut self, run: &RunId, events: &[NewEvent]) -> Result<()> {
        self.write(true, |s, tx| s.create_run_in(tx, run, events))
    }

    fn create_run_holding(
        &mut self,
        run: &RunId,
        events: &[NewEvent],
        holder: &LeaseHolder,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool> {
        self.write(true, |s, tx| {
            s.create_run_in(tx, run, events)?;
            Ok(s.acquire_in(tx, run, holder, (now_ms, ttl_ms), &|_| false)? == LeaseOutcome::Acquired)
        })
    }

    fn append(&mut self, batches: &[(RunId, Vec<NewEvent>)]) -> Result<Vec<Seq>> {
        self.write(true, |s, tx| batches.iter().map(|(run, events)| s.write_events(tx, run, events)).collect())
    }

    /// Committed without waiting for the server to flush its log (`synchronous_commit = off`): it survives
    /// tutti's death, and the server's own crash at worst loses the last fraction of a second of such commits.
    fn append_unsynced(&mut self, batches: &[(RunId, Vec<NewEvent>)]) -> Result<Vec<Seq>> {
        self.write(false, |s, tx| batches.iter().map(|(run, events)| s.write_events(tx, run, events)).collect())
    }

    /// A synchronous commit that takes a transaction id: the server writes its commit record and waits until
    /// its log is flushed up to it, which covers every unsynced commit before it.
    fn persist(&mut self) -> Result<()> {
        self.write(true, |_, tx| {
            tx.batch_execute("SELECT pg_current_xact_id()")?;
            Ok(())
        })
    }

    fn read(&self, run: &RunId, after: Seq) -> Result<Vec<Record>> {
        self.read_in(run, after, None)
    }

    fn first_event(&self, run: &RunId) -> Result<Option<Record>> {
        Ok(self.read_in(run, 0, Some(1))?.pop())
    }

    fn runs(&self) -> Result<Vec<RunSummary>> {
        self.summaries(None)
    }

    fn run(&self, run: &RunId) -> Result<Option<RunSummary>> {
        Ok(self.summaries(Some(run))?.pop())
    }

    /// Each run's events are numbered 1..=n as its row says, and no events are orphaned. The server checks
    /// its own storage.
    fn verify(&self) -> Result<()> {
        let mut client = self.client.borrow_mut();
        let bad = client.query_opt(
            "SELECT r.id, r.events, count(e.seq), coalesce(max(e.seq), 0) FROM runs r
             LEFT JOIN events e ON e.run_id = r.id GROUP BY r.id, r.events
             HAVING r.events != count(e.seq) OR r.events != coalesce(max(e.seq), 0) LIMIT 1",
            &[],
        )?;
        if let Some(row) = bad {
            let (run, recorded, count, max): (String, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
            return Err(self.corrupt(format!(
                "run {run} records {recorded} events but {count} are stored, the last numbered {max}"
            )));
        }
        let orphan =
            client.query_opt("SELECT run_id FROM events WHERE run_id NOT IN (SELECT id FROM runs) LIMIT 1", &[])?;
        if let Some(row) = orphan {
            let run: String = row.get(0);
            return Err(self.corrupt(format!("events of run {run} are stored, but the run is not")));
        }
        Ok(())
    }
}

impl Blobs for PgStore {
    fn put_blob(&mut self, bytes: &[u8]) -> Result<String> {
        let hash = blob_hash(bytes);
        let mut client = self.client.borrow_mut();
        self.insert_blob(&mut *client, &hash, bytes)?;
        Ok(hash)
    }

    fn get_blob(&self, hash: &str) -> Result<Vec<u8>> {
        let mut client = self.client.borrow_mut();
        let select = self.statement(&mut *client, "SELECT data FROM blobs WHERE hash = $1")?;
        let data: Vec<u8> =
            client.query_opt(&select, &[&hash])?.ok_or_else(|| Error::MissingBlob(hash.to_owned()))?.get(0);
        if blob_hash(&data) != hash {
            return Err(self.corrupt(format!("blob {hash} does not match its content")));
        }
        Ok(data)
    }
}

impl Leases for PgStore {
    fn acquire_lease(
        &mut self,
        run: &RunId,
        me: &LeaseHolder,
        now_ms: i64,
        ttl_ms: i64,
        is_stale: &dyn Fn(&LeaseHolder) -> bool,
    ) -> Result<LeaseOutcome> {
        self.write(true, |s, tx| s.acquire_in(tx, run, me, (now_ms, ttl_ms), is_stale))
    }

    fn renew_lease(&mut self, run: &RunId, me: &LeaseHolder, now_ms: i64, ttl_ms: i64) -> Result<bool> {
        self.write(false, |s, tx| {
            let renew = s.statement(tx, "UPDATE leases SET expires_ms = $3 WHERE run_id = $1 AND holder_id = $2")?;
            Ok(tx.execute(&renew, &[run, &me.id, &now_ms.saturating_add(ttl_ms)])? == 1)
        })
    }

    fn release_lease(&mut self, run: &RunId, me: &LeaseHolder) -> Result<()> {
        self.write(false, |s, tx| {
            let release = s.statement(tx, "DELETE FROM leases WHERE run_id = $1 AND holder_id = $2")?;
            tx.execute(&release, &[run, &me.id])?;
            Ok(())
        })
    }

    fn lease(&self, run: &RunId, now_ms: i64) -> Result<Option<LeaseHolder>> {
        let mut client = self.client.borrow_mut();
        let row = self.lease_row(&mut *client, run, false)?;
        Ok(row.filter(|(_, expires_ms)| *expires_ms > now_ms).map(|(holder, _)| holder))
    }
}

impl CommandQueue for PgStore {
    /// Queued and announced on the run's channel in one transaction: listeners hear of it once it commits.
    fn post_command(&mut self, run: &RunId, command: &Command) -> Result<()> {
        let body = serde_json::to_string(command).map_err(Error::Encode)?;
        self.write(true, |s, tx| {
            if !s.run_exists(tx, run)? {
                return Err(Error::UnknownRun(run.clone()));
            }
            let insert = s.statement(tx, "INSERT INTO commands (run_id, body) VALUES ($1, $2)")?;
            tx.execute(&insert, &[run, &body])?;
            tx.execute("SELECT pg_notify($1, '')", &[&channel(&s.schema, "commands", run)])?;
            Ok(())
        })
    }

    fn queued_commands(&self, run: &RunId) -> Result<Vec<Command>> {
        let mut client = self.client.borrow_mut();
        self.untaken(&mut *client, run)
    }

    fn take_commands(&mut self, run: &RunId) -> Result<Vec<Command>> {
        self.write(true, |s, tx| {
            let take =
                s.statement(tx, "UPDATE commands SET taken = true WHERE run_id = $1 AND NOT taken RETURNING id, body")?;
            let mut rows: Vec<(i64, String)> = tx.query(&take, &[run])?.iter().map(|r| (r.get(0), r.get(1))).collect();
            rows.sort_by_key(|(id, _)| *id);
            decode_commands(run, rows)
        })
    }

    /// A connection of its own, listening on the run's channel.
    fn command_listener(&self, run: &RunId) -> Result<Option<Box<dyn CommandListener>>> {
        let mut client = connect(&self.config, &self.shown)?;
        client.batch_execute(&format!("LISTEN \"{}\"", channel(&self.schema, "commands", run)))?;
        Ok(Some(Box::new(PgListener { client })))
    }
}

/// Hears `NOTIFY`s on one run's channel.
struct PgListener {
    client: Client,
}

impl CommandListener for PgListener {
    fn wait(&mut self, timeout: Duration) -> Result<bool> {
        let mut notifications = self.client.notifications();
        let heard = notifications.timeout_iter(timeout).next()?.is_some();
        // Several posts may have been announced: one wake-up takes them all.
        while notifications.iter().next()?.is_some() {}
        Ok(heard)
    }
}

/// A notification channel: `tutti_WHAT_` and a hash of the schema and the run (empty for none), so that
/// schemas sharing a database never hear each other, and a fixed length whatever the run id (channel names
/// are at most 63 bytes).
fn channel(schema: &str, what: &str, run: &str) -> String {
    format!("tutti_{what}_{}", &blob_hash(format!("{schema}\0{run}").as_bytes())[..24])
}

fn decode_commands(run: &RunId, rows: Vec<(i64, String)>) -> Result<Vec<Command>> {
    rows.into_iter()
        .map(|(id, body)| {
            serde_json::from_str(&body).map_err(|source| Error::DecodeCommand { run: run.clone(), id, source })
        })
        .collect()
}

fn connect(config: &postgres::Config, shown: &str) -> Result<Client> {
    config.connect(NoTls).map_err(|source| Error::Connect { url: shown.to_owned(), source })
}

/// Create the first schema of the search path when it does not exist yet (`current_schema()` is null then).
fn ensure_schema(tx: &mut postgres::Transaction<'_>) -> Result<()> {
    let current: Option<String> = tx.query_one("SELECT current_schema()", &[])?.get(0);
    if current.is_some() {
        return Ok(());
    }
    let path: String = tx.query_one("SHOW search_path", &[])?.get(0);
    let first = path.split(',').map(|s| s.trim().trim_matches('"')).find(|s| !s.is_empty() && *s != "$user");
    if let Some(schema) = first {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", schema.replace('"', "\"\"")))?;
    }
    Ok(())
}

/// `url` with any password replaced by `***`, for messages.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((auth, host)) = rest.split_once('@') else { return url.to_owned() };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

mod work;
pub use work::{Listen, PgWorkQueue};

#[cfg(test)]
mod tests;
