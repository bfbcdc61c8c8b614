//! Group commit: one thread commits whatever callers queued while the previous commit ran in one transaction
//! (one fsync), then acknowledges each caller. A caller that would only block on that thread may instead
//! commit on its own thread ([`WriterHandle::append_now`]), saving two thread hand-offs; the [`Store`] sits
//! behind a mutex for that. It does not read; readers open their own store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::event::{NewEvent, Payload, Record, RunId, Seq};
use crate::store::{
    Blobs, Command, CommandQueue, Error, EventLog, LeaseHolder, LeaseOutcome, Leases, Result, RunSummary, Store,
};

/// How often a busy writer moves committed events from the log into the main database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);

/// A batch of events waiting to be committed, and where to send its last seq.
struct Request {
    run: RunId,
    events: Vec<NewEvent>,
    reply: SyncSender<Result<Seq>>,
}

/// The writer thread's state. Start it with [`Writer::spawn`]; talk to it through [`WriterHandle`].
pub struct Writer {
    store: SharedStore,
    requests: Receiver<Request>,
    commits: Arc<AtomicU64>,
}

type SharedStore = Arc<Mutex<Box<dyn Store>>>;

fn lock(store: &SharedStore) -> MutexGuard<'_, Box<dyn Store>> {
    // A panic while committing leaves a rolled-back transaction at worst; the store stays usable.
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A cheap, cloneable way to append through the writer. The thread stops when every handle is gone.
#[derive(Clone)]
pub struct WriterHandle {
    requests: Sender<Request>,
    commits: Arc<AtomicU64>,
    store: SharedStore,
    /// Shared by all handles; whoever shuts down last joins the thread.
    thread: Arc<JoinHandle<()>>,
}

/// How durable [`WriterHandle::append_now`] makes its events before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// On stable storage: they survive a crash of the machine.
    Stable,
    /// Handed to the OS: they survive tutti's death (kill -9), and the next stable commit makes them stable.
    Process,
}

/// An append that was queued and not yet acknowledged.
#[must_use = "an append is durable only once `wait` returns"]
pub struct Pending {
    reply: Receiver<Result<Seq>>,
}

impl Writer {
    /// Starts the writer thread, which owns `store` from now on.
    pub fn spawn(store: Box<dyn Store>) -> Result<WriterHandle> {
        let (requests, receiver) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let store = Arc::new(Mutex::new(store));
        let writer = Writer { store: Arc::clone(&store), requests: receiver, commits: Arc::clone(&commits) };
        let thread = std::thread::Builder::new()
            .name("tutti-journal-writer".into())
            .spawn(move || writer.run())
            .map_err(Error::Spawn)?;
        Ok(WriterHandle { requests, commits, store, thread: Arc::new(thread) })
    }

    fn run(mut self) {
        let mut last_checkpoint = Instant::now();
        while let Ok(first) = self.requests.recv() {
            let mut group = vec![first];
            group.extend(self.requests.try_iter());
            self.commit(group);
            // A long run that writes little would otherwise keep its whole journal in the log file.
            if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                // Best effort: a failed checkpoint loses nothing, the log still holds every commit.
                let _ = lock(&self.store).checkpoint(false);
                last_checkpoint = Instant::now();
            }
        }
        // The last handle is gone: the driver has ended or let go. Leave the journal in its main file.
        let _ = lock(&self.store).checkpoint(true);
    }

    fn commit(&mut self, group: Vec<Request>) {
        let (batches, replies): (Vec<_>, Vec<_>) = group.into_iter().map(|r| ((r.run, r.events), r.reply)).unzip();
        let result = lock(&self.store).append(&batches);
        match result {
            Ok(seqs) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                for (reply, seq) in replies.into_iter().zip(seqs) {
                    // A caller that gave up waiting is no reason to stop.
                    let _ = reply.send(Ok(seq));
                }
            }
            Err(err) if replies.len() == 1 => {
                let _ = replies[0].send(Err(err));
            }
            // The group was rolled back as a whole; commit each batch alone so that one bad batch (say, an
            // unknown run) fails only its own caller, with its own error.
            Err(_) => self.commit_one_by_one(batches, replies),
        }
    }

    fn commit_one_by_one(&mut self, batches: Vec<(RunId, Vec<NewEvent>)>, replies: Vec<SyncSender<Result<Seq>>>) {
        for (batch, reply) in batches.into_iter().zip(replies) {
            let result = lock(&self.store).append(std::slice::from_ref(&batch));
            if result.is_ok() {
                self.commits.fetch_add(1, Ordering::Relaxed);
            }
            let _ = reply.send(result.map(|seqs| seqs.first().copied().unwrap_or_default()));
        }
    }
}

impl WriterHandle {
    /// Appends `events` to `run` and blocks until they are committed; returns the run's last seq.
    pub fn append(&self, run: RunId, events: Vec<NewEvent>) -> Result<Seq> {
        self.submit(run, events)?.wait()
    }

    /// Commits `events` on the calling thread (after a commit the writer has under way) and returns the run's
    /// last seq. For a caller that would otherwise block on the writer: the same transaction and fsync,
    /// without waking the writer's thread and being woken by it. Appends this caller queued earlier must
    /// have been confirmed ([`Pending::wait`]), or this one could overtake them.
    pub fn append_now(&self, run: RunId, events: Vec<NewEvent>, durability: Durability) -> Result<Seq> {
        let batches = [(run, events)];
        let mut store = lock(&self.store);
        let seqs = match durability {
            Durability::Stable => store.append(&batches)?,
            Durability::Process => store.append_unsynced(&batches)?,
        };
        drop(store);
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(seqs.first().copied().unwrap_or_default())
    }

    /// Queues `events` for the next commit without waiting for it.
    pub fn submit(&self, run: RunId, events: Vec<NewEvent>) -> Result<Pending> {
        let (reply, receiver) = mpsc::sync_channel(1);
        self.requests.send(Request { run, events, reply }).map_err(|_| Error::WriterGone)?;
        Ok(Pending { reply: receiver })
    }

    /// The writer's own store, for everything else a driver does with the journal (reads, leases, commands):
    /// one connection per driver instead of two, each call taking the store while no commit runs.
    pub fn store(&self) -> WriterStore {
        WriterStore { store: Arc::clone(&self.store) }
    }

    /// Commits made so far (each one transaction, one fsync).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Drops this handle. If it was the last one, waits for the thread to commit what is queued and returns
    /// the store; otherwise (or if the thread panicked) returns `None`.
    pub fn shutdown(self) -> Option<Box<dyn Store>> {
        let WriterHandle { requests, thread, store, .. } = self;
        drop(requests);
        Arc::into_inner(thread)?.join().ok()?;
        Arc::into_inner(store).map(|store| store.into_inner().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Pending {
    /// Blocks until the append is committed; returns the run's last seq.
    pub fn wait(self) -> Result<Seq> {
        self.reply.recv().map_err(|_| Error::WriterGone)?
    }
}

/// The writer's store, shared with its thread ([`WriterHandle::store`]). Every call waits for a commit under
/// way, then runs on the caller's thread.
pub struct WriterStore {
    store: SharedStore,
}

impl EventLog for WriterStore {
    fn create_run(&mut self, run: &RunId, events: &[NewEvent]) -> Result<()> {
        lock(&self.store).create_run(run, events)
    }
    fn create_run_holding(
        &mut self,
        run: &RunId,
        events: &[NewEvent],
        holder: &LeaseHolder,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool> {
        lock(&self.store).create_run_holding(run, events, holder, now_ms, ttl_ms)
    }
    fn append(&mut self, batches: &[(RunId, Vec<NewEvent>)]) -> Result<Vec<Seq>> {
        lock(&self.store).append(batches)
    }
    fn append_unsynced(&mut self, batches: &[(RunId, Vec<NewEvent>)]) -> Result<Vec<Seq>> {
        lock(&self.store).append_unsynced(batches)
    }
    fn read(&self, run: &RunId, after: Seq) -> Result<Vec<Record>> {
        lock(&self.store).read(run, after)
    }
    fn first_event(&self, run: &RunId) -> Result<Option<Record>> {
        lock(&self.store).first_event(run)
    }
    fn runs(&self) -> Result<Vec<RunSummary>> {
        lock(&self.store).runs()
    }
    fn run(&self, run: &RunId) -> Result<Option<RunSummary>> {
        lock(&self.store).run(run)
    }
    fn verify(&self) -> Result<()> {
        lock(&self.store).verify()
    }
    fn checkpoint(&mut self, truncate: bool) -> Result<()> {
        lock(&self.store).checkpoint(truncate)
    }
    fn persist(&mut self) -> Result<()> {
        lock(&self.store).persist()
    }
}

impl Blobs for WriterStore {
    fn put_blob(&mut self, bytes: &[u8]) -> Result<String> {
        lock(&self.store).put_blob(bytes)
    }
    fn get_blob(&self, hash: &str) -> Result<Vec<u8>> {
        lock(&self.store).get_blob(hash)
    }
    fn load(&self, payload: &Payload) -> Result<serde_json::Value> {
        lock(&self.store).load(payload)
    }
}

impl Leases for WriterStore {
    fn acquire_lease(
        &mut self,
        run: &RunId,
        me: &LeaseHolder,
        now_ms: i64,
        ttl_ms: i64,
        is_stale: &dyn Fn(&LeaseHolder) -> bool,
    ) -> Result<LeaseOutcome> {
        lock(&self.store).acquire_lease(run, me, now_ms, ttl_ms, is_stale)
    }
    fn renew_lease(&mut self, run: &RunId, me: &LeaseHolder, now_ms: i64, ttl_ms: i64) -> Result<bool> {
        lock(&self.store).renew_lease(run, me, now_ms, ttl_ms)
    }
    fn release_lease(&mut self, run: &RunId, me: &LeaseHolder) -> Result<()> {
        lock(&self.store).release_lease(run, me)
    }
    fn lease(&self, run: &RunId, now_ms: i64) -> Result<Option<LeaseHolder>> {
        lock(&self.store).lease(run, now_ms)
    }
}

impl CommandQueue for WriterStore {
    fn post_command(&mut self, run: &RunId, command: &Command) -> Result<()> {
        lock(&self.store).post_command(run, command)
    }
    fn queued_commands(&self, run: &RunId) -> Result<Vec<Command>> {
        lock(&self.store).queued_commands(run)
    }
    fn command_listener(&self, run: &RunId) -> Result<Option<Box<dyn crate::store::CommandListener>>> {
        lock(&self.store).command_listener(run)
    }
    fn take_commands(&mut self, run: &RunId) -> Result<Vec<Command>> {
        lock(&self.store).take_commands(run)
    }
}

#[cfg(test)]
mod tests;
