//! The one seam between the engine and the outside world that does work: the [`Harness`] trait. The engine
//! hands a harness a [`Job`] and a [`Reporter`]; the harness runs it (a subprocess, an agent CLI, or in
//! process) and reports exactly one [`Outcome`]. Routing and adapters live in `tutti-harness`.

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::time::Duration;

use serde_json::Value;
use tutti_journal::{EffectId, ErrorInfo};

/// One attempt at one effect.
#[derive(Clone, Debug)]
pub struct Job {
    pub run_id: String,
    pub effect: EffectId,
    pub attempt: u32,
    pub task_id: String,
    /// The task kind: `agent`, `shell`, `node`, `skill`, or a custom kind.
    pub kind: crate::kind::Kind,
    pub title: Option<String>,
    /// The whole task description returned by the task's builder.
    pub task: Value,
    pub args: Value,
    /// Where the work happens (a subprocess's current directory): the project root, or the effect's git
    /// worktree when its task asks for `isolation: "worktree"`.
    pub workdir: PathBuf,
    /// The project root: where `.tutti/` (harness homes, worktrees) lives, and what a relative `binary` in
    /// `tutti.toml` is relative to.
    pub project: PathBuf,
    /// The engine enforces this too; a harness may use it to set its own limits.
    pub timeout: Option<Duration>,
    /// Variables for the subprocess beyond the `TUTTI_*` ids: how its agent reaches the orchestrator
    /// (`TUTTI_HOME`, `TUTTI_MSG_TOKEN`, a `PATH` with `tutti` on it).
    pub env: Vec<(String, String)>,
    /// Messages for this turn, oldest first: a harness prepends them to the prompt.
    pub messages: Vec<Inbound>,
    /// The harness session to resume: a persistent group member's session from its earlier turns.
    pub session: Option<String>,
}

/// A message handed to an effect.
#[derive(Clone, Debug, PartialEq)]
pub struct Inbound {
    pub from: String,
    pub body: Value,
}

/// The most progress notes journaled for one attempt (harness reports and `tutti msg progress` together), so that
/// an agent that streams for hours grows the journal by a bounded amount.
pub const PROGRESS_CAP: usize = 200;

/// The key of an error's `data` that marks an unavailable harness (its environment failed, not the task): a
/// process may tell such failures apart.
pub const ENVIRONMENTAL: &str = "environmental";

/// What an attempt produced: a value, or why it did not.
pub type Outcome = Result<Value, Failure>;

/// Why an attempt produced no value. The dispatcher acts on the variant (fall back, give a corrective turn,
/// resolve) and turns it into the journal's [`ErrorInfo`] only when it journals the result.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The harness's environment failed, not the task: its program is missing, its credentials or network
    /// failed, its model was never reached. The effect may fall back to another harness.
    Unavailable(ErrorInfo),
    /// The agent finished, but its answer is not the JSON the task asked for; `raw` is what it gave. With an
    /// output schema this earns one corrective turn.
    Output { error: ErrorInfo, raw: Value },
    /// The task failed (a non-zero exit, an agent error, a timeout after the model answered).
    Task(ErrorInfo),
}

impl Failure {
    /// The error as journaled and handed to the process. An unavailable harness says so in `data`, under
    /// [`ENVIRONMENTAL`].
    pub fn into_error(self) -> ErrorInfo {
        match self {
            Failure::Unavailable(mut error) => {
                let mut data = match error.data.take() {
                    Some(Value::Object(map)) => map,
                    Some(other) => [("detail".to_string(), other)].into_iter().collect(),
                    None => serde_json::Map::new(),
                };
                data.insert(ENVIRONMENTAL.into(), Value::Bool(true));
                error.data = Some(Value::Object(data));
                error
            }
            Failure::Output { error, .. } | Failure::Task(error) => error,
        }
    }

    /// The error, as it will be journaled.
    pub fn error(&self) -> &ErrorInfo {
        match self {
            Failure::Unavailable(error) | Failure::Output { error, .. } | Failure::Task(error) => error,
        }
    }
}

impl From<ErrorInfo> for Failure {
    fn from(error: ErrorInfo) -> Self {
        Failure::Task(error)
    }
}

/// A message from a harness to the dispatcher.
#[derive(Debug)]
pub enum HarnessEvent {
    Finished {
        effect: EffectId,
        attempt: u32,
        outcome: Outcome,
    },
    /// The attempt's agent runs in (or started) this harness session; a member's next turn resumes it.
    Session {
        effect: EffectId,
        attempt: u32,
        session: String,
    },
    /// Tokens and cost the attempt used (sent before `Finished`; several reports add up).
    Usage {
        effect: EffectId,
        attempt: u32,
        usage: tutti_journal::Usage,
    },
    /// What the attempt's program printed (an agent CLI's event stream and stderr tail), journaled for
    /// `tutti logs`.
    Transcript {
        effect: EffectId,
        attempt: u32,
        stdout: String,
        stderr: String,
    },
    /// What the attempt is doing now (a tool call, a line of narration, a retry), journaled as progress.
    Progress {
        effect: EffectId,
        attempt: u32,
        message: String,
    },
    /// The attempt works in this git worktree, on this branch (an isolated task or member).
    Worktree {
        effect: EffectId,
        attempt: u32,
        path: String,
        branch: String,
    },
    /// A remote worker claimed the attempt (`claim` counts its claims; after the first, `previous` is the
    /// worker whose lease expired, and the attempt was re-dispatched).
    Claimed {
        effect: EffectId,
        attempt: u32,
        worker: String,
        claim: u32,
        previous: Option<String>,
    },
    /// Something the person running tutti should know about the attempt (journaled as a log line).
    Note {
        effect: EffectId,
        attempt: u32,
        message: String,
    },
}

/// A step applied to an attempt's outcome before it is reported (a worktree's commit, say).
type Then = Box<dyn FnOnce(Outcome) -> Outcome + Send>;

/// How a harness reports back. Cheap to clone; `finish` may be called from any thread.
#[derive(Clone)]
pub struct Reporter {
    effect: EffectId,
    attempt: u32,
    tx: Sender<crate::driver::Msg>,
    /// Steps a wrapping harness added, applied in order by `finish` (shared by the clones: one finish).
    then: std::sync::Arc<std::sync::Mutex<Vec<Then>>>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter").field("effect", &self.effect).field("attempt", &self.attempt).finish()
    }
}

impl Reporter {
    /// A reporter whose events arrive on `tx`: the dispatcher's channel, or a remote worker's own.
    pub fn new(effect: EffectId, attempt: u32, tx: Sender<crate::driver::Msg>) -> Self {
        Self { effect, attempt, tx, then: Default::default() }
    }

    /// Report that a remote worker claimed the attempt (the `claim`th time; `previous` lost it).
    pub fn claimed(&self, worker: String, claim: u32, previous: Option<String>) {
        self.send(|effect, attempt| HarnessEvent::Claimed { effect, attempt, worker, claim, previous });
    }

    /// Run `step` on the outcome before it is reported, on the thread that calls `finish`: a harness that
    /// wraps another (worktree isolation) finishes its own work there, off the dispatcher's thread. Steps
    /// added first run first.
    pub fn then(self, step: impl FnOnce(Outcome) -> Outcome + Send + 'static) -> Self {
        self.then.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Box::new(step));
        self
    }

    /// Report the harness session the attempt ran in (before `finish`).
    pub fn session(&self, session: String) {
        self.send(|effect, attempt| HarnessEvent::Session { effect, attempt, session });
    }

    /// Report what the attempt's program printed (before `finish`).
    pub fn transcript(&self, stdout: String, stderr: String) {
        self.send(|effect, attempt| HarnessEvent::Transcript { effect, attempt, stdout, stderr });
    }

    /// Report what the attempt is doing now; the dispatcher journals at most [`PROGRESS_CAP`] per attempt.
    pub fn progress(&self, message: String) {
        self.send(|effect, attempt| HarnessEvent::Progress { effect, attempt, message });
    }

    /// Report the git worktree and branch the attempt works in (before `finish`); a member's binding is journaled.
    pub fn worktree(&self, path: String, branch: String) {
        self.send(|effect, attempt| HarnessEvent::Worktree { effect, attempt, path, branch });
    }

    /// Tell the person running tutti something about the attempt (journaled as a log line of the effect).
    pub fn note(&self, message: String) {
        self.send(|effect, attempt| HarnessEvent::Note { effect, attempt, message });
    }

    /// Report tokens and cost the attempt used (before `finish`).
    pub fn usage(&self, usage: tutti_journal::Usage) {
        self.send(|effect, attempt| HarnessEvent::Usage { effect, attempt, usage });
    }

    /// Send the dispatcher an event about this attempt. It may already be gone (the run ended); then nobody
    /// needs it.
    fn send(&self, event: impl FnOnce(EffectId, u32) -> HarnessEvent) {
        let _ = self.tx.send(crate::driver::Msg::Harness(event(self.effect.clone(), self.attempt)));
    }

    /// Report the attempt's single outcome. Reports after cancellation are ignored by the dispatcher.
    pub fn finish(self, outcome: Outcome) {
        let steps = std::mem::take(&mut *self.then.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let outcome = steps.into_iter().fold(outcome, |outcome, step| step(outcome));
        let event = HarnessEvent::Finished { effect: self.effect, attempt: self.attempt, outcome };
        // The dispatcher may already be gone (run ended); then nobody needs the result.
        let _ = self.tx.send(crate::driver::Msg::Harness(event));
    }
}

/// A started attempt.
pub trait Running: Send {
    /// The process (group) id, when the attempt is a subprocess; journaled with the start.
    fn pid(&self) -> Option<u32>;
    /// Ask the attempt and everything it started (the whole process tree) to stop: a polite signal first,
    /// a forced kill after a grace period. Idempotent; returns at once.
    fn cancel(&mut self);

    /// Wait up to `timeout` for everything the attempt started to be gone; true if it is.
    fn wait_stopped(&mut self, timeout: Duration) -> bool {
        let _ = timeout;
        true
    }

    /// Kill whatever is left of the attempt now. Used when tutti itself is about to exit, so that nothing it
    /// started outlives it.
    fn force_stop(&mut self) {}
}

/// Why a harness could not start a job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start {what}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// An adapter that executes effects.
pub trait Harness: Send + Sync {
    fn name(&self) -> &str;

    /// True when running a job touches nothing outside tutti (the in-process `echo` harness): the request
    /// need not be durable before the job starts, because running it twice is unobservable.
    fn is_pure(&self) -> bool {
        false
    }

    /// True when the driver never starts its jobs: an effect routed here waits, like a breakpoint, for a
    /// result posted from outside (`tutti post`, an outer agent driving the run with `tutti iterate`).
    fn is_external(&self) -> bool {
        false
    }

    /// The retry policy for its tasks that set none (`[harness.NAME] retry`), in the form of a task's `retry`.
    fn retry(&self) -> Option<Value> {
        None
    }

    /// The most attempts this harness runs at once (`max_parallel` in `tutti.toml`); `None` means only the
    /// run's global limit applies.
    fn max_parallel(&self) -> Option<usize> {
        None
    }

    /// What this harness can do (`edit`, `shell`, `web`, `mcp`, `resume`, `structured-output`, ...): a task's
    /// `requires` picks among harnesses by these.
    fn capabilities(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether the harness can run at all here (its program installed, its credentials set); the reason when
    /// it cannot. Routing skips unavailable harnesses.
    fn availability(&self) -> Result<(), String> {
        Ok(())
    }

    /// About how much memory one running attempt takes (an agent CLI's turn: 150–720 MB). Without an explicit
    /// `max_parallel`, the harness runs only as many attempts at once as the machine's available memory fits.
    fn memory_per_attempt_mb(&self) -> Option<u64> {
        None
    }

    /// The version of the program behind the harness, when it has one and it can be found (`tutti doctor`).
    fn version(&self) -> Option<String> {
        None
    }

    /// Start `job`; the outcome arrives later through `reporter`.
    fn start(&self, job: Job, reporter: Reporter) -> Result<Box<dyn Running>, Error>;
}
