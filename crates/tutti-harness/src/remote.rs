//! Distributed mode, the driver's side: [`Remote`] stands in for a harness and offers each attempt to the work
//! queue instead of running it; one [`RemoteExecutor`] per run waits for workers to claim and complete them
//! and reports back through each attempt's [`Reporter`], as a local harness would. Also the wire forms of a
//! job and of a worker's report, which `worker.rs` reads and writes. It holds no journal state: the driver
//! journals what it is told.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tutti_engine::harness::{Error, Failure, Inbound, Job, Outcome, Reporter, Running};
use tutti_engine::{Harness, Kind};
use tutti_journal::{ErrorInfo, Listen, Offer, PgWorkQueue, Usage, WorkQueue, WorkState};

/// A job as it travels to a worker. The worker runs it in its own folder, with its own environment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct WireJob {
    pub run_id: String,
    pub effect: String,
    pub attempt: u32,
    pub task_id: String,
    pub kind: String,
    pub title: Option<String>,
    pub task: Value,
    pub args: Value,
    pub timeout_ms: Option<u64>,
    /// Messages for this turn, `(from, body)`, oldest first.
    pub messages: Vec<(String, Value)>,
    pub session: Option<String>,
}

impl WireJob {
    pub fn of(job: &Job) -> Self {
        Self {
            run_id: job.run_id.clone(),
            effect: job.effect.to_string(),
            attempt: job.attempt,
            task_id: job.task_id.clone(),
            kind: job.kind.as_str().to_string(),
            title: job.title.clone(),
            task: job.task.clone(),
            args: job.args.clone(),
            timeout_ms: job.timeout.map(|t| t.as_millis() as u64),
            messages: job.messages.iter().map(|m| (m.from.clone(), m.body.clone())).collect(),
            session: job.session.clone(),
        }
    }

    /// The job to run on a worker in `workdir`, with `env` for its subprocess.
    pub fn into_job(self, workdir: &std::path::Path, env: Vec<(String, String)>) -> Job {
        Job {
            run_id: self.run_id,
            effect: self.effect.as_str().into(),
            attempt: self.attempt,
            task_id: self.task_id,
            kind: Kind::parse(&self.kind),
            title: self.title,
            task: self.task,
            args: self.args,
            workdir: workdir.to_path_buf(),
            project: workdir.to_path_buf(),
            timeout: self.timeout_ms.map(Duration::from_millis),
            env,
            messages: self.messages.into_iter().map(|(from, body)| Inbound { from, body }).collect(),
            session: self.session,
        }
    }
}

/// What a worker reports for one attempt: what the harness said along the way, in order, then its outcome.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct WireReport {
    pub events: Vec<WireEvent>,
    pub outcome: Option<WireOutcome>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum WireEvent {
    Session(String),
    Usage(Usage),
    Transcript { stdout: String, stderr: String },
    Progress(String),
    Note(String),
    Worktree { path: String, branch: String },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum WireOutcome {
    Ok(Value),
    Unavailable(ErrorInfo),
    Output { error: ErrorInfo, raw: Value },
    Task(ErrorInfo),
}

impl WireOutcome {
    pub fn of(outcome: Outcome) -> Self {
        match outcome {
            Ok(value) => Self::Ok(value),
            Err(Failure::Unavailable(e)) => Self::Unavailable(e),
            Err(Failure::Output { error, raw }) => Self::Output { error, raw },
            Err(Failure::Task(e)) => Self::Task(e),
        }
    }

    fn into_outcome(self) -> Outcome {
        match self {
            Self::Ok(value) => Ok(value),
            Self::Unavailable(e) => Err(Failure::Unavailable(e)),
            Self::Output { error, raw } => Err(Failure::Output { error, raw }),
            Self::Task(e) => Err(Failure::Task(e)),
        }
    }
}

impl WireReport {
    /// Hand the report to `reporter`, as the harness on the worker would have.
    fn deliver(self, reporter: Reporter) {
        for event in self.events {
            match event {
                WireEvent::Session(s) => reporter.session(s),
                WireEvent::Usage(u) => reporter.usage(u),
                WireEvent::Transcript { stdout, stderr } => reporter.transcript(stdout, stderr),
                WireEvent::Progress(m) => reporter.progress(m),
                WireEvent::Note(m) => reporter.note(m),
                WireEvent::Worktree { path, branch } => reporter.worktree(path, branch),
            }
        }
        let outcome = match self.outcome {
            Some(o) => o.into_outcome(),
            None => Err(Failure::Task(ErrorInfo::new("WorkerError", "the worker reported no outcome"))),
        };
        reporter.finish(outcome);
    }
}

/// An attempt offered and not yet completed.
struct Pending {
    reporter: Reporter,
    /// Claims reported to the driver so far.
    claims: u32,
}

/// How often the executor looks at its attempts when no notification came (leases that expired with no
/// worker to notice, a lost notification).
const POLL: Duration = Duration::from_millis(500);

/// The driver's link to the work queue: offers attempts, and a thread that reports their claims and results.
pub struct RemoteExecutor {
    offers: Mutex<PgWorkQueue>,
    pending: Arc<Mutex<HashMap<i64, Pending>>>,
    stop: Arc<AtomicBool>,
}

impl RemoteExecutor {
    /// Connects to the queue of the journal at `url` for `run`, and starts the thread that watches it.
    pub fn start(url: &str, run: &str) -> Result<Arc<Self>, tutti_journal::Error> {
        let run_id = run.to_string();
        let offers = PgWorkQueue::open(url, Listen::Offers)?;
        let watch = PgWorkQueue::open(url, Listen::Run(&run_id))?;
        let pending: Arc<Mutex<HashMap<i64, Pending>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s, url) = (Arc::clone(&pending), Arc::clone(&stop), url.to_string());
        std::thread::Builder::new()
            .name("tutti-remote".into())
            .spawn(move || watch_queue(watch, &url, &run_id, &p, &s))
            .map_err(tutti_journal::Error::Spawn)?;
        Ok(Arc::new(Self { offers: Mutex::new(offers), pending, stop }))
    }

    fn offer(&self, harness: &str, job: &Job, reporter: Reporter) -> Result<i64, Error> {
        let offer = Offer {
            run: job.run_id.clone(),
            effect: job.effect.clone(),
            attempt: job.attempt,
            harness: harness.to_string(),
            job: serde_json::to_value(WireJob::of(job)).map_err(|e| Error::Invalid(e.to_string()))?,
            session: job.session.clone(),
        };
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let id = self
            .offers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .offer(&offer)
            .map_err(|e| Error::Invalid(format!("cannot offer {} to workers: {e}", job.effect)))?;
        pending.insert(id, Pending { reporter, claims: 0 });
        Ok(id)
    }

    fn withdraw(&self, id: i64) {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        // Best effort: a withdrawal that fails leaves a result nobody waits for.
        let _ = self.offers.lock().unwrap_or_else(PoisonError::into_inner).withdraw(id);
    }
}

impl Drop for RemoteExecutor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Watch the queue for the run's attempts until `stop`. A lost connection is opened again (every second
/// while the server cannot be reached): what happened meanwhile is still in the queue, so nothing is missed.
fn watch_queue(
    mut watch: PgWorkQueue,
    url: &str,
    run: &String,
    pending: &Mutex<HashMap<i64, Pending>>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        if watch.wait_for_work(POLL).is_ok() && look(&mut watch, pending).is_ok() {
            continue;
        }
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
            if let Ok(again) = PgWorkQueue::open(url, Listen::Run(run)) {
                watch = again;
                break;
            }
        }
    }
}

/// Report what changed for the pending attempts: new claims, and results (which end them).
fn look(queue: &mut PgWorkQueue, pending: &Mutex<HashMap<i64, Pending>>) -> Result<(), tutti_journal::Error> {
    let ids: Vec<i64> = pending.lock().unwrap_or_else(PoisonError::into_inner).keys().copied().collect();
    if ids.is_empty() {
        return Ok(());
    }
    for (id, state) in queue.work_states(&ids)? {
        let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(p) = pending.get_mut(&id) else { continue };
        let (worker, claims, previous) = match &state {
            WorkState::Claimed { worker, claims, previous } | WorkState::Done { worker, claims, previous, .. } => {
                (worker.clone(), *claims, previous.clone())
            }
            WorkState::Queued | WorkState::Withdrawn => continue,
        };
        if claims > p.claims {
            p.claims = claims;
            p.reporter.claimed(worker, claims, if claims > 1 { previous } else { None });
        }
        if let WorkState::Done { outcome, .. } = state
            && let Some(p) = pending.remove(&id)
        {
            let report: WireReport = serde_json::from_value(outcome).unwrap_or_else(|e| WireReport {
                events: Vec::new(),
                outcome: Some(WireOutcome::Task(ErrorInfo::new("WorkerError", format!("unreadable report: {e}")))),
            });
            report.deliver(p.reporter);
        }
    }
    Ok(())
}

/// A harness of the run whose attempts run on workers: it keeps the harness's name and what routing and
/// retries read of it, and offers each job to the queue.
pub struct Remote {
    inner: Arc<dyn Harness>,
    executor: Arc<RemoteExecutor>,
}

impl Remote {
    pub fn new(inner: Arc<dyn Harness>, executor: Arc<RemoteExecutor>) -> Self {
        Self { inner, executor }
    }
}

/// An attempt on a worker: cancelling it withdraws it from the queue.
struct Offered {
    id: i64,
    executor: Arc<RemoteExecutor>,
    withdrawn: bool,
}

impl Running for Offered {
    fn pid(&self) -> Option<u32> {
        None
    }

    fn cancel(&mut self) {
        if !self.withdrawn {
            self.withdrawn = true;
            self.executor.withdraw(self.id);
        }
    }
}

impl Harness for Remote {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn retry(&self) -> Option<Value> {
        self.inner.retry()
    }
    fn max_parallel(&self) -> Option<usize> {
        self.inner.max_parallel()
    }
    fn capabilities(&self) -> Vec<String> {
        self.inner.capabilities()
    }
    /// Workers run it, whatever this machine has installed.
    fn availability(&self) -> Result<(), String> {
        Ok(())
    }
    fn version(&self) -> Option<String> {
        self.inner.version()
    }
    fn start(&self, job: Job, reporter: Reporter) -> Result<Box<dyn Running>, Error> {
        if job.workdir != job.project {
            return Err(Error::Invalid(format!(
                "{}: worktree isolation runs on the driver's machine, not on workers: run it without --remote",
                job.effect
            )));
        }
        let id = self.executor.offer(self.inner.name(), &job, reporter)?;
        Ok(Box::new(Offered { id, executor: Arc::clone(&self.executor), withdrawn: false }))
    }
}
