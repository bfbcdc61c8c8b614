//! The dispatcher: one actor per run that alone owns the run's state. It steps the process host, journals
//! every request and result, dispatches effects to harnesses up to the run's limits, and feeds results back
//! the moment they arrive — no batch barrier. Harness threads talk to it only through its channel.
//!
//! Durability follows the output-commit rule: everything the process did is committed in one transaction
//! before anything leaves the driver (a subprocess starts, the driver waits, the run ends). A sequential
//! step therefore costs one commit; results that arrive together share one.

mod members;
mod resume;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tutti_journal::{
    Command, EffectId, ErrorInfo, Event, LeaseHolder, LeaseOutcome, NewEvent, Outcome, Payload, Record, RunId,
    RunStatus, Store, WriterHandle,
};

use crate::effect::{Effect, State};
use crate::error::{Error, Nondeterminism};
use crate::harness::{HarnessEvent, Job, Reporter};
use crate::host::{EffectRequest, HostError, HostEvent, ProcessHost};
use crate::identity::{digest, seed};
use crate::observer::{Observer, Progress};
use crate::platform::Platform;
use crate::registry::{Harnesses, is_internal};
use crate::replay::{self, Replay, Verdict};

const LEASE_TTL_MS: i64 = 10_000;
const LEASE_RENEW: Duration = Duration::from_secs(2);
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// How long stopped attempts get to exit on their own when the run ends, before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Events buffered before a commit is forced even while results keep arriving.
const MAX_BUFFER: usize = 8192;

/// A message to the dispatcher.
#[derive(Debug)]
pub enum Msg {
    Harness(HarnessEvent),
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

enum End {
    Finished(Result<Value, ErrorInfo>),
    Halted { reason: String, payload: Value },
    Cancelled(String),
    Interrupted(String),
}

/// The dispatcher of one run.
pub struct Driver<'a> {
    opts: Options,
    writer: WriterHandle,
    store: Box<dyn Store>,
    harnesses: Harnesses,
    host: &'a mut dyn ProcessHost,
    observer: &'a mut dyn Observer,
    shutdown: Arc<AtomicBool>,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    effects: HashMap<EffectId, Effect>,
    queue: VecDeque<EffectId>,
    /// Effects waiting for a slot of a harness that is at its own limit, per harness.
    blocked: HashMap<String, VecDeque<EffectId>>,
    /// The last submitted commit, not yet confirmed.
    in_flight: Option<tutti_journal::Pending>,
    /// Cancellations the process asked for during replay, of effects that must run again.
    deferred_cancels: Vec<EffectId>,
    /// Messages to members that no effect has taken yet.
    mailbox: Vec<crate::replay::Undelivered>,
    /// Members of each group, for `GROUP/*` addresses, and whether the group is persistent.
    groups: HashMap<String, (Vec<String>, bool)>,
    /// Each member's harness session (`GROUP/MEMBER` → id): its next turn resumes it.
    sessions: HashMap<String, String>,
    /// The last session each effect's attempt reported: a corrective turn continues it.
    attempt_sessions: HashMap<EffectId, String>,
    running: usize,
    running_by_harness: HashMap<String, usize>,
    buffer: Vec<NewEvent>,
    commits: u64,
    /// Harness starts so far (for fault injection).
    starts: u64,
    end: Option<End>,
    last_housekeeping: Instant,
    last_renew: Instant,
    /// Attempts told to stop (cancelled, timed out) whose process trees may still be exiting.
    stopping: Vec<Box<dyn crate::harness::Running>>,
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
        Self {
            opts,
            writer,
            store,
            harnesses,
            host,
            observer,
            shutdown,
            tx,
            rx,
            effects: HashMap::new(),
            queue: VecDeque::new(),
            blocked: HashMap::new(),
            in_flight: None,
            deferred_cancels: Vec::new(),
            mailbox: Vec::new(),
            groups: HashMap::new(),
            sessions: HashMap::new(),
            attempt_sessions: HashMap::new(),
            running: 0,
            running_by_harness: HashMap::new(),
            buffer: Vec::new(),
            commits: 0,
            starts: 0,
            end: None,
            last_housekeeping: Instant::now(),
            last_renew: Instant::now(),
            stopping: Vec::new(),
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
        self.store.create_run(&self.opts.run_id, &[NewEvent { ts_ms: now, event: created }])?;
        self.acquire_lease()?;
        self.record(Event::DriverAttached { holder: self.opts.holder.id.clone(), resumed: false });
        self.observer.progress(Progress::Attached { run_id: self.opts.run_id.clone(), resumed: false, replayed: 0 });
        let events = match self.host.start(&self.opts.run_id, &new.inputs, seed(&self.opts.run_id), now) {
            Ok(events) => events,
            Err(e) => return self.host_failed(e),
        };
        self.apply(events)?;
        self.drive()
    }

    // ---- the loop ----

    fn drive(mut self) -> Result<RunEnd, Error> {
        match self.next_end() {
            Ok(end) => self.finish(end),
            Err(Error::Host(e)) => self.host_failed(e),
            Err(e) => Err(e),
        }
    }

    /// A step of the process failed in the host. When the shutdown flag is set, the host was told to stop
    /// running JavaScript that would not yield (a loop that never awaits): the process is broken, so the run
    /// fails with the host's account naming the file, after its running effects are stopped.
    fn host_failed(self, e: HostError) -> Result<RunEnd, Error> {
        if !self.shutdown.load(Ordering::SeqCst) {
            return Err(e.into());
        }
        self.finish(End::Finished(Err(ErrorInfo::new("ProcessDidNotYield", e.message))))
    }

    fn next_end(&mut self) -> Result<End, Error> {
        loop {
            self.dispatch()?;
            if self.end.is_none() && self.effects.is_empty() {
                let error = ErrorInfo::new(
                    "Deadlock",
                    "the process is waiting, but no effect is running or pending: it awaits a promise that \
                     nothing will settle",
                );
                self.end = Some(End::Finished(Err(error)));
            }
            if let Some(end) = self.end.take() {
                return Ok(end);
            }
            let mut idle = false;
            let first = match self.rx.try_recv() {
                Ok(msg) => Some(msg),
                Err(_) => {
                    self.flush()?;
                    match self.rx.recv_timeout(self.wait_time()) {
                        Ok(msg) => Some(msg),
                        Err(RecvTimeoutError::Timeout) => {
                            idle = true;
                            None
                        }
                        Err(RecvTimeoutError::Disconnected) => unreachable!("the driver holds a sender"),
                    }
                }
            };
            if let Some(msg) = first {
                self.handle(msg)?;
                while self.buffer.len() < MAX_BUFFER {
                    let Ok(msg) = self.rx.try_recv() else { break };
                    self.handle(msg)?;
                }
            }
            if self.buffer.len() >= MAX_BUFFER {
                self.submit()?;
            }
            if idle || self.last_housekeeping.elapsed() >= HOUSEKEEPING {
                self.housekeeping()?;
            }
        }
    }

    fn wait_time(&self) -> Duration {
        let mut wait = HOUSEKEEPING;
        let now = Instant::now();
        let now_ms = wall_ms();
        for e in self.effects.values() {
            match &e.state {
                State::Running { deadline: Some(d), .. } => wait = wait.min(d.saturating_duration_since(now)),
                State::Waiting { wake_ms: Some(w), .. } => {
                    wait = wait.min(Duration::from_millis((w - now_ms).max(0) as u64));
                }
                _ => {}
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
                    self.record(Event::EffectUsage { effect, attempt, harness, usage });
                }
                Ok(())
            }
            Msg::Harness(HarnessEvent::Finished { effect, attempt, outcome }) => {
                self.finished(&effect, attempt, outcome)
            }
        }
    }

    /// An attempt's outcome: fall back to another harness when this one was unavailable, take what the agent
    /// sent during its turn, hold the answer to its schema, then resolve.
    fn finished(&mut self, effect: &EffectId, attempt: u32, outcome: crate::harness::Outcome) -> Result<(), Error> {
        let running = self
            .effects
            .get(effect)
            .filter(|e| e.attempt == attempt && e.state.phase() == crate::effect::Phase::Running);
        let Some(e) = running else { return Ok(()) };
        let can_fall_back = !e.fallbacks.is_empty();
        let outside = e.harness.as_ref().and_then(|h| self.harnesses.get(h)).is_some_and(|h| !h.is_pure());
        // An environmental failure (not installed, auth or network): the next candidate harness.
        if let Err(error) = &outcome
            && crate::harness::is_environmental(error)
            && can_fall_back
        {
            let e = self.effects.get_mut(effect).expect("checked above");
            e.attempt += 1;
            let previous = e.transition(State::Queued);
            self.release_slot(previous, false);
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
            Some(outcome) => self.resolve(effect, outcome, true),
            None => Ok(()),
        }
    }

    /// Timeouts, sleeps, queued commands, the lease, and Ctrl-C.
    fn housekeeping(&mut self) -> Result<(), Error> {
        self.last_housekeeping = Instant::now();
        if self.shutdown.load(Ordering::SeqCst) && self.end.is_none() {
            self.end = Some(End::Interrupted((self.opts.detach_reason)().into()));
            return Ok(());
        }
        self.expire()?;
        if self.running > 0 {
            self.observer.progress(Progress::Tick);
        }
        self.stopping.retain_mut(|h| !h.wait_stopped(Duration::ZERO));
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

    fn expire(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        let now_ms = wall_ms();
        let mut due: Vec<(EffectId, Result<Value, ErrorInfo>)> = Vec::new();
        for (id, e) in &self.effects {
            match &e.state {
                State::Running { deadline: Some(d), started, .. } if *d <= now => {
                    let ms = started.elapsed().as_millis();
                    let error = ErrorInfo::new("Timeout", format!("effect {id} timed out after {ms} ms"));
                    due.push((id.clone(), Err(error)));
                }
                State::Waiting { wake_ms: Some(w), .. } if *w <= now_ms => due.push((id.clone(), Ok(Value::Null))),
                _ => {}
            }
        }
        due.sort_by(|a, b| a.0.cmp(&b.0));
        for (id, outcome) in due {
            self.resolve(&id, outcome, false)?;
        }
        Ok(())
    }

    fn command(&mut self, command: Command) -> Result<(), Error> {
        match command {
            Command::Cancel { reason, by } => {
                if self.end.is_none() {
                    if let Some(by) = by {
                        self.record(Event::ControlApplied { action: "cancel".into(), effect: None, by });
                    }
                    self.end = Some(End::Cancelled(reason));
                }
            }
            Command::Message { effect, attempt, token, to, body } => {
                // `tutti msg send` refused stale attempts when it queued this; the token proves the sender.
                let expected =
                    crate::identity::message_token(&self.opts.msg_secret, &self.opts.run_id, &effect, attempt);
                if token == expected {
                    self.send(crate::identity::address_of(&effect), to, body)?;
                }
            }
            Command::Progress { effect, attempt, token, message } => {
                let expected =
                    crate::identity::message_token(&self.opts.msg_secret, &self.opts.run_id, &effect, attempt);
                if token == expected && self.effects.contains_key(&effect) {
                    self.observer.progress(Progress::Log { scope: effect.clone(), message: message.clone() });
                    self.record(Event::EffectProgress { effect, message });
                }
            }
            Command::Resolve { effect, outcome, by } => {
                let pending = self.effects.get(&effect).filter(|e| {
                    matches!(e.state.phase(), crate::effect::Phase::Waiting | crate::effect::Phase::Running)
                });
                if let Some(e) = pending {
                    if let Some(by) = by {
                        let action = control_action(&e.request.kind, &outcome).to_string();
                        self.record(Event::ControlApplied { action, effect: Some(effect.clone()), by });
                    }
                    let outcome = match outcome {
                        Outcome::Ok { value } => Ok(self.store.load(&value)?),
                        Outcome::Error { error } => Err(error),
                    };
                    self.resolve(&effect, outcome, false)?;
                }
            }
        }
        Ok(())
    }

    // ---- effects ----

    /// Journal a new request and queue it.
    fn request(&mut self, req: EffectRequest) {
        self.record(Event::EffectRequested {
            effect: req.effect.clone(),
            scope: req.scope.clone(),
            task_id: req.task_id.clone(),
            kind: req.kind.clone(),
            digest: digest(&req.args),
            title: req.title.clone(),
            callsite: req.callsite.clone(),
            args: Payload::Inline(req.args.clone()),
            task: Payload::Inline(req.task.clone()),
        });
        let effect = req.effect.clone();
        if let Some((harness, reason)) = self.register(req, 1, true) {
            self.record(Event::EffectRouted { effect, harness, reason });
        }
    }

    /// Route and queue an effect; returns the routing decision's reason, for the journal.
    fn register(&mut self, req: EffectRequest, attempt: u32, queue: bool) -> Option<(String, String)> {
        let id = req.effect.clone();
        let route = if is_internal(&req.kind) { None } else { self.harnesses.route(&req.kind, &req.task).ok() };
        let mut effect = Effect::new(req, attempt, route.as_ref().map(|r| r.harness.clone()));
        if let Some(r) = &route {
            effect.fallbacks = r.fallbacks.iter().cloned().collect();
        }
        self.effects.insert(id.clone(), effect);
        if queue {
            self.queue.push_back(id);
        }
        route.map(|r| (r.harness, r.reason))
    }

    /// Move an effect whose harness turned out to be unavailable to its next candidate, if it has one.
    fn fall_back(&mut self, id: &EffectId, why: &str) -> bool {
        let Some(e) = self.effects.get_mut(id) else { return false };
        let Some(next) = e.fallbacks.pop_front() else { return false };
        let failed = e.harness.replace(next.clone()).unwrap_or_default();
        let reason = format!("fallback: {failed} is unavailable ({why})");
        self.record(Event::EffectRouted { effect: id.clone(), harness: next, reason });
        self.queue.push_front(id.clone());
        true
    }

    /// Start queued effects while limits allow. Commits first when an effect with outside effects starts.
    fn dispatch(&mut self) -> Result<(), Error> {
        while let Some(id) = self.queue.pop_front() {
            let Some(e) = self.effects.get(&id) else { continue };
            if e.state.phase() != crate::effect::Phase::Queued {
                continue;
            }
            if is_internal(&e.request.kind) {
                self.wait(&id)?;
                continue;
            }
            let Some(name) = e.harness.clone() else {
                let error = self.harnesses.route(&e.request.kind, &e.request.task).err();
                let mut error = error.unwrap_or_else(|| ErrorInfo::new("NoHarness", "no harness"));
                error.message = format!("effect {id}: {}", error.message);
                self.resolve(&id, Err(error), false)?;
                continue;
            };
            if self.running >= self.opts.max_parallel {
                self.queue.push_front(id);
                break;
            }
            if self.harness_full(&name) {
                if let Some((_, reason)) = self.limit_of(&name)
                    && self.blocked.get(&name).is_none_or(VecDeque::is_empty)
                {
                    self.observer.progress(Progress::Queued { effect: id.clone(), reason });
                }
                self.blocked.entry(name).or_default().push_back(id);
                continue;
            }
            self.start(&id, &name)?;
        }
        Ok(())
    }

    fn harness_full(&self, name: &str) -> bool {
        let limit = self.limit_of(name).map(|(n, _)| n);
        limit.is_some_and(|l| self.running_by_harness.get(name).copied().unwrap_or(0) >= l)
    }

    /// How many attempts of a harness may run at once, and why: its `max_parallel`, else what the available
    /// memory fits (at least one).
    fn limit_of(&self, name: &str) -> Option<(usize, String)> {
        let h = self.harnesses.get(name)?;
        if let Some(n) = h.max_parallel() {
            return Some((n, format!("`max_parallel = {n}` for harness {name}")));
        }
        let per = h.memory_per_attempt_mb()?;
        let available = self.opts.platform.available_memory_mb()?;
        let n = ((available * 8 / 10) / per.max(1)).max(1) as usize;
        Some((
            n,
            format!(
                "harness {name} runs at most {n} at once: each attempt needs about {per} MB and {available} MB are available (set max_parallel to override)"
            ),
        ))
    }

    fn start(&mut self, id: &EffectId, name: &str) -> Result<(), Error> {
        let harness = self.harnesses.get(name).cloned().expect("routed harnesses exist");
        if !harness.is_pure() {
            self.flush()?;
        }
        let mut messages = self.inbound(id);
        let mut session = self.session_for(id);
        if let Some(correction) = self.effects.get_mut(id).and_then(|e| e.correction.take()) {
            messages.push(crate::harness::Inbound { from: "tutti".into(), body: Value::String(correction) });
            session = self.attempt_sessions.get(id).cloned().or(session);
        }
        let e = self.effects.get(id).expect("queued effects exist");
        let timeout = timeout_of(&e.request.task);
        let mut env = self.opts.agent_env.clone();
        let token = crate::identity::message_token(&self.opts.msg_secret, &self.opts.run_id, id, e.attempt);
        env.push(("TUTTI_MSG_TOKEN".to_string(), token));
        let job = Job {
            run_id: self.opts.run_id.clone(),
            effect: id.clone(),
            attempt: e.attempt,
            task_id: e.request.task_id.clone(),
            kind: e.request.kind.clone(),
            title: e.request.title.clone(),
            task: e.request.task.clone(),
            args: e.request.args.clone(),
            workdir: self.opts.workdir.clone(),
            timeout,
            env,
            messages,
            session,
        };
        let (attempt, kind, title) = (e.attempt, e.request.kind.clone(), e.request.title.clone());
        let reporter = Reporter::new(id.clone(), attempt, self.tx.clone());
        let handle = match harness.start(job, reporter) {
            Ok(handle) => handle,
            Err(err) if self.fall_back(id, &err.to_string()) => return Ok(()),
            Err(err) => return self.resolve(id, Err(ErrorInfo::new("HarnessError", err.to_string())), false),
        };
        self.starts += 1;
        #[cfg(feature = "fault-injection")]
        if self.opts.faults.kill_after_starts == Some(self.starts) {
            self.opts.platform.crash();
        }
        self.record(Event::EffectStarted { effect: id.clone(), attempt, harness: name.to_string(), pid: handle.pid() });
        self.running += 1;
        *self.running_by_harness.entry(name.to_string()).or_default() += 1;
        let started = Instant::now();
        let deadline = timeout.map(|t| started + t);
        let e = self.effects.get_mut(id).expect("queued effects exist");
        e.transition(State::Running { harness: name.to_string(), handle, started, deadline });
        self.observer.progress(Progress::Started {
            effect: id.clone(),
            kind,
            title,
            harness: name.to_string(),
            attempt,
        });
        Ok(())
    }

    /// A breakpoint or a sleep: resolved by a person, by `--non-interactive`, or by the clock.
    fn wait(&mut self, id: &EffectId) -> Result<(), Error> {
        let e = self.effects.get_mut(id).expect("queued effects exist");
        let (kind, title) = (e.request.kind.clone(), e.request.title.clone());
        if kind == "breakpoint" && self.opts.non_interactive {
            e.transition(State::Waiting { wake_ms: None, since: Instant::now() });
            let approval = json!({ "approved": true, "response": "auto-approved (--non-interactive)" });
            return self.resolve(id, Ok(approval), false);
        }
        let wake_ms = (kind == "sleep").then(|| sleep_target(&e.request.args)).flatten();
        e.transition(State::Waiting { wake_ms, since: Instant::now() });
        self.observer.progress(Progress::Waiting { effect: id.clone(), kind, title, wake_ms });
        Ok(())
    }

    /// Journal an effect's result and deliver it to the process. `finished` says the harness reported it;
    /// otherwise (timeout, a posted result) its attempt is stopped.
    fn resolve(&mut self, id: &EffectId, outcome: Result<Value, ErrorInfo>, finished: bool) -> Result<(), Error> {
        let e = self.effects.get(id).expect("resolved effects exist");
        let attempt = e.attempt;
        let title = e.request.title.clone();
        let previous = self.finish_effect(id);
        let elapsed_ms = self.release_slot(previous, !finished);
        let journaled = match &outcome {
            Ok(v) => Outcome::Ok { value: Payload::Inline(v.clone()) },
            Err(err) => Outcome::Error { error: err.clone() },
        };
        let ts_ms = self.record(Event::EffectResolved { effect: id.clone(), attempt, outcome: journaled });
        self.observer.progress(Progress::Finished {
            effect: id.clone(),
            title,
            elapsed_ms,
            error: outcome.as_ref().err().cloned(),
        });
        let events = self.host.deliver(id, &outcome, ts_ms)?;
        self.apply(events)
    }

    /// Move an effect to `Done` and forget it: the driver keeps only effects that are still active, so an
    /// empty table with the process still waiting means nothing will ever wake it.
    fn finish_effect(&mut self, id: &EffectId) -> State {
        let mut e = self.effects.remove(id).expect("finished effects exist");
        e.transition(State::Done)
    }

    fn release_slot(&mut self, previous: State, stop: bool) -> u64 {
        match previous {
            State::Running { harness, mut handle, started, .. } => {
                if stop {
                    handle.cancel();
                    self.stopping.push(handle);
                }
                self.running -= 1;
                if let Some(n) = self.running_by_harness.get_mut(&harness) {
                    *n -= 1;
                }
                // A slot of this harness is free: the oldest effect waiting for one goes first.
                if let Some(id) = self.blocked.get_mut(&harness).and_then(VecDeque::pop_front) {
                    self.queue.push_front(id);
                }
                started.elapsed().as_millis() as u64
            }
            State::Waiting { since, .. } => since.elapsed().as_millis() as u64,
            _ => 0,
        }
    }

    /// Act on what the process did during a step.
    fn apply(&mut self, events: Vec<HostEvent>) -> Result<(), Error> {
        for event in events {
            match event {
                HostEvent::Request(req) => self.request(req),
                HostEvent::Log { scope, message } => {
                    self.record(Event::Log { scope: scope.clone(), message: message.clone() });
                    self.observer.progress(Progress::Log { scope, message });
                }
                HostEvent::Finished(result) => {
                    if self.end.is_none() {
                        self.end = Some(End::Finished(result));
                    }
                }
                HostEvent::Halted { reason, payload } => {
                    if self.end.is_none() {
                        self.end = Some(End::Halted { reason, payload });
                    }
                }
                HostEvent::Cancel { effect } => self.cancel_effect(&effect, "cancelled by the process")?,
                HostEvent::Send { scope, to, body } => {
                    let from = match scope.strip_prefix("group:") {
                        Some(_) => crate::identity::address_of(&format!("{scope}/0")),
                        None => "coordinator".to_string(),
                    };
                    self.send(from, to, body)?;
                }
                HostEvent::GroupOpened { group, members, persistent } => {
                    check_group_names(&group, members.iter().map(|m| m.name.as_str()))
                        .map_err(|message| HostError { message })?;
                    self.groups.insert(group.clone(), (members.iter().map(|m| m.name.clone()).collect(), persistent));
                    let names: Vec<String> = members
                        .iter()
                        .map(|m| m.harness.as_ref().map_or(m.name.clone(), |h| format!("{} on {h}", m.name)))
                        .collect();
                    let message = format!("group opened: {}", names.join(", "));
                    self.observer.progress(Progress::Log { scope: format!("group:{group}"), message });
                    self.record(Event::GroupOpened { group, members, persistent });
                }
                HostEvent::Checkpoint { group, completed, value } => {
                    self.record(Event::GroupCheckpoint { group, completed, value: Payload::Inline(value) });
                }
                HostEvent::GroupClosed { group } => {
                    self.record(Event::GroupClosed { group });
                }
            }
        }
        Ok(())
    }

    /// Stop an effect the process no longer wants: kill its process tree, journal it, and settle its promise
    /// with a `Cancelled` error.
    fn cancel_effect(&mut self, id: &EffectId, reason: &str) -> Result<(), Error> {
        if !self.effects.contains_key(id) {
            return Ok(());
        }
        let title = self.effects.get(id).and_then(|e| e.request.title.clone());
        let previous = self.finish_effect(id);
        let elapsed_ms = self.release_slot(previous, true);
        let error = ErrorInfo::new("Cancelled", format!("effect {id} was cancelled: {reason}"));
        let ts_ms = self.record(Event::EffectCancelled { effect: id.clone(), reason: reason.to_string() });
        self.observer.progress(Progress::Finished {
            effect: id.clone(),
            title,
            elapsed_ms,
            error: Some(error.clone()),
        });
        let events = self.host.deliver(id, &Err(error), ts_ms)?;
        self.apply(events)
    }

    // ---- the end ----

    fn finish(mut self, end: End) -> Result<RunEnd, Error> {
        let interrupted = matches!(end, End::Interrupted(_));
        let reason = match &end {
            End::Cancelled(r) => format!("run cancelled: {r}"),
            End::Interrupted(r) => r.clone(),
            _ => "the run ended".to_string(),
        };
        let stopped = self.stop_all(&reason, !interrupted);
        self.reap();
        let run_end = match end {
            End::Finished(Ok(output)) => {
                self.record(Event::RunCompleted { output: Payload::Inline(output.clone()) });
                RunEnd { status: RunStatus::Completed, output: Some(output), error: None, interrupted: false }
            }
            End::Finished(Err(error)) => {
                self.record(Event::RunFailed { error: error.clone() });
                RunEnd { status: RunStatus::Failed, output: None, error: Some(error), interrupted: false }
            }
            End::Halted { reason, payload } => {
                let output = json!({ "halted": reason, "payload": payload });
                self.record(Event::RunHalted { reason, payload: Payload::Inline(payload) });
                RunEnd { status: RunStatus::Halted, output: Some(output), error: None, interrupted: false }
            }
            End::Cancelled(reason) => {
                let error = ErrorInfo::new("Cancelled", format!("run cancelled: {reason}"));
                self.record(Event::RunCancelled { reason });
                RunEnd { status: RunStatus::Cancelled, output: None, error: Some(error), interrupted: false }
            }
            End::Interrupted(reason) => {
                self.record(Event::DriverDetached { reason, interrupted: stopped });
                RunEnd { status: RunStatus::Running, output: None, error: None, interrupted: true }
            }
        };
        self.flush()?;
        self.release();
        Ok(run_end)
    }

    /// Kill every running effect's process tree; journal them as cancelled unless the run is only being
    /// detached (then they run again on resume). Returns the effects that were stopped.
    fn stop_all(&mut self, reason: &str, journal: bool) -> Vec<EffectId> {
        let mut ids: Vec<EffectId> = self
            .effects
            .iter()
            .filter(|(_, e)| !matches!(e.state.phase(), crate::effect::Phase::Done))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        let mut stopped = Vec::new();
        for id in &ids {
            let was_running = self.effects.get(id).is_some_and(|e| e.state.phase() == crate::effect::Phase::Running);
            let previous = self.finish_effect(id);
            self.release_slot(previous, true);
            if was_running {
                stopped.push(id.clone());
            }
            if journal {
                self.record(Event::EffectCancelled { effect: id.clone(), reason: reason.to_string() });
            }
        }
        stopped
    }

    /// Wait for stopped attempts to exit, then kill what is left: nothing tutti started outlives the driver.
    fn reap(&mut self) {
        let deadline = Instant::now() + STOP_GRACE;
        for mut handle in std::mem::take(&mut self.stopping) {
            if !handle.wait_stopped(deadline.saturating_duration_since(Instant::now())) {
                handle.kill();
                handle.wait_stopped(Duration::from_millis(500));
            }
        }
    }

    // ---- the journal ----

    /// Buffer an event for the next commit; returns its timestamp.
    fn record(&mut self, event: Event) -> i64 {
        let ts_ms = wall_ms();
        self.buffer.push(NewEvent { ts_ms, event });
        ts_ms
    }

    /// Make everything recorded so far durable: called before anything leaves the driver.
    fn flush(&mut self) -> Result<(), Error> {
        self.submit()?;
        self.confirm()
    }

    /// Hand the buffer to the writer without waiting for its commit (at most one commit in flight), so the
    /// writer's thread commits while the driver goes on with work that needs no durability yet.
    fn submit(&mut self) -> Result<(), Error> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.confirm()?;
        let events = std::mem::take(&mut self.buffer);
        self.in_flight = Some(self.writer.submit(self.opts.run_id.clone(), events)?);
        Ok(())
    }

    /// Wait for the commit in flight, if any.
    fn confirm(&mut self) -> Result<(), Error> {
        let Some(pending) = self.in_flight.take() else { return Ok(()) };
        pending.wait()?;
        self.commits += 1;
        #[cfg(feature = "fault-injection")]
        if self.opts.faults.kill_after_commits == Some(self.commits) {
            self.opts.platform.crash();
        }
        Ok(())
    }

    fn acquire_lease(&mut self) -> Result<(), Error> {
        let platform = Arc::clone(&self.opts.platform);
        let is_gone = move |holder: &LeaseHolder| platform.holder_is_gone(holder);
        let outcome =
            self.store.acquire_lease(&self.opts.run_id, &self.opts.holder, wall_ms(), LEASE_TTL_MS, &is_gone)?;
        match outcome {
            LeaseOutcome::Acquired => Ok(()),
            LeaseOutcome::Busy { holder, .. } => Err(Error::Busy { run: self.opts.run_id.clone(), holder }),
        }
    }

    fn release(&mut self) {
        // Best effort: an unreleased lease expires by itself.
        let _ = self.store.release_lease(&self.opts.run_id, &self.opts.holder);
    }
}

/// What a person's answer to an effect did: `approve` / `reject` a breakpoint, or `post` a result.
fn control_action(kind: &str, outcome: &Outcome) -> &'static str {
    let approved = match outcome {
        Outcome::Ok { value: Payload::Inline(v) } => v.get("approved").and_then(Value::as_bool),
        _ => None,
    };
    match (kind, approved) {
        ("breakpoint", Some(true)) => "approve",
        ("breakpoint", Some(false)) => "reject",
        _ => "post",
    }
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
