//! The dispatcher: one actor per run that alone owns the run's state. It steps the process host, journals
//! every request and result, decides what is ready and where it runs, and feeds results back the moment they
//! arrive — no batch barrier. Its parts are owned types: the journal buffer (`journal.rs`: record, submit,
//! confirm, flush), the scheduler (`scheduler.rs`: queue, limits, memory admission) and the local executor
//! (`executor.rs`: starts attempts, holds their handles, timeouts, stopping). The rest of its work is split by
//! topic over `impl Driver` blocks: effects (`effects.rs`), groups, messages and sessions (`members.rs`),
//! control commands and the lease (`control.rs`), resume (`resume.rs`) and the run's end (`end.rs`). Harness
//! threads talk to it only through its channel, as [`Msg`]s.
//!
//! Durability follows the output-commit rule: everything the process did is committed in one transaction
//! before anything leaves the driver (a subprocess starts, the driver waits, the run ends). A sequential
//! step therefore costs one commit; results that arrive together share one.
//!
//! A step never re-enters the process host: resolving an effect journals it and queues a notice; the loop
//! hands notices to the host one at a time, in journal order, and acts on what each one wakes.

mod budgets;
mod changes;
mod control;
mod effects;
mod end;
mod executor;
mod journal;
mod members;
mod resume;
mod retries;
pub(crate) mod scheduler;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::VecDeque;

use crate::hash::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tutti_journal::{
    Command, EffectId, ErrorInfo, Event, LeaseHolder, LeaseOutcome, NewEvent, Outcome, Payload, Record, RunId,
    RunStatus, Store, WriterHandle,
};

use crate::effect::{Effect, Phase, State};
use crate::error::{Error, Nondeterminism};
use crate::harness::{Failure, HarnessEvent};
use crate::host::{EffectRequest, HostError, HostEvent, ProcessHost};
use crate::identity::{digest, seed};
use crate::kind::Kind;
use crate::observer::{Observer, Progress};
use crate::platform::Platform;
use crate::registry::Harnesses;
use crate::replay::{self, Replay, Verdict};
use executor::Executor;
use journal::JournalBuffer;
use scheduler::Scheduler;

pub use changes::Changes;

const LEASE_TTL_MS: i64 = 10_000;
/// The most host events of a process's first step that share the run's first commit (see `Driver::create`).
const FIRST_COMMIT_MAX: usize = 64;
const LEASE_RENEW: Duration = Duration::from_secs(2);
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// How long attempts' starts may wait in the buffer for the next commit before they get one of their own
/// (so that `tutti status` shows a long attempt as running almost at once).
const LAZY_COMMIT: Duration = Duration::from_millis(20);
/// How long stopped attempts get to exit on their own when the run ends, before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A message to the dispatcher.
#[derive(Debug)]
pub enum Msg {
    Harness(HarnessEvent),
    /// Commands may have been queued for the run (the journal pushed word of them).
    Commands,
}

/// How a driver runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub run_id: RunId,
    /// Where subprocess effects start.
    pub workdir: PathBuf,
    /// Most effects running at once, over all harnesses.
    pub max_parallel: usize,
    /// Breakpoints approve themselves.
    pub non_interactive: bool,
    /// `--simulate`: breakpoints approve themselves and sleeps end at once (harnesses are simulated by the
    /// caller).
    pub simulate: bool,
    /// Let go of the run (detached, resumable) as soon as nothing can happen without the outside: every
    /// effect left waits for a person, a posted result or the clock (`tutti iterate`).
    pub until_blocked: bool,
    pub holder: LeaseHolder,
    /// The operating system: host identity, process liveness, free memory, orphans.
    pub platform: Arc<dyn Platform>,
    /// Fault injection for crash tests (the `fault-injection` feature; release builds have none).
    pub faults: Faults,
    /// Variables every subprocess effect gets so that its agent can reach the orchestrator (`TUTTI_HOME`,
    /// a `PATH` with `tutti` on it).
    pub agent_env: Vec<(String, String)>,
    /// The run's secret for message tokens (kept in the run's options).
    pub msg_secret: String,
    /// Why the driver lets go when its shutdown flag turns true (Ctrl-C, a closed terminal), for the journal.
    pub detach_reason: fn() -> &'static str,
    /// Prices per model, for usage whose harness reported tokens but no cost.
    pub prices: crate::prices::Prices,
}

/// Where a crash test kills the driver (with SIGKILL, through [`Platform::crash`]). Without the
/// `fault-injection` feature the driver never looks at it.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Right after the driver's Nth commit.
    pub kill_after_commits: Option<u64>,
    /// Right after the Nth harness start returns, before the start is journaled.
    pub kill_after_starts: Option<u64>,
}

/// How a run ended, or why the driver let go of it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunEnd {
    pub status: RunStatus,
    pub output: Option<Value>,
    pub error: Option<ErrorInfo>,
    /// Set when the driver was interrupted and the run can be resumed.
    pub interrupted: bool,
}

/// What a new run starts from.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub process: String,
    pub inputs: Value,
    pub code_hash: String,
    pub modules: Vec<tutti_journal::event::ModuleHash>,
    pub options: Value,
}

/// How the run ends, once something has ended it. The run's own lifecycle, as a transition table:
///
/// | from | event                                                         | to                    |
/// |------|---------------------------------------------------------------|-----------------------|
/// | live | the process returned or threw                                 | `Finished`            |
/// | live | nothing is running or pending and the process still waits     | `Finished(Deadlock)`  |
/// | live | `ctx.halt`                                                    | `Halted`              |
/// | live | `tutti cancel`                                                | `Cancelled`           |
/// | live | Ctrl-C, a closed terminal, SIGTERM                            | `Interrupted`         |
/// | an end | anything                                                    | unchanged             |
///
/// The first end wins ([`Driver::end_with`]); from any end the driver stops what runs and journals it.
enum End {
    Finished(Result<Value, ErrorInfo>),
    Halted { reason: String, payload: Value },
    Cancelled(String),
    Interrupted(String),
}

/// Something the process must be told, queued by a step and handed over by the loop in journal order.
enum Notice {
    /// Settle the promise of an effect.
    Deliver { effect: EffectId, outcome: Result<Value, ErrorInfo>, ts_ms: i64 },
    /// A message to the coordinator.
    Message { from: String, body: Value, ts_ms: i64 },
}

/// The dispatcher of one run.
pub struct Driver<'a> {
    opts: Options,
    store: Box<dyn Store>,
    harnesses: Harnesses,
    host: &'a mut dyn ProcessHost,
    observer: &'a mut dyn Observer,
    shutdown: Arc<AtomicBool>,
    rx: Receiver<Msg>,
    journal: JournalBuffer,
    scheduler: Scheduler,
    executor: Executor,
    /// Every effect that is still active (queued, running or waiting).
    effects: HashMap<EffectId, Effect>,
    /// What the process must be told next, oldest first.
    notices: VecDeque<Notice>,
    /// Cancellations the process asked for during replay, of effects that must run again.
    deferred_cancels: Vec<EffectId>,
    /// Messages to members that no effect has taken yet.
    mailbox: Vec<crate::replay::Undelivered>,
    /// Members of each group, for `GROUP/*` addresses, and whether the group is persistent.
    groups: HashMap<String, (Vec<String>, bool)>,
    /// Each member's harness session (`GROUP/MEMBER` → id): its next turn resumes it.
    sessions: HashMap<String, String>,
    /// Each isolated member's worktree and branch (`GROUP/MEMBER` → (path, branch)), as journaled.
    member_worktrees: HashMap<String, (String, String)>,
    /// The last session each effect's attempt reported: a corrective turn continues it.
    attempt_sessions: HashMap<EffectId, String>,
    /// Task ids whose invalid output schema was already reported: once per task, not per call.
    warned_schemas: crate::hash::HashSet<String>,
    /// Every budgeted scope's spend, kept from the events this driver records (and, on resume, the journal's).
    ledger: crate::budget::Ledger,
    /// Effects that would fit their budgets once attempts running in the same scope have ended.
    budget_waiting: Vec<EffectId>,
    end: Option<End>,
    /// Stops the thread that hears of commands pushed by the journal, if it has one, when the driver goes.
    _listening: Option<control::StopOnDrop>,
    last_housekeeping: Instant,
    last_renew: Instant,
}

pub(crate) fn wall_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    now.as_millis() as i64
}

impl<'a> Driver<'a> {
    pub fn new(
        opts: Options,
        writer: WriterHandle,
        store: Box<dyn Store>,
        harnesses: Harnesses,
        host: &'a mut dyn ProcessHost,
        observer: &'a mut dyn Observer,
        shutdown: Arc<AtomicBool>,
    ) -> Self {
        let (tx, rx) = mpsc::channel();
        let journal = JournalBuffer::new(opts.run_id.clone(), writer, opts.faults.clone(), Arc::clone(&opts.platform));
        Self {
            scheduler: Scheduler::new(opts.max_parallel),
            executor: Executor::new(tx, opts.faults.kill_after_starts.map(|n| (n, Arc::clone(&opts.platform)))),
            journal,
            opts,
            store,
            harnesses,
            host,
            observer,
            shutdown,
            rx,
            effects: HashMap::default(),
            notices: VecDeque::new(),
            deferred_cancels: Vec::new(),
            mailbox: Vec::new(),
            groups: HashMap::default(),
            sessions: HashMap::default(),
            member_worktrees: HashMap::default(),
            attempt_sessions: HashMap::default(),
            warned_schemas: crate::hash::HashSet::default(),
            ledger: crate::budget::Ledger::default(),
            budget_waiting: Vec::new(),
            end: None,
            _listening: None,
            last_housekeeping: Instant::now(),
            last_renew: Instant::now(),
        }
    }

    /// Create the run, start its process and drive it to its end.
    pub fn create(mut self, new: NewRun) -> Result<RunEnd, Error> {
        let now = wall_ms();
        let created = Event::RunCreated {
            process: new.process,
            inputs: Payload::Inline(new.inputs.clone()),
            code_hash: new.code_hash,
            modules: new.modules,
            options: new.options,
        };
        self.ledger.observe(&created, now);
        let holder = self.opts.holder.clone();
        self.journal.create_with_first_commit(NewEvent { ts_ms: now, event: created }, holder, LEASE_TTL_MS);
        self.record(Event::DriverAttached { holder: self.opts.holder.id.clone(), resumed: false });
        // Announced before the process runs, so that one looping before its first await still shows its id.
        self.observer.progress(Progress::Attached { run_id: self.opts.run_id.clone(), resumed: false, replayed: 0 });
        let started = self.host.start(&self.opts.run_id, &new.inputs, seed(&self.opts.run_id), now);
        // The run's first commit, before anything starts: its creation and lease, and what the process asked
        // for first when that is little (one commit where two would do). A large first step (a fan-out) is
        // committed by the writer while its first effects start.
        let large = started.as_ref().is_ok_and(|events| events.len() > FIRST_COMMIT_MAX);
        if large {
            self.journal.flush()?;
        }
        let applied = started.and_then(|events| self.apply(events));
        if !large {
            self.journal.flush()?;
        }
        self.listen_for_commands()?;
        if let Err(e) = applied {
            return self.host_failed(e);
        }
        self.drive()
    }

    /// End the run with `end`, unless it has ended already (the first end wins); true when this ended it.
    fn end_with(&mut self, end: End) -> bool {
        if self.end.is_some() {
            return false;
        }
        self.end = Some(end);
        true
    }

    fn record(&mut self, event: Event) -> i64 {
        let ts_ms = wall_ms();
        self.ledger.observe(&event, ts_ms);
        self.journal.record_at(event, ts_ms)
    }

    // ---- the loop ----

    fn drive(mut self) -> Result<RunEnd, Error> {
        match self.next_end() {
            Ok(end) => self.finish(end),
            Err(Error::Host(e)) => self.host_failed(e),
            Err(e) => Err(e),
        }
    }

    fn next_end(&mut self) -> Result<End, Error> {
        loop {
            self.settle()?;
            if self.effects.is_empty() {
                let error = ErrorInfo::new(
                    "Deadlock",
                    "the process is waiting, but no effect is running or pending: it awaits a promise that \
                     nothing will settle",
                );
                self.end_with(End::Finished(Err(error)));
            }
            if let Some(end) = self.end.take() {
                return Ok(end);
            }
            let mut idle = false;
            let first = match self.rx.try_recv() {
                Ok(msg) => Some(msg),
                // Only attempts' starts are buffered: they ride with the next commit (a quick attempt's result
                // and the request after it) unless nothing happens for a moment, so a step costs one commit.
                Err(_) if self.journal.holds_only_starts() => {
                    self.rx.recv_timeout(LAZY_COMMIT.min(self.wait_time())).ok()
                }
                Err(_) => None,
            };
            let first = match first {
                Some(msg) => Some(msg),
                None => {
                    self.journal.flush()?;
                    match self.rx.recv_timeout(self.wait_time()) {
                        Ok(msg) => Some(msg),
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                            idle = true;
                            None
                        }
                    }
                }
            };
            if let Some(msg) = first {
                self.handle(msg)?;
                while !self.journal.is_full() {
                    let Ok(msg) = self.rx.try_recv() else { break };
                    self.handle(msg)?;
                }
            }
            if self.journal.is_full() {
                self.journal.submit()?;
            }
            if idle || self.last_housekeeping.elapsed() >= HOUSEKEEPING {
                self.housekeeping()?;
                // Commands were just taken, so a result posted before this driver started has been applied.
                if self.opts.until_blocked && self.blocked() {
                    let waiting = self.effects.len();
                    self.end_with(End::Interrupted(format!("blocked: {waiting} effect(s) wait for the outside")));
                }
            }
        }
    }

    /// Tell the process what happened, then start what may start, until neither leaves anything to do. The
    /// process hears first: what it gives up on (a decided fan-in) must not start in a slot just freed.
    fn settle(&mut self) -> Result<(), Error> {
        loop {
            self.tell()?;
            self.dispatch()?;
            if self.notices.is_empty() {
                return Ok(());
            }
        }
    }

    fn wait_time(&self) -> Duration {
        let now = Instant::now();
        let mut wait = HOUSEKEEPING;
        if let Some(deadline) = self.executor.next_deadline() {
            wait = wait.min(deadline.saturating_duration_since(now));
        }
        let now_ms = wall_ms();
        for e in self.effects.values() {
            if let State::Waiting { wake_ms: Some(w), .. } | State::Backoff { wake_ms: w, .. } = &e.state {
                wait = wait.min(Duration::from_millis((w - now_ms).max(0) as u64));
            }
        }
        wait
    }

    fn handle(&mut self, msg: Msg) -> Result<(), Error> {
        match msg {
            Msg::Harness(HarnessEvent::Session { effect, attempt, session }) => self.bind(&effect, attempt, session),
            Msg::Harness(HarnessEvent::Usage { effect, attempt, usage }) => {
                if let Some(e) = self.effects.get(&effect).filter(|e| e.attempt == attempt) {
                    let harness = e.harness.clone().unwrap_or_default();
                    let usage = self.opts.prices.price(usage);
                    self.observer.progress(Progress::Usage { effect: effect.clone(), usage: usage.clone() });
                    self.record(Event::EffectUsage { effect: effect.clone(), attempt, harness, usage });
                    self.enforce_budgets(Some(&effect));
                }
                Ok(())
            }
            Msg::Harness(HarnessEvent::Transcript { effect, attempt, stdout, stderr }) => {
                if let Some(e) = self.effects.get(&effect).filter(|e| e.attempt == attempt) {
                    let harness = e.harness.clone().unwrap_or_default();
                    let stdout = Payload::Inline(Value::String(tail_of(&stdout, TRANSCRIPT_CAP)));
                    let stderr = tail_of(&stderr, STDERR_CAP);
                    self.record(Event::EffectTranscript { effect, attempt, harness, stdout, stderr });
                }
                Ok(())
            }
            Msg::Harness(HarnessEvent::Progress { effect, attempt, message }) => {
                if self.effects.get(&effect).is_some_and(|e| e.attempt == attempt) {
                    self.progress(effect, message);
                }
                Ok(())
            }
            Msg::Harness(HarnessEvent::Worktree { effect, attempt, path, branch }) => {
                self.bind_worktree(&effect, attempt, path, branch);
                Ok(())
            }
            Msg::Harness(HarnessEvent::Note { effect, attempt, message }) => {
                if self.effects.get(&effect).is_some_and(|e| e.attempt == attempt) {
                    let scope = effect.to_string();
                    self.observer.progress(Progress::Log { scope: scope.clone(), message: message.clone() });
                    self.record(Event::Log { scope, message });
                }
                Ok(())
            }
            Msg::Harness(HarnessEvent::Finished { effect, attempt, outcome }) => {
                self.finished(&effect, attempt, outcome)
            }
            Msg::Harness(HarnessEvent::Claimed { effect, attempt, worker, claim, previous }) => {
                if self.effects.get(&effect).is_some_and(|e| e.attempt == attempt) {
                    if let Some(previous) = &previous {
                        let message = format!(
                            "re-dispatched: worker {previous} stopped renewing its claim (its lease expired); \
                             worker {worker} runs it now"
                        );
                        self.observer.progress(Progress::Log { scope: effect.to_string(), message });
                    }
                    self.record(Event::EffectClaimed { effect, attempt, worker, claim, previous });
                }
                Ok(())
            }
            Msg::Commands => {
                for command in self.store.take_commands(&self.opts.run_id)? {
                    self.command(command)?;
                }
                Ok(())
            }
        }
    }

    /// An attempt's outcome: fall back to another harness when this one was unavailable, take what the agent
    /// sent during its turn, hold the answer to its schema, then resolve.
    fn finished(&mut self, effect: &EffectId, attempt: u32, outcome: crate::harness::Outcome) -> Result<(), Error> {
        let Some(e) =
            self.effects.get_mut(effect).filter(|e| e.attempt == attempt && e.state.phase() == Phase::Running)
        else {
            return Ok(());
        };
        let outside = e.harness.as_ref().and_then(|h| self.harnesses.get(h)).is_some_and(|h| !h.is_pure());
        // An environmental failure (not installed, auth or network): the next candidate harness.
        if let Err(Failure::Unavailable(error)) = &outcome
            && !e.fallbacks.is_empty()
        {
            e.attempt += 1;
            let previous = e.transition(State::Queued);
            self.release_slot(effect, previous, false);
            self.fall_back(effect, &error.message);
            return Ok(());
        }
        // What the agent sent during its turn (`tutti msg send`) comes before the turn's result.
        if outside {
            for command in self.store.take_commands(&self.opts.run_id)? {
                self.command(command)?;
            }
        }
        match self.check_output(effect, outcome) {
            Some(Err(failure)) => {
                let class = crate::retry::FailureClass::of_failure(&failure);
                let error = failure.into_error();
                if !self.retry_failed(effect, class, &error, false) {
                    self.resolve(effect, Err(error), true);
                }
                Ok(())
            }
            Some(outcome) => {
                self.resolve(effect, outcome.map_err(Failure::into_error), true);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Timeouts, sleeps, queued commands, the lease, and Ctrl-C.
    fn housekeeping(&mut self) -> Result<(), Error> {
        self.last_housekeeping = Instant::now();
        if self.shutdown.load(Ordering::SeqCst) && self.end_with(End::Interrupted((self.opts.detach_reason)().into())) {
            return Ok(());
        }
        self.expire();
        if self.ledger.is_active() {
            self.enforce_budgets(None);
        }
        if self.scheduler.running() > 0 {
            self.observer.progress(Progress::Tick);
        }
        self.executor.sweep();
        for command in self.store.take_commands(&self.opts.run_id)? {
            self.command(command)?;
        }
        if self.last_renew.elapsed() >= LEASE_RENEW {
            self.last_renew = Instant::now();
            if !self.store.renew_lease(&self.opts.run_id, &self.opts.holder, wall_ms(), LEASE_TTL_MS)? {
                return Err(Error::LeaseLost { run: self.opts.run_id.clone() });
            }
        }
        Ok(())
    }

    /// Nothing can happen without the outside: the process has heard everything, and every effect left
    /// waits (a breakpoint, a result from an external harness, a sleep).
    fn blocked(&self) -> bool {
        self.notices.is_empty()
            && !self.effects.is_empty()
            && self.effects.values().all(|e| matches!(e.state.phase(), Phase::Waiting | Phase::Backoff))
    }

    /// Resolve attempts past their timeout and sleeps past their wake time.
    fn expire(&mut self) {
        let mut due: Vec<(EffectId, Result<Value, ErrorInfo>)> = Vec::new();
        for (id, ran) in self.executor.expired(Instant::now()) {
            let message = format!("effect {id} timed out after {} ms", ran.as_millis());
            due.push((id, Err(ErrorInfo::new("Timeout", message))));
        }
        let now_ms = wall_ms();
        for (id, e) in &self.effects {
            if let State::Waiting { wake_ms: Some(w), .. } = &e.state
                && *w <= now_ms
            {
                due.push((id.clone(), Ok(Value::Null)));
            }
        }
        due.sort_by(|a, b| a.0.cmp(&b.0));
        for (id, outcome) in due {
            if let Err(error) = &outcome
                && self.retry_failed(&id, crate::retry::FailureClass::Timeout, error, true)
            {
                continue;
            }
            self.resolve(&id, outcome, false);
        }
        self.wake_backoffs(now_ms);
    }
}

/// The most of an attempt's output a transcript keeps: the last MiB of its event stream (where the answer is)
/// and the last 8 KiB of its stderr.
const TRANSCRIPT_CAP: usize = 1 << 20;
const STDERR_CAP: usize = 8 << 10;

/// The last `cap` bytes of `text` (at a character boundary), marked when cut.
fn tail_of(text: &str, cap: usize) -> String {
    if text.len() <= cap {
        return text.to_string();
    }
    // The marker counts against the cap, so that what is kept is never larger than it.
    let mut start = text.len() - cap.saturating_sub(32);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[cut {start} bytes]\n{}", &text[start..])
}

/// The effect's timeout: `timeoutMs` on the task, else babysitter's `shell.timeout` / `node.timeoutMs`.
fn timeout_of(task: &Value) -> Option<Duration> {
    let ms = task
        .get("timeoutMs")
        .or_else(|| task.get("shell").and_then(|s| s.get("timeout")))
        .or_else(|| task.get("node").and_then(|s| s.get("timeoutMs")))
        .and_then(Value::as_u64)?;
    Some(Duration::from_millis(ms))
}

fn sleep_target(args: &Value) -> Option<i64> {
    args.get("targetEpochMs").and_then(Value::as_i64)
}

/// Refuse a group whose name or member names break [`crate::identity::NAME_RULE`]: the process host checks
/// them first, so one that arrives here (from a host or a journal) is not to be trusted with scopes.
pub(crate) fn check_group_names<'n>(group: &str, members: impl IntoIterator<Item = &'n str>) -> Result<(), String> {
    use crate::identity::{NAME_RULE, is_safe_name};
    if !is_safe_name(group) {
        return Err(format!("group {group:?}: group names may use {NAME_RULE}"));
    }
    match members.into_iter().find(|m| !is_safe_name(m)) {
        Some(m) => Err(format!("group {group:?}: member {m:?}: member names may use {NAME_RULE}")),
        None => Ok(()),
    }
}
