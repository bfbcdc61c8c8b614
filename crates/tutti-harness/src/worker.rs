//! Distributed mode, the worker's side (`tutti worker`): claim attempts of the harnesses this machine has
//! from the work queue, up to a capacity, run them with the local harness, keep their claims alive with
//! heartbeats, and complete each with the claim's token. A claim taken over by another worker (this one
//! stalled past its lease) or withdrawn by its driver is stopped; its late result is refused by the queue. On
//! shutdown the worker drains: it claims nothing new and finishes what runs. It journals nothing: the
//! run's driver does, from what the queue tells it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use tutti_engine::Harnesses;
use tutti_engine::driver::Msg;
use tutti_engine::harness::{Failure, HarnessEvent, Reporter, Running};
use tutti_journal::{Claim, ErrorInfo, Listen, PgWorkQueue, WorkQueue, WorkerInfo};

use crate::remote::{WireEvent, WireJob, WireOutcome, WireReport};

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    pub url: String,
    /// Unique among workers: `HOST-PID` unless given.
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// Attempts run at once, at most.
    pub capacity: u32,
    /// How long a claim lives without a heartbeat; heartbeats come three times as often.
    pub lease: Duration,
    /// Where attempts run (the worker's project folder).
    pub workdir: PathBuf,
    /// Variables every attempt's subprocess gets (how its agent reaches the journal).
    pub env: Vec<(String, String)>,
}

/// What a worker did, for its log.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkerEvent {
    Registered {
        harnesses: Vec<String>,
    },
    Claimed {
        run: String,
        effect: String,
        harness: String,
        previous: Option<String>,
    },
    Completed {
        run: String,
        effect: String,
        ok: bool,
    },
    /// The queue refused the result: the claim was taken over or withdrawn meanwhile.
    Refused {
        run: String,
        effect: String,
    },
    /// The claim is no longer ours (taken over, withdrawn): the attempt was stopped.
    Lost {
        run: String,
        effect: String,
    },
    Draining {
        running: usize,
    },
    /// The journal could not be reached; the worker keeps what runs and connects again.
    Disconnected {
        error: String,
    },
    Reconnected,
}

/// A message to the worker's loop.
enum Event {
    /// From the harness running claim `id`.
    Harness(i64, HarnessEvent),
    /// Work may have been offered.
    Offered,
}

/// An attempt this worker runs.
struct Active {
    claim: Claim,
    handle: Box<dyn Running>,
    report: WireReport,
    session: Option<String>,
    /// Its finished report, when the queue could not be reached to take it: sent again on reconnecting,
    /// while heartbeats keep the claim.
    unsent: Option<serde_json::Value>,
}

/// What the worker holds across its loop and its reconnections.
#[derive(Default)]
struct Held {
    active: HashMap<i64, Active>,
    /// Attempts told to stop, until they are gone.
    stopping: Vec<Box<dyn Running>>,
    draining: bool,
}

pub struct Worker {
    opts: WorkerOptions,
    harnesses: Harnesses,
    names: Vec<String>,
}

impl Worker {
    /// A worker running `names` (each a harness of `harnesses`).
    pub fn new(opts: WorkerOptions, harnesses: Harnesses, names: Vec<String>) -> Self {
        Self { opts, harnesses, names }
    }

    /// Work until `shutdown` turns true, then drain and leave the registry. When the journal cannot be
    /// reached, the worker keeps what runs and connects again every second: claims it heartbeats in time stay
    /// its own, and results it could not hand over are handed over then. Shut down during an outage, it stops
    /// what runs (other workers take it over once its claims expire) and returns the error.
    pub fn run(self, shutdown: Arc<AtomicBool>, log: &mut dyn FnMut(WorkerEvent)) -> Result<(), tutti_journal::Error> {
        let mut queue = PgWorkQueue::open(&self.opts.url, Listen::Offers)?;
        let (tx, rx) = mpsc::channel();
        listen_for_offers(&self.opts.url, tx.clone())?;
        let mut held = Held::default();
        let mut first = true;
        let result = loop {
            let Err(error) = self.work(&mut queue, (&tx, &rx), &mut held, &shutdown, first, log) else { break Ok(()) };
            first = false;
            log(WorkerEvent::Disconnected { error: format!("{error}: {}", cause_of(&error)) });
            match self.reconnect(&shutdown) {
                Some(again) => queue = again,
                None => break Err(error),
            }
        };
        if result.is_err() {
            for (_, mut a) in held.active.drain() {
                a.handle.cancel();
                held.stopping.push(a.handle);
            }
        }
        for mut handle in held.stopping {
            if !handle.wait_stopped(Duration::from_secs(2)) {
                handle.force_stop();
            }
        }
        result
    }

    /// Connect to the queue again, every second, until it answers (`None`: shut down meanwhile).
    fn reconnect(&self, shutdown: &AtomicBool) -> Option<PgWorkQueue> {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            if shutdown.load(Ordering::SeqCst) {
                return None;
            }
            if let Ok(queue) = PgWorkQueue::open(&self.opts.url, Listen::Offers) {
                return Some(queue);
            }
        }
    }

    /// The worker's loop: claim, collect results, heartbeat, wait.
    fn work(
        &self,
        queue: &mut PgWorkQueue,
        (tx, rx): (&Sender<Event>, &Receiver<Event>),
        held: &mut Held,
        shutdown: &AtomicBool,
        first: bool,
        log: &mut dyn FnMut(WorkerEvent),
    ) -> Result<(), tutti_journal::Error> {
        let beat = self.opts.lease / 3;
        let mut last_beat = Instant::now();
        self.heartbeat(queue, held, log)?;
        self.send_unsent(queue, held, log)?;
        if first {
            log(WorkerEvent::Registered { harnesses: self.names.clone() });
        } else {
            log(WorkerEvent::Reconnected);
        }
        loop {
            if shutdown.load(Ordering::SeqCst) && !held.draining {
                held.draining = true;
                log(WorkerEvent::Draining { running: held.active.len() });
                self.heartbeat(queue, held, log)?;
            }
            if held.draining && held.active.is_empty() {
                queue.unregister(&self.opts.id)?;
                return Ok(());
            }
            while !held.draining && held.active.len() < self.opts.capacity as usize {
                let names = self.claimable(&held.active);
                if names.is_empty() {
                    break;
                }
                let Some(claim) = queue.claim(&self.opts.id, &names, now_ms(), self.lease_ms())? else { break };
                log(WorkerEvent::Claimed {
                    run: claim.run.clone(),
                    effect: claim.effect.to_string(),
                    harness: claim.harness.clone(),
                    previous: claim.previous.clone(),
                });
                if let Some((id, outcome)) = self.start(claim, tx, &mut held.active) {
                    self.finish(queue, &mut held.active, id, outcome, log)?;
                }
            }
            // Results first: one that arrived while this worker stalled is offered to the queue, which
            // refuses it if the claim moved on, before a heartbeat would find the claim lost.
            while let Ok(event) = rx.try_recv() {
                if let Event::Harness(id, event) = event {
                    self.harness_event(queue, &mut held.active, id, event, log)?;
                }
            }
            if last_beat.elapsed() >= beat {
                last_beat = Instant::now();
                self.heartbeat(queue, held, log)?;
                held.stopping.retain_mut(|h| !h.wait_stopped(Duration::ZERO));
            }
            match rx.recv_timeout(beat.saturating_sub(last_beat.elapsed()).max(Duration::from_millis(10))) {
                Ok(Event::Harness(id, event)) => self.harness_event(queue, &mut held.active, id, event, log)?,
                Ok(Event::Offered) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }

    /// Hand over the results the queue could not take before.
    fn send_unsent(
        &self,
        queue: &mut PgWorkQueue,
        held: &mut Held,
        log: &mut dyn FnMut(WorkerEvent),
    ) -> Result<(), tutti_journal::Error> {
        let ids: Vec<i64> = held.active.iter().filter(|(_, a)| a.unsent.is_some()).map(|(id, _)| *id).collect();
        for id in ids {
            self.hand_over(queue, &mut held.active, id, log)?;
        }
        Ok(())
    }

    /// Complete claim `id` with its finished report, under its token. While the queue cannot be reached the
    /// attempt stays, report and all, with its claim heartbeated, until it can.
    fn hand_over(
        &self,
        queue: &mut PgWorkQueue,
        active: &mut HashMap<i64, Active>,
        id: i64,
        log: &mut dyn FnMut(WorkerEvent),
    ) -> Result<(), tutti_journal::Error> {
        let Some(a) = active.get(&id) else { return Ok(()) };
        let report = a.unsent.clone().unwrap_or_default();
        let accepted = queue.complete(id, a.claim.token, &self.opts.id, &report, a.session.as_deref())?;
        if let Some(a) = active.remove(&id) {
            let (run, effect) = (a.claim.run, a.claim.effect.to_string());
            let ok = matches!(a.report.outcome, Some(WireOutcome::Ok(_)));
            log(if accepted {
                WorkerEvent::Completed { run, effect, ok }
            } else {
                WorkerEvent::Refused { run, effect }
            });
        }
        Ok(())
    }

    /// The harnesses this worker can take one more attempt of now: within the harness's own limit
    /// (`max_parallel`), and, for one that says how much memory an attempt takes (an agent CLI), only while
    /// the machine has that much available.
    fn claimable(&self, active: &HashMap<i64, Active>) -> Vec<String> {
        use tutti_engine::Platform;
        let mut free_mb = None;
        self.names
            .iter()
            .filter(|name| {
                let Some(harness) = self.harnesses.get(name) else { return false };
                let running = active.values().filter(|a| &a.claim.harness == *name).count();
                if harness.max_parallel().is_some_and(|max| running >= max) {
                    return false;
                }
                match harness.memory_per_attempt_mb() {
                    Some(need) => {
                        let free = *free_mb.get_or_insert_with(|| crate::LinuxPlatform.available_memory_mb());
                        free.is_none_or(|free| free >= need)
                    }
                    None => true,
                }
            })
            .cloned()
            .collect()
    }

    fn lease_ms(&self) -> i64 {
        self.opts.lease.as_millis() as i64
    }

    /// Start a claimed attempt; the outcome at once when it cannot start.
    fn start(
        &self,
        claim: Claim,
        tx: &Sender<Event>,
        active: &mut HashMap<i64, Active>,
    ) -> Option<(i64, tutti_engine::Outcome)> {
        let id = claim.id;
        let mut wire: WireJob = match serde_json::from_value(claim.job.clone()) {
            Ok(job) => job,
            Err(e) => return Some((id, Err(Failure::Task(ErrorInfo::new("WorkerError", format!("bad job: {e}")))))),
        };
        let mut report = WireReport::default();
        if let (Some(holder), Some(session)) = (&claim.session_holder, &wire.session) {
            report.events.push(WireEvent::Note(format!(
                "session {session} lived on worker {holder}, which is gone: this turn starts a fresh session on \
                 worker {}",
                self.opts.id
            )));
            wire.session = None;
        }
        let Some(harness) = self.harnesses.get(&claim.harness).cloned() else {
            let e = ErrorInfo::new(
                "HarnessUnavailable",
                format!("worker {} has no harness {}", self.opts.id, claim.harness),
            );
            return Some((id, Err(Failure::Unavailable(e))));
        };
        let job = wire.into_job(&self.opts.workdir, self.opts.env.clone());
        let reporter = Reporter::new(job.effect.clone(), job.attempt, forward(id, tx.clone()));
        match harness.start(job, reporter) {
            Ok(handle) => {
                active.insert(id, Active { claim, handle, report, session: None, unsent: None });
                None
            }
            Err(e) => {
                active.insert(id, Active { claim, handle: Box::new(Gone), report, session: None, unsent: None });
                Some((id, Err(Failure::Task(ErrorInfo::new("SpawnError", format!("{e:#}"))))))
            }
        }
    }

    fn harness_event(
        &self,
        queue: &mut PgWorkQueue,
        active: &mut HashMap<i64, Active>,
        id: i64,
        event: HarnessEvent,
        log: &mut dyn FnMut(WorkerEvent),
    ) -> Result<(), tutti_journal::Error> {
        let Some(a) = active.get_mut(&id) else { return Ok(()) };
        let wire = match event {
            HarnessEvent::Finished { outcome, .. } => return self.finish(queue, active, id, outcome, log),
            HarnessEvent::Session { session, .. } => {
                a.session = Some(session.clone());
                WireEvent::Session(session)
            }
            HarnessEvent::Usage { usage, .. } => WireEvent::Usage(usage),
            HarnessEvent::Transcript { stdout, stderr, .. } => WireEvent::Transcript { stdout, stderr },
            HarnessEvent::Progress { message, .. } => WireEvent::Progress(message),
            HarnessEvent::Note { message, .. } => WireEvent::Note(message),
            HarnessEvent::Worktree { path, branch, .. } => WireEvent::Worktree { path, branch },
            HarnessEvent::Claimed { .. } => return Ok(()),
        };
        a.report.events.push(wire);
        Ok(())
    }

    /// Complete claim `id` with `outcome`, under its token.
    fn finish(
        &self,
        queue: &mut PgWorkQueue,
        active: &mut HashMap<i64, Active>,
        id: i64,
        outcome: tutti_engine::Outcome,
        log: &mut dyn FnMut(WorkerEvent),
    ) -> Result<(), tutti_journal::Error> {
        let Some(a) = active.get_mut(&id) else { return Ok(()) };
        a.report.outcome = Some(WireOutcome::of(outcome));
        a.unsent = Some(serde_json::to_value(&a.report).map_err(tutti_journal::Error::Encode)?);
        self.hand_over(queue, active, id, log)
    }

    /// Register alive and extend our claims; stop the attempts whose claims are no longer ours.
    fn heartbeat(
        &self,
        queue: &mut PgWorkQueue,
        held: &mut Held,
        log: &mut dyn FnMut(WorkerEvent),
    ) -> Result<(), tutti_journal::Error> {
        let (active, stopping, draining) = (&mut held.active, &mut held.stopping, held.draining);
        let me = WorkerInfo {
            id: self.opts.id.clone(),
            host: self.opts.host.clone(),
            pid: self.opts.pid,
            harnesses: self.names.clone(),
            capacity: self.opts.capacity,
            running: active.len() as u32,
            heartbeat_ms: now_ms(),
            draining,
        };
        let claims: Vec<(i64, i64)> = active.iter().map(|(id, a)| (*id, a.claim.token)).collect();
        let kept = queue.heartbeat(&me, &claims, now_ms(), self.lease_ms())?;
        for ((id, _), ours) in claims.iter().zip(kept) {
            if !ours && let Some(mut a) = active.remove(id) {
                a.handle.cancel();
                log(WorkerEvent::Lost { run: a.claim.run.clone(), effect: a.claim.effect.to_string() });
                stopping.push(a.handle);
            }
        }
        Ok(())
    }
}

/// A sender for a harness's [`Reporter`] that forwards its events to the worker's loop, marked with the
/// claim: two runs may have effects of the same id on one worker. The forwarding thread ends with the
/// attempt's last reporter.
fn forward(id: i64, tx: Sender<Event>) -> Sender<Msg> {
    let (to_worker, from_harness): (Sender<Msg>, Receiver<Msg>) = mpsc::channel();
    let spawned = std::thread::Builder::new().name("tutti-claim".into()).spawn(move || {
        for msg in from_harness {
            if let Msg::Harness(event) = msg
                && tx.send(Event::Harness(id, event)).is_err()
            {
                return;
            }
        }
    });
    // Without the thread, events go nowhere and the attempt's lease runs out: another worker takes it.
    drop(spawned);
    to_worker
}

/// A thread that wakes the loop when work is offered (on a connection of its own).
/// A lost connection is opened again every second; meanwhile the loop still claims at every heartbeat.
fn listen_for_offers(url: &str, tx: Sender<Event>) -> Result<(), tutti_journal::Error> {
    let mut queue = PgWorkQueue::open(url, Listen::Offers)?;
    let url = url.to_string();
    std::thread::Builder::new()
        .name("tutti-offers".into())
        .spawn(move || {
            loop {
                match queue.wait_for_work(Duration::from_secs(1)) {
                    Ok(true) if tx.send(Event::Offered).is_err() => return,
                    Ok(_) => {}
                    Err(_) => loop {
                        std::thread::sleep(Duration::from_secs(1));
                        if let Ok(again) = PgWorkQueue::open(&url, Listen::Offers) {
                            queue = again;
                            break;
                        }
                    },
                }
            }
        })
        .map_err(tutti_journal::Error::Spawn)?;
    Ok(())
}

/// The innermost cause of a journal error, for the log line.
fn cause_of(error: &tutti_journal::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// An attempt that never started.
struct Gone;

impl Running for Gone {
    fn pid(&self) -> Option<u32> {
        None
    }
    fn cancel(&mut self) {}
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use tutti_engine::Harness;
    use tutti_engine::harness::{Error, Job};

    use super::*;

    /// A harness that only says how much an attempt takes.
    struct Needs {
        name: &'static str,
        memory_mb: Option<u64>,
        max: Option<usize>,
    }

    impl Harness for Needs {
        fn name(&self) -> &str {
            self.name
        }
        fn max_parallel(&self) -> Option<usize> {
            self.max
        }
        fn memory_per_attempt_mb(&self) -> Option<u64> {
            self.memory_mb
        }
        fn start(&self, _: Job, _: Reporter) -> Result<Box<dyn Running>, Error> {
            Ok(Box::new(Gone))
        }
    }

    fn worker() -> Worker {
        let mut harnesses = Harnesses::new();
        harnesses.add(Arc::new(Needs { name: "small", memory_mb: Some(1), max: None }));
        harnesses.add(Arc::new(Needs { name: "huge", memory_mb: Some(u64::MAX), max: None }));
        harnesses.add(Arc::new(Needs { name: "one-at-a-time", memory_mb: None, max: Some(1) }));
        let opts = WorkerOptions {
            url: String::new(),
            id: "w".into(),
            host: "h".into(),
            pid: 1,
            capacity: 8,
            lease: Duration::from_secs(3),
            workdir: PathBuf::from("/"),
            env: Vec::new(),
        };
        let names = ["small", "huge", "one-at-a-time"].map(String::from).to_vec();
        Worker::new(opts, harnesses, names)
    }

    fn running(harness: &str) -> Active {
        let claim = Claim {
            id: 1,
            token: 1,
            run: "r".into(),
            effect: "root/0".into(),
            attempt: 1,
            harness: harness.into(),
            job: serde_json::Value::Null,
            previous: None,
            session_holder: None,
        };
        Active { claim, handle: Box::new(Gone), report: WireReport::default(), session: None, unsent: None }
    }

    #[test]
    fn a_worker_claims_only_what_its_memory_and_the_harness_limits_admit() {
        let w = worker();
        assert_eq!(w.claimable(&HashMap::new()), ["small", "one-at-a-time"], "no machine has u64::MAX MB free");
        let busy = HashMap::from([(1, running("one-at-a-time"))]);
        assert_eq!(w.claimable(&busy), ["small"], "one-at-a-time runs one already");
    }
}
