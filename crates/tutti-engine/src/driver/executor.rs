//! The local executor: starts harness attempts, holds their handles, says which ones are past their
//! timeout, and stops them — at once when cancelled, and for good (killing what is left after a grace) when
//! the driver lets go. Harnesses report back on the dispatcher's channel, as [`Msg`]s.

use crate::hash::HashMap;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use tutti_journal::EffectId;

use super::Msg;
use crate::harness::{Error, Harness, Job, Reporter, Running};
use crate::platform::Platform;

/// One attempt that is running.
struct Attempt {
    handle: Box<dyn Running>,
    started: Instant,
    deadline: Option<Instant>,
}

pub(crate) struct Executor {
    tx: Sender<Msg>,
    /// Harness starts so far, and the one after which a crash test kills the driver.
    starts: u64,
    crash_after: Option<(u64, Arc<dyn Platform>)>,
    running: HashMap<EffectId, Attempt>,
    /// Attempts told to stop (cancelled, timed out) whose process trees may still be exiting.
    stopping: Vec<Box<dyn Running>>,
}

impl Executor {
    /// An executor reporting on `tx`. With the `fault-injection` feature, `crash_after` kills the driver (as
    /// SIGKILL would) right after that many starts returned, before anything else happens.
    pub(crate) fn new(tx: Sender<Msg>, crash_after: Option<(u64, Arc<dyn Platform>)>) -> Self {
        let crash_after = crash_after.filter(|_| cfg!(feature = "fault-injection"));
        Self { tx, starts: 0, crash_after, running: HashMap::default(), stopping: Vec::new() }
    }

    /// A sender on the dispatcher's channel, for other sources of messages.
    pub(crate) fn sender(&self) -> Sender<Msg> {
        self.tx.clone()
    }

    /// Start `job` on `harness`; returns the attempt's process (group) id, if it has one.
    pub(crate) fn start(&mut self, harness: &dyn Harness, job: Job) -> Result<Option<u32>, Error> {
        let (effect, attempt, timeout) = (job.effect.clone(), job.attempt, job.timeout);
        let reporter = Reporter::new(effect.clone(), attempt, self.tx.clone());
        let handle = harness.start(job, reporter)?;
        self.starts += 1;
        if let Some((_, platform)) = self.crash_after.as_ref().filter(|(n, _)| *n == self.starts) {
            platform.crash();
        }
        let pid = handle.pid();
        let started = Instant::now();
        self.running.insert(effect, Attempt { handle, started, deadline: timeout.map(|t| started + t) });
        Ok(pid)
    }

    /// The attempt of `id` reported its outcome: forget it. Returns how long it ran.
    pub(crate) fn finished(&mut self, id: &EffectId) -> Option<Duration> {
        self.running.remove(id).map(|a| a.started.elapsed())
    }

    /// Stop the attempt of `id` (its whole process tree: a polite signal, a forced kill after a grace) and
    /// keep watching it until it is gone. Returns how long it ran.
    pub(crate) fn stop(&mut self, id: &EffectId) -> Option<Duration> {
        let mut attempt = self.running.remove(id)?;
        attempt.handle.cancel();
        self.stopping.push(attempt.handle);
        Some(attempt.started.elapsed())
    }

    /// Attempts past their timeout at `now`, by effect id, with how long they ran.
    pub(crate) fn expired(&self, now: Instant) -> Vec<(EffectId, Duration)> {
        let mut due: Vec<(EffectId, Duration)> = self
            .running
            .iter()
            .filter(|(_, a)| a.deadline.is_some_and(|d| d <= now))
            .map(|(id, a)| (id.clone(), a.started.elapsed()))
            .collect();
        due.sort();
        due
    }

    /// The nearest timeout, if any attempt has one.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.running.values().filter_map(|a| a.deadline).min()
    }

    /// Forget stopped attempts that are gone.
    pub(crate) fn sweep(&mut self) {
        self.stopping.retain_mut(|h| !h.wait_stopped(Duration::ZERO));
    }

    /// Wait up to `grace` for stopped attempts to exit, then force what is left: nothing tutti started
    /// outlives the driver. Running attempts must have been stopped first.
    pub(crate) fn reap(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        for mut handle in std::mem::take(&mut self.stopping) {
            if !handle.wait_stopped(deadline.saturating_duration_since(Instant::now())) {
                handle.force_stop();
                handle.wait_stopped(Duration::from_millis(500));
            }
        }
    }
}
