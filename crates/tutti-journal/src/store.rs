//! The storage traits every journal backend implements (SQLite, PostgreSQL): [`EventLog`],
//! [`Blobs`], [`Leases`] and [`CommandQueue`], with [`Store`] their sum; the types that cross them, and the
//! journal's one `Error`. Backends must pass the suite in `conformance/`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{Actor, EffectId, NewEvent, Payload, Record, RunId, RunStatus, Seq};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create directory {path}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("database error")]
    Postgres(#[from] postgres::Error),
    #[error("cannot connect to the PostgreSQL journal at {url}")]
    Connect {
        url: String,
        #[source]
        source: postgres::Error,
    },
    #[error("bad journal URL {url}: {detail}")]
    BadUrl { url: String, detail: String },
    #[error("{0} stayed contended: other processes kept changing it")]
    Contended(String),
    #[error("cannot open journal at {path}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "journal {path} is damaged or is not a tutti database: {detail}. tutti will neither start nor write \
         anything with it: restore the .tutti folder from a backup, or move it aside to start afresh (a run \
         saved with `tutti export` comes back with `tutti import`)"
    )]
    Corrupt { path: String, detail: String },
    #[error("journal schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("event {seq} of run {run} cannot be decoded")]
    Decode {
        run: RunId,
        seq: Seq,
        #[source]
        source: serde_json::Error,
    },
    #[error("command {id} of run {run} cannot be decoded")]
    DecodeCommand {
        run: RunId,
        id: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode event")]
    Encode(#[source] serde_json::Error),
    #[error("run {0} not found")]
    UnknownRun(RunId),
    #[error("run {0} already exists")]
    RunExists(RunId),
    #[error("run {0} must begin with a run_created event")]
    MissingRunCreated(RunId),
    #[error("blob {0} not found")]
    MissingBlob(String),
    #[error("journal writer has stopped")]
    WriterGone,
    #[error("cannot start the journal writer thread")]
    Spawn(#[source] std::io::Error),
    #[error("cannot flush the journal's log {path} to disk")]
    Sync {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A run as listed by `tutti ls`: kept in step with its events by the backend.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub id: RunId,
    pub process: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub status: RunStatus,
    pub events: u64,
}

/// Who drives a run. `host` and `pid` let a driver on the same host take over at once from a holder whose
/// process is gone, instead of waiting for the lease to expire.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LeaseHolder {
    pub id: String,
    pub host: String,
    pub pid: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LeaseOutcome {
    Acquired,
    /// Another live driver holds the run until `expires_ms`.
    Busy {
        holder: LeaseHolder,
        expires_ms: i64,
    },
}

/// A request from another `tutti` process to a run's driver, queued in the database.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Resolve a waiting effect (a breakpoint approval, or `tutti post`), given by `by`.
    Resolve {
        effect: EffectId,
        outcome: crate::event::Outcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Actor>,
    },
    /// Cancel the whole run.
    Cancel {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<Actor>,
    },
    /// A message from the agent running `effect` (attempt `attempt`), authenticated by `token`.
    Message { effect: EffectId, attempt: u32, token: String, to: String, body: Value },
    /// A progress note from the agent running `effect`, authenticated like a message.
    Progress { effect: EffectId, attempt: u32, token: String, message: String },
}

/// A journal backend: the sum of its four parts, each a trait of its own so that code can take only the part
/// it uses. All methods are synchronous; a backend is used from one thread at a time. Anything that implements
/// the four parts is a `Store`.
pub trait Store: EventLog + Blobs + Leases + CommandQueue + Send {}

impl<T: EventLog + Blobs + Leases + CommandQueue + Send + ?Sized> Store for T {}

/// The journal proper: runs and their numbered events, appended in transactions and read back in order, with
/// each run's summary kept in step, and the checks and checkpoints of the whole journal.
pub trait EventLog: Send {
    /// Create a run whose first events are `events` (at least `RunCreated`), in one transaction.
    fn create_run(&mut self, run: &RunId, events: &[NewEvent]) -> Result<()>;

    /// Create a run like [`EventLog::create_run`] and, where the backend can, take its lease for `holder`
    /// (until `now_ms + ttl_ms`) in the same transaction: one commit where two would do. Returns whether
    /// the lease was taken; when not, the caller takes it with [`Leases::acquire_lease`].
    fn create_run_holding(
        &mut self,
        run: &RunId,
        events: &[NewEvent],
        _holder: &LeaseHolder,
        _now_ms: i64,
        _ttl_ms: i64,
    ) -> Result<bool> {
        self.create_run(run, events)?;
        Ok(false)
    }

    /// Append events to several runs in one transaction (one fsync). Payloads above the backend's inline
    /// limit are moved to the blob store. Returns the last sequence number of each batch, in order.
    fn append(&mut self, batches: &[(RunId, Vec<NewEvent>)]) -> Result<Vec<Seq>>;

    /// Append like [`EventLog::append`], but the commit need only survive the process's death, not the
    /// machine's: a backend may skip its flush to stable storage (SQLite: no fsync). Any later
    /// [`EventLog::append`] makes it stable too. For facts a crash of the machine may lose without harm.
    fn append_unsynced(&mut self, batches: &[(RunId, Vec<NewEvent>)]) -> Result<Vec<Seq>> {
        self.append(batches)
    }

    /// Events of `run` with `seq > after`, in order. Blob payloads are returned as references.
    fn read(&self, run: &RunId, after: Seq) -> Result<Vec<Record>>;

    /// The first event of `run` (its `RunCreated`, with the options it was started with).
    fn first_event(&self, run: &RunId) -> Result<Option<Record>> {
        Ok(self.read(run, 0)?.into_iter().next())
    }

    fn runs(&self) -> Result<Vec<RunSummary>>;

    fn run(&self, run: &RunId) -> Result<Option<RunSummary>>;

    /// Check the whole journal for damage (the storage's own check, then that each run's events are
    /// numbered 1..=n with n what the run's row says) and give [`Error::Corrupt`] on any. Commands call this
    /// before they read or write anything else.
    fn verify(&self) -> Result<()> {
        Ok(())
    }

    /// Move everything committed into the main database file, so that it alone holds the journal (SQLite:
    /// a WAL checkpoint). `truncate` also empties the log file; it waits for readers, so drivers use it only
    /// at their end.
    fn checkpoint(&mut self, _truncate: bool) -> Result<()> {
        Ok(())
    }

    /// Make every commit so far stable, those made by [`EventLog::append_unsynced`] included. A driver's
    /// last commit may then skip its own flush: this call, made before the driver's end leaves it, stands
    /// for it. SQLite: a checkpoint, which syncs the log before moving it into the main file (the two fsyncs
    /// the end of a run pays anyway), or one fsync of the log when readers keep frames in it.
    fn persist(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The content-addressed blob store: bytes kept under their hash, which is where a payload too large to
/// stay inline in its event lives, and reading back the value a [`Payload`] holds.
pub trait Blobs: Send {
    /// Store bytes under their SHA-256 (hex); idempotent.
    fn put_blob(&mut self, bytes: &[u8]) -> Result<String>;

    fn get_blob(&self, hash: &str) -> Result<Vec<u8>>;

    /// The value a payload holds, reading its blob when it is out of line.
    fn load(&self, payload: &Payload) -> Result<Value> {
        match payload {
            Payload::Inline(v) => Ok(v.clone()),
            Payload::Blob { hash, .. } => {
                let bytes = self.get_blob(hash)?;
                serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Corrupt { path: format!("blob {hash}"), detail: e.to_string() })
            }
        }
    }
}

/// Who drives each run: a lease per run, taken, renewed and released by drivers, and looked up by commands
/// that want to know whether a live driver is attached.
pub trait Leases: Send {
    /// Take the lease of `run` for `ttl_ms` from `now_ms`. A lease held by someone else is taken over only
    /// when it has expired or `is_stale(holder)` says its process is gone.
    fn acquire_lease(
        &mut self,
        run: &RunId,
        me: &LeaseHolder,
        now_ms: i64,
        ttl_ms: i64,
        is_stale: &dyn Fn(&LeaseHolder) -> bool,
    ) -> Result<LeaseOutcome>;

    /// Extend our lease; false if it was taken over meanwhile.
    fn renew_lease(&mut self, run: &RunId, me: &LeaseHolder, now_ms: i64, ttl_ms: i64) -> Result<bool>;

    fn release_lease(&mut self, run: &RunId, me: &LeaseHolder) -> Result<()>;

    /// The live holder of a run's lease, if any.
    fn lease(&self, run: &RunId, now_ms: i64) -> Result<Option<LeaseHolder>>;
}

/// The queue of [`Command`]s that other `tutti` processes post to a run's driver, which takes each once.
pub trait CommandQueue: Send {
    /// Queue a command for the run's driver.
    fn post_command(&mut self, run: &RunId, command: &Command) -> Result<()>;

    /// Commands queued for `run` that its driver has not taken yet, oldest first (nothing is marked).
    fn queued_commands(&self, run: &RunId) -> Result<Vec<Command>>;

    /// Commands queued for `run`, oldest first, marked as taken so that none is seen twice.
    fn take_commands(&mut self, run: &RunId) -> Result<Vec<Command>>;

    /// A way to wait for commands to `run` without polling, where the backend pushes them (PostgreSQL's
    /// `LISTEN`/`NOTIFY`). `None`: the caller polls [`CommandQueue::take_commands`].
    fn command_listener(&self, _run: &RunId) -> Result<Option<Box<dyn CommandListener>>> {
        Ok(None)
    }
}

/// Told when commands may have been queued for one run (see [`CommandQueue::command_listener`]).
pub trait CommandListener: Send {
    /// Block until a command may have been posted to the run, or `timeout` passes; true in the first case.
    /// A wake-up may be spurious or stand for several commands: the caller then takes what is queued.
    fn wait(&mut self, timeout: std::time::Duration) -> Result<bool>;
}
