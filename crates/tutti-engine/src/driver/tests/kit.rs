//! The kit of the dispatcher's unit tests: a fake [`Platform`], a scripted [`ProcessHost`] whose every step
//! is a function of what it was told so far (so it replays like a real process), a [`Probe`] harness that
//! records what it was asked to run and when, and a journal in a temporary SQLite file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tutti_journal::{Command, CommandQueue, ErrorInfo, Event, EventLog, NewEvent, Payload, SqliteStore, Writer};

use crate::driver::{Changes, Driver, Faults, NewRun, Options, RunEnd};
use crate::error::Error;
use crate::harness::{self, Harness, Inbound, Job, Outcome, Reporter, Running};
use crate::host::{EffectRequest, HostError, HostEvent, ProcessHost};
use crate::observer::Silent;
use crate::platform::Platform;
use crate::registry::Harnesses;

pub(crate) const RUN: &str = "run1";

/// A platform that kills nothing: it records which process groups and orphans the dispatcher asked it to
/// kill, and reports the leftover processes a test planted.
#[derive(Debug, Default)]
pub(crate) struct TestPlatform {
    /// Leftover processes of the run, by effect, as `processes_of` finds them.
    pub orphans: Mutex<HashMap<String, Vec<u32>>>,
    /// Every kill asked for: (effect, pid), in order.
    pub killed: Mutex<Vec<(String, u32)>>,
    pub memory_mb: Option<u64>,
}

impl Platform for TestPlatform {
    fn host_name(&self) -> String {
        "test-host".into()
    }

    fn process_is_gone(&self, _pid: u32) -> bool {
        false
    }

    fn available_memory_mb(&self) -> Option<u64> {
        self.memory_mb
    }

    fn processes_of(&self, _run: &str) -> HashMap<String, Vec<u32>> {
        lock(&self.orphans).clone()
    }

    fn kill_group_of(&self, _run: &str, effect: &str, pgid: u32) -> bool {
        lock(&self.killed).push((effect.to_string(), pgid));
        true
    }

    fn kill_found(&self, _run: &str, effect: &str, pids: &[u32]) -> Vec<u32> {
        lock(&self.killed).extend(pids.iter().map(|&p| (effect.to_string(), p)));
        pids.to_vec()
    }

    fn crash(&self) {
        panic!("fault injection: crash");
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Create run `id` in `store`, as `tutti run` would before its driver starts.
pub(crate) fn new_run(store: &mut dyn EventLog, id: &str) {
    store.create_run(&id.to_string(), &[run_created()]).expect("create run");
}

/// A run's first event.
pub(crate) fn run_created() -> NewEvent {
    let created = Event::RunCreated {
        process: "test.js".into(),
        inputs: Payload::Inline(Value::Null),
        code_hash: "code".into(),
        modules: Vec::new(),
        options: json!({}),
    };
    NewEvent { ts_ms: 1, event: created }
}

/// What the scripted process was told: an effect's outcome, or a message to the coordinator.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Told {
    Outcome(String, Result<Value, ErrorInfo>),
    Message(String, Value),
}

impl Told {
    fn effect(&self) -> Option<&str> {
        match self {
            Told::Outcome(e, _) => Some(e),
            Told::Message(..) => None,
        }
    }
}

type Step = Box<dyn FnMut(&[Told]) -> Vec<HostEvent>>;

/// A process written as Rust: `first` is what it asks for when it starts; `then` sees everything it was
/// told so far (newest last) and says what it does next.
pub(crate) struct Script {
    first: Vec<HostEvent>,
    then: Step,
    pub told: Vec<Told>,
    /// Set by the driver while it replays: a start then leaves out task descriptions and call sites, as the
    /// JavaScript host does.
    replaying: bool,
}

impl Script {
    pub(crate) fn new(first: Vec<HostEvent>, then: impl FnMut(&[Told]) -> Vec<HostEvent> + 'static) -> Self {
        Self { first, then: Box::new(then), told: Vec::new(), replaying: false }
    }

    /// Ask for `requests` at once and finish, once all are settled, with their outcomes by effect id.
    pub(crate) fn fan_out(requests: Vec<EffectRequest>) -> Self {
        let n = requests.len();
        Self::new(requests.into_iter().map(HostEvent::Request).collect(), move |told| {
            if told.iter().filter(|t| t.effect().is_some()).count() < n {
                return Vec::new();
            }
            vec![HostEvent::Finished(Ok(summary(told)))]
        })
    }

    fn step(&mut self, told: Told) -> Vec<HostEvent> {
        self.told.push(told);
        (self.then)(&self.told)
    }

    /// The effects told, in order.
    pub(crate) fn order(&self) -> Vec<String> {
        self.told.iter().filter_map(|t| t.effect().map(String::from)).collect()
    }
}

/// `{effect: value}` for values, `{effect: "!ErrorName"}` for errors.
pub(crate) fn summary(told: &[Told]) -> Value {
    let mut out = serde_json::Map::new();
    for t in told {
        if let Told::Outcome(effect, outcome) = t {
            let shown = match outcome {
                Ok(v) => v.clone(),
                Err(e) => Value::String(format!("!{}", e.name)),
            };
            out.insert(effect.clone(), shown);
        }
    }
    Value::Object(out)
}

impl ProcessHost for Script {
    fn start(&mut self, _run: &str, _inputs: &Value, _seed: u32, _now_ms: i64) -> Result<Vec<HostEvent>, HostError> {
        self.told.clear();
        let mut first = self.first.clone();
        if self.replaying {
            for event in &mut first {
                if let HostEvent::Request(req) = event {
                    req.task = Value::Null;
                    req.callsite = None;
                }
            }
        }
        Ok(first)
    }

    fn set_replaying(&mut self, replaying: bool) {
        self.replaying = replaying;
    }

    /// A script is its functions: starting again forgets what it was told.
    fn restart(&mut self) -> Result<(), HostError> {
        self.told.clear();
        Ok(())
    }

    fn message(&mut self, from: &str, body: &Value, _now_ms: i64) -> Result<Vec<HostEvent>, HostError> {
        Ok(self.step(Told::Message(from.to_string(), body.clone())))
    }

    fn deliver(
        &mut self,
        effect: &str,
        outcome: &Result<Value, ErrorInfo>,
        _now_ms: i64,
    ) -> Result<Vec<HostEvent>, HostError> {
        Ok(self.step(Told::Outcome(effect.to_string(), outcome.clone())))
    }
}

/// A request for `kind` with `args`, described by `task`.
pub(crate) fn request(effect: &str, kind: &str, args: Value, task: Value) -> EffectRequest {
    EffectRequest {
        effect: effect.into(),
        scope: "root".into(),
        task_id: format!("task-{kind}"),
        kind: kind.into(),
        title: None,
        callsite: None,
        args,
        task,
    }
}

/// A request for the probe harness `harness`.
pub(crate) fn on(harness: &str, effect: &str, args: Value) -> EffectRequest {
    request(effect, "agent", args, json!({ "harness": harness }))
}

/// What the probe does with a job.
#[derive(Clone)]
pub(crate) enum Act {
    /// Report this outcome from inside `start`.
    Now(Outcome),
    /// Report this outcome from another thread after a while (unless stopped first).
    After(Duration, Outcome),
    /// Run until stopped.
    Hang,
    /// Fail to start.
    Refuse(String),
    /// Report this many progress notes, then this outcome, from inside `start`.
    Chatty(usize, Outcome),
    /// After a while, report this usage and then this outcome (unless stopped first).
    Costs(Duration, tutti_journal::Usage, Outcome),
}

/// What a probe saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// (effect, attempt), in start order.
    pub starts: Vec<(String, u32)>,
    /// Effects whose request was not yet committed when they started.
    pub uncommitted: Vec<String>,
    /// Attempts running now, and the most at once.
    pub running: usize,
    pub most: usize,
    /// Effects stopped by the dispatcher.
    pub stopped: Vec<String>,
    /// Messages handed to each start.
    pub messages: Vec<(String, Vec<Inbound>)>,
    /// Environment of each start.
    pub env: Vec<(String, Vec<(String, String)>)>,
}

type Plan = Arc<dyn Fn(&Job) -> Act + Send + Sync>;

/// A harness for the dispatcher's tests: does what its plan says and records what it saw.
pub(crate) struct Probe {
    name: String,
    pure: bool,
    limit: Option<usize>,
    memory_mb: Option<u64>,
    plan: Plan,
    /// The journal, to check at each start whether the request is committed.
    journal: Option<PathBuf>,
    pub seen: Arc<Mutex<Seen>>,
}

impl Probe {
    pub(crate) fn new(name: &str, plan: impl Fn(&Job) -> Act + Send + Sync + 'static) -> Self {
        Self {
            name: name.into(),
            pure: false,
            limit: None,
            memory_mb: None,
            plan: Arc::new(plan),
            journal: None,
            seen: Arc::default(),
        }
    }

    /// Answers every job with its args after `ms`.
    pub(crate) fn echo_after(name: &str, ms: u64) -> Self {
        Self::new(name, move |job| Act::After(Duration::from_millis(ms), Ok(job.args.clone())))
    }

    pub(crate) fn pure(mut self) -> Self {
        self.pure = true;
        self
    }

    pub(crate) fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    pub(crate) fn memory(mut self, mb: u64) -> Self {
        self.memory_mb = Some(mb);
        self
    }

    pub(crate) fn watching(mut self, journal: PathBuf) -> Self {
        self.journal = Some(journal);
        self
    }

    fn committed(&self, effect: &str) -> bool {
        let Some(path) = &self.journal else { return true };
        let store = SqliteStore::open(path).expect("open journal");
        let records = store.read(&RUN.to_string(), 0).expect("read journal");
        records.iter().any(|r| matches!(&r.event, Event::EffectRequested { effect: e, .. } if e == effect))
    }
}

pub(crate) fn ended(seen: &Mutex<Seen>) {
    lock(seen).running -= 1;
}

impl Harness for Probe {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_pure(&self) -> bool {
        self.pure
    }

    fn max_parallel(&self) -> Option<usize> {
        self.limit
    }

    fn memory_per_attempt_mb(&self) -> Option<u64> {
        self.memory_mb
    }

    fn start(&self, job: Job, reporter: Reporter) -> Result<Box<dyn Running>, harness::Error> {
        let act = (self.plan)(&job);
        if let Act::Refuse(why) = act {
            return Err(harness::Error::Invalid(why));
        }
        if let Act::Chatty(n, outcome) = act {
            for i in 0..n {
                reporter.progress(format!("note {i}"));
            }
            reporter.finish(outcome);
            return Ok(Box::new(Handle {
                effect: job.effect.to_string(),
                stop: mpsc::channel().0,
                seen: Arc::clone(&self.seen),
                done: true,
            }));
        }
        let committed = self.committed(&job.effect);
        {
            let mut seen = lock(&self.seen);
            seen.starts.push((job.effect.to_string(), job.attempt));
            if !committed {
                seen.uncommitted.push(job.effect.to_string());
            }
            seen.messages.push((job.effect.to_string(), job.messages.clone()));
            seen.env.push((job.effect.to_string(), job.env.clone()));
            seen.running += 1;
            seen.most = seen.most.max(seen.running);
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let handle =
            Box::new(Handle { effect: job.effect.to_string(), stop, seen: Arc::clone(&self.seen), done: false });
        let seen = Arc::clone(&self.seen);
        match act {
            Act::Now(outcome) => {
                ended(&seen);
                reporter.finish(outcome);
                return Ok(Box::new(Handle { done: true, ..*handle }));
            }
            Act::After(after, outcome) => {
                std::thread::spawn(move || {
                    if let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(after) {
                        ended(&seen);
                        reporter.finish(outcome);
                    }
                });
            }
            Act::Hang => {
                std::thread::spawn(move || {
                    let _ = stopped.recv();
                    drop(reporter);
                });
            }
            Act::Costs(after, usage, outcome) => {
                std::thread::spawn(move || {
                    if let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(after) {
                        ended(&seen);
                        reporter.usage(usage);
                        reporter.finish(outcome);
                    }
                });
            }
            Act::Refuse(_) | Act::Chatty(..) => {}
        }
        Ok(handle)
    }
}

struct Handle {
    effect: String,
    stop: Sender<()>,
    seen: Arc<Mutex<Seen>>,
    done: bool,
}

impl Running for Handle {
    fn pid(&self) -> Option<u32> {
        Some(40_000 + self.effect.bytes().map(u32::from).sum::<u32>())
    }

    fn cancel(&mut self) {
        if !self.done && self.stop.send(()).is_ok() {
            self.done = true;
            let mut seen = lock(&self.seen);
            seen.running -= 1;
            seen.stopped.push(self.effect.clone());
        }
    }
}

/// A run's journal in a temporary directory, and how to drive it.
pub(crate) struct Rig {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub platform: Arc<TestPlatform>,
    pub shutdown: Arc<AtomicBool>,
    pub max_parallel: usize,
    pub non_interactive: bool,
    pub faults: Faults,
    /// The run's journaled options (a budget, say).
    pub run_options: Value,
    pub prices: crate::prices::Prices,
}

impl Rig {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tutti.db");
        Self {
            _dir: dir,
            path,
            platform: Arc::default(),
            shutdown: Arc::default(),
            max_parallel: 16,
            non_interactive: false,
            faults: Faults::default(),
            run_options: json!({}),
            prices: crate::prices::Prices::default(),
        }
    }

    pub(crate) fn options(&self) -> Options {
        Options {
            run_id: RUN.into(),
            workdir: PathBuf::from("/"),
            max_parallel: self.max_parallel,
            non_interactive: self.non_interactive,
            simulate: false,
            until_blocked: false,
            holder: self.platform.lease_holder(),
            platform: Arc::clone(&self.platform) as Arc<dyn Platform>,
            faults: self.faults.clone(),
            agent_env: Vec::new(),
            msg_secret: "secret".into(),
            detach_reason: || "interrupted by the test",
            prices: self.prices.clone(),
        }
    }

    fn drive(
        &self,
        host: &mut dyn ProcessHost,
        harnesses: Vec<Arc<dyn Harness>>,
        go: impl FnOnce(Driver<'_>) -> Result<RunEnd, Error>,
    ) -> Result<RunEnd, Error> {
        let mut set = Harnesses::new();
        for h in harnesses {
            set.add(h);
        }
        let store = SqliteStore::open(&self.path).expect("open journal");
        let writer = Writer::spawn(Box::new(SqliteStore::open(&self.path).expect("open journal"))).expect("writer");
        let last = writer.clone();
        let mut observer = Silent;
        let shutdown = Arc::clone(&self.shutdown);
        let driver = Driver::new(self.options(), writer, Box::new(store), set, host, &mut observer, shutdown);
        let end = go(driver);
        drop(last.shutdown());
        end
    }

    /// Start the run and drive it to its end.
    pub(crate) fn run(&self, host: &mut dyn ProcessHost, harnesses: Vec<Arc<dyn Harness>>) -> RunEnd {
        let new = NewRun {
            process: "test.js".into(),
            inputs: Value::Null,
            code_hash: "code".into(),
            modules: Vec::new(),
            options: self.run_options.clone(),
        };
        self.drive(host, harnesses, |d| d.create(new)).expect("run")
    }

    /// Take the run over again, as `tutti resume` does.
    pub(crate) fn resume(&self, host: &mut dyn ProcessHost, harnesses: Vec<Arc<dyn Harness>>) -> Result<RunEnd, Error> {
        self.resume_with(host, harnesses, Changes::Refuse)
    }

    /// Take the run over again, as `tutti resume` does, with `--accept-changes` when `changes` says so.
    pub(crate) fn resume_with(
        &self,
        host: &mut dyn ProcessHost,
        harnesses: Vec<Arc<dyn Harness>>,
        changes: Changes,
    ) -> Result<RunEnd, Error> {
        self.shutdown.store(false, Ordering::SeqCst);
        self.drive(host, harnesses, |d| d.resume("code", changes))
    }

    pub(crate) fn events(&self) -> Vec<Event> {
        let store = SqliteStore::open(&self.path).expect("open journal");
        store.read(&RUN.to_string(), 0).expect("read").into_iter().map(|r| r.event).collect()
    }

    /// Queue a command for the run, as the CLI does.
    pub(crate) fn post(path: &std::path::Path, command: &Command) {
        let mut store = SqliteStore::open(path).expect("open journal");
        store.post_command(&RUN.to_string(), command).expect("post");
    }
}

pub(crate) fn arc(h: Probe) -> (Arc<dyn Harness>, Arc<Mutex<Seen>>) {
    let seen = Arc::clone(&h.seen);
    (Arc::new(h), seen)
}

pub(crate) fn resolved(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::EffectResolved { effect, .. } | Event::EffectCancelled { effect, .. } => Some(effect.to_string()),
            _ => None,
        })
        .collect()
}

pub(crate) fn count(events: &[Event], pred: impl Fn(&Event) -> bool) -> usize {
    events.iter().filter(|e| pred(e)).count()
}

pub(crate) fn ids(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("root/{i}")).collect()
}
