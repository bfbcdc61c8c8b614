//! The driver's journal buffer: events recorded during a step wait here until something is about to leave
//! the driver, then go to the writer in one commit. At most one commit is in flight; `flush` is the
//! output-commit rule's barrier (everything recorded so far is durable when it returns).

use std::sync::Arc;

use tutti_journal::{Durability, Event, EventLog, LeaseHolder, NewEvent, Pending, RunId, WriterHandle};

use super::Faults;
use crate::error::Error;
use crate::platform::Platform;

/// Events buffered before a commit is forced even while results keep arriving.
pub(crate) const MAX_BUFFER: usize = 8192;

/// Record, submit, confirm, flush.
pub(crate) struct JournalBuffer {
    run_id: RunId,
    writer: WriterHandle,
    buffer: Vec<NewEvent>,
    /// The last submitted commit, not yet confirmed.
    in_flight: Option<Pending>,
    commits: u64,
    faults: Faults,
    platform: Arc<dyn Platform>,
    /// Set while the run's first commit is still to come and must create the run (see
    /// [`JournalBuffer::create_with_first_commit`]).
    creating: Option<Creating>,
}

/// The lease a new run's first commit takes with it.
struct Creating {
    holder: LeaseHolder,
    ttl_ms: i64,
}

impl JournalBuffer {
    pub(crate) fn new(run_id: RunId, writer: WriterHandle, faults: Faults, platform: Arc<dyn Platform>) -> Self {
        Self { run_id, writer, buffer: Vec::new(), in_flight: None, commits: 0, faults, platform, creating: None }
    }

    /// The run does not exist yet: the first commit creates it with `created` (its `RunCreated`) and the
    /// events recorded before it, and takes its lease for `holder`, in one transaction (one fsync where two
    /// would do).
    pub(crate) fn create_with_first_commit(&mut self, created: NewEvent, holder: LeaseHolder, ttl_ms: i64) {
        self.buffer.insert(0, created);
        self.creating = Some(Creating { holder, ttl_ms });
    }

    /// Buffer an event for the next commit; returns its timestamp.
    #[cfg(test)]
    pub(crate) fn record(&mut self, event: Event) -> i64 {
        self.record_at(event, super::wall_ms())
    }

    /// Record `event` stamped `ts_ms` (the dispatcher's clock, read once for the event and its ledger).
    pub(crate) fn record_at(&mut self, event: Event, ts_ms: i64) -> i64 {
        self.buffer.push(NewEvent { ts_ms, event });
        ts_ms
    }

    /// Drop the events recorded and not yet submitted: an abandoned replay pass journals nothing.
    pub(crate) fn discard(&mut self) {
        self.buffer.clear();
    }

    /// Whether everything buffered is attempts' starts: facts a crash may lose without harm (a resuming
    /// driver finds an attempt whose start never reached the journal by its process, and kills it), so
    /// they may wait for the next commit instead of costing one of their own.
    pub(crate) fn holds_only_starts(&self) -> bool {
        !self.buffer.is_empty() && self.buffer.iter().all(|e| matches!(e.event, Event::EffectStarted { .. }))
    }

    /// Whether the buffer is so full that it should be submitted now.
    pub(crate) fn is_full(&self) -> bool {
        self.buffer.len() >= MAX_BUFFER
    }

    /// Make everything recorded so far durable: called before anything leaves the driver. The driver would
    /// only wait for the writer here, so it commits on its own thread. A buffer of attempts' starts alone
    /// (the next start of a fan-out) is made durable against tutti's death but not fsynced: the machine's
    /// crash may lose such facts without harm (see [`JournalBuffer::holds_only_starts`]).
    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        let durability = if self.holds_only_starts() { Durability::Process } else { Durability::Stable };
        self.flush_as(durability)
    }

    /// Commit everything recorded so far without making it stable: the driver's end, which the store's
    /// `persist` then makes stable before the end leaves the driver (one fsync fewer than a stable commit
    /// followed by the checkpoint every end makes).
    pub(crate) fn flush_unsynced(&mut self) -> Result<(), Error> {
        self.flush_as(Durability::Process)
    }

    fn flush_as(&mut self, durability: Durability) -> Result<(), Error> {
        self.confirm()?;
        if self.buffer.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.buffer);
        match self.creating.take() {
            Some(creating) => self.create(&events, creating)?,
            None => {
                self.writer.append_now(self.run_id.clone(), events, durability)?;
            }
        }
        self.committed();
        Ok(())
    }

    /// The run's first commit: it creates the run, always stable. A backend that cannot take the lease in
    /// the same transaction takes it right after.
    fn create(&mut self, events: &[NewEvent], creating: Creating) -> Result<(), Error> {
        let Creating { holder, ttl_ms } = creating;
        let mut store = self.writer.store();
        let now = super::wall_ms();
        if store.create_run_holding(&self.run_id, events, &holder, now, ttl_ms)? {
            return Ok(());
        }
        super::control::take_lease(&mut store, &self.run_id, &holder, &self.platform, (now, ttl_ms))
    }

    /// Hand the buffer to the writer without waiting for its commit (at most one commit in flight), so the
    /// writer's thread commits while the driver goes on with work that needs no durability yet.
    pub(crate) fn submit(&mut self) -> Result<(), Error> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if self.creating.is_some() {
            return self.flush();
        }
        self.confirm()?;
        let events = std::mem::take(&mut self.buffer);
        self.in_flight = Some(self.writer.submit(self.run_id.clone(), events)?);
        Ok(())
    }

    /// Wait for the commit in flight, if any.
    pub(crate) fn confirm(&mut self) -> Result<(), Error> {
        let Some(pending) = self.in_flight.take() else { return Ok(()) };
        pending.wait()?;
        self.committed();
        Ok(())
    }

    /// Count a confirmed commit; the crash fault fires after the configured one.
    fn committed(&mut self) {
        self.commits += 1;
        if cfg!(feature = "fault-injection") && self.faults.kill_after_commits == Some(self.commits) {
            self.platform.crash();
        }
    }

    /// Commits confirmed so far.
    #[cfg(test)]
    pub(crate) fn commits(&self) -> u64 {
        self.commits
    }

    /// Events recorded and not yet handed to the writer.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buffer.len()
    }
}

#[cfg(test)]
mod tests {
    use tutti_journal::{EventLog, Leases, SqliteStore, Writer};

    use super::*;
    use crate::driver::tests::{TestPlatform, new_run, run_created};

    fn buffer(dir: &tempfile::TempDir) -> (JournalBuffer, SqliteStore) {
        let path = dir.path().join("tutti.db");
        let mut store = SqliteStore::open(&path).expect("store");
        new_run(&mut store, "r");
        let writer = Writer::spawn(Box::new(SqliteStore::open(&path).expect("store"))).expect("writer");
        (JournalBuffer::new("r".into(), writer, Faults::default(), Arc::new(TestPlatform::default())), store)
    }

    fn log(message: &str) -> Event {
        Event::Log { scope: "root".into(), message: message.into() }
    }

    #[test]
    fn recorded_events_reach_the_journal_only_when_flushed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut journal, store) = buffer(&dir);
        journal.record(log("a"));
        journal.record(log("b"));
        assert_eq!(store.read(&"r".into(), 0).expect("read").len(), 1, "only run_created before the flush");
        journal.flush().expect("flush");
        assert_eq!(store.read(&"r".into(), 0).expect("read").len(), 3);
        assert_eq!(journal.commits(), 1, "two events, one commit");
        assert_eq!(journal.buffered(), 0);
    }

    #[test]
    fn a_submit_waits_for_the_commit_in_flight_first_so_order_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut journal, store) = buffer(&dir);
        for i in 0..5 {
            journal.record(log(&i.to_string()));
            journal.submit().expect("submit");
        }
        journal.flush().expect("flush");
        let messages: Vec<String> = store
            .read(&"r".into(), 0)
            .expect("read")
            .into_iter()
            .filter_map(|r| match r.event {
                Event::Log { message, .. } => Some(message),
                _ => None,
            })
            .collect();
        assert_eq!(messages, ["0", "1", "2", "3", "4"]);
        assert_eq!(journal.commits(), 5);
    }

    #[test]
    fn the_first_commit_creates_the_run_with_what_was_recorded_and_takes_its_lease() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tutti.db");
        let writer = Writer::spawn(Box::new(SqliteStore::open(&path).expect("store"))).expect("writer");
        let platform = Arc::new(TestPlatform::default());
        let holder = platform.lease_holder();
        let mut journal = JournalBuffer::new("new".into(), writer, Faults::default(), platform);
        journal.create_with_first_commit(run_created(), holder.clone(), 10_000);
        journal.record(log("a"));
        let store = SqliteStore::open(&path).expect("store");
        assert!(store.run(&"new".into()).expect("run").is_none(), "nothing is written before the first commit");
        journal.submit().expect("submit");
        assert_eq!(journal.commits(), 1, "the run, its lease and the event in one commit");
        assert_eq!(store.read(&"new".into(), 0).expect("read").len(), 2);
        assert_eq!(store.lease(&"new".into(), 0).expect("lease"), Some(holder));
        journal.record(log("b"));
        journal.flush().expect("flush");
        assert_eq!(store.read(&"new".into(), 0).expect("read").len(), 3, "later commits append");
    }

    #[test]
    fn flushing_nothing_commits_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut journal, _store) = buffer(&dir);
        journal.flush().expect("flush");
        journal.flush().expect("flush");
        assert_eq!(journal.commits(), 0);
    }
}
