//! The journal's wire format: every fact tutti records is an [`Event`]. Stored events are versioned
//! ([`SCHEMA_VERSION`]); enums are internally or externally tagged, never untagged or flattened, so that a
//! journal written today reads the same tomorrow. Large values live out of line as [`Payload::Blob`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the event schema written by this build. Bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Position of an event in its run's journal, starting at 1.
pub type Seq = u64;

/// A run id: a ULID in its canonical 26-character text form.
pub type RunId = String;

/// An effect identity: scope path plus call index, e.g. `root/3`, `root/parallel:2/0`, or for a group member's
/// effect `group:reviewers/alice/4`. Serialized as the plain string.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(transparent)]
pub struct EffectId(String);

impl EffectId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The group member whose effect this is (`group:GROUP/MEMBER/...` → `(GROUP, MEMBER)`); `None` for an
    /// effect outside any group.
    pub fn member(&self) -> Option<(&str, &str)> {
        let rest = self.0.strip_prefix("group:")?;
        let mut parts = rest.splitn(3, '/');
        match (parts.next(), parts.next()) {
            (Some(group), Some(member)) => Some((group, member)),
            _ => None,
        }
    }

    /// Where messages to and from this effect go: `GROUP/MEMBER` for a member's effect, else the id itself.
    pub fn address(&self) -> String {
        match self.member() {
            Some((group, member)) => format!("{group}/{member}"),
            None => self.0.clone(),
        }
    }
}

impl std::ops::Deref for EffectId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for EffectId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for EffectId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for EffectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for EffectId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl From<&str> for EffectId {
    fn from(id: &str) -> Self {
        Self(id.to_string())
    }
}

impl From<&String> for EffectId {
    fn from(id: &String) -> Self {
        Self(id.clone())
    }
}

impl From<EffectId> for String {
    fn from(id: EffectId) -> Self {
        id.0
    }
}

impl PartialEq<str> for EffectId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for EffectId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for EffectId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<EffectId> for str {
    fn eq(&self, other: &EffectId) -> bool {
        self == other.0
    }
}

impl PartialEq<EffectId> for &str {
    fn eq(&self, other: &EffectId) -> bool {
        *self == other.0
    }
}

impl PartialEq<EffectId> for String {
    fn eq(&self, other: &EffectId) -> bool {
        *self == other.0
    }
}

/// A JSON value stored inline, or a reference to a blob holding it (for values over a few KiB).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    Inline(Value),
    Blob { hash: String, size: u64 },
}

impl Payload {
    pub fn null() -> Self {
        Payload::Inline(Value::Null)
    }
}

/// A structured error, shaped like a JavaScript error: `name`, `message`, optional `data`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ErrorInfo {
    pub name: String,
    pub message: String,
    /// Absent when `None`; `Some(Value::Null)` is stored as `null` and read back as such.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub data: Option<Value>,
}

impl ErrorInfo {
    pub fn new(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self { name: name.into(), message: message.into(), data: None }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// A field that is present, even as `null`, is `Some`: plain `Option` would read `null` back as `None`.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// How an effect ended.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Ok { value: Payload },
    Error { error: ErrorInfo },
}

/// Terminal and non-terminal states of a run, derived from its events.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
    Halted,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Halted => "halted",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// The inverse of [`RunStatus::as_str`].
    pub fn parse(s: &str) -> Option<RunStatus> {
        match s {
            "running" => Some(RunStatus::Running),
            "completed" => Some(RunStatus::Completed),
            "failed" => Some(RunStatus::Failed),
            "halted" => Some(RunStatus::Halted),
            "cancelled" => Some(RunStatus::Cancelled),
            _ => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        self != RunStatus::Running
    }
}

/// One module of a process's module graph, with the hash of its source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ModuleHash {
    pub path: String,
    pub hash: String,
}

/// What an attempt consumed, as its harness reported it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// Cost in US dollars: as the harness reported it, or from the price table (then `priced` says which).
    /// `None` with tokens is unpriced usage, never $0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// The model the attempt used, when the harness knows it (the price table is per model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Where `cost_usd` came from when the harness did not report it: the price table's entry, e.g.
    /// `default prices (2026-12-01)` or `tutti.toml [prices."gpt-5.5"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priced: Option<String>,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.cost_usd = match (self.cost_usd, other.cost_usd) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        if self.model.is_none() {
            self.model.clone_from(&other.model);
        }
    }

    /// Every token the model processed: input, output, and cache reads and writes.
    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens
    }
}

/// A member of a group, as opened.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MemberInfo {
    pub name: String,
    /// The harness the member is bound to (None: routed like any task).
    pub harness: Option<String>,
}

/// Who gave a control command (`tutti approve`, `post`, `cancel`, or the dashboard): kept in the journal so
/// that a person's decision can be told apart from anything else.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Actor {
    /// The login name of the user.
    pub user: String,
    pub host: String,
    /// The terminal the command came from (`/dev/pts/3`), if any.
    pub tty: Option<String>,
    pub pid: u32,
    /// `cli` or `dashboard`.
    pub via: String,
}

/// Every fact tutti records. Room is left for groups and messages (later schema additions are new
/// variants, which old readers reject with a clear error rather than misread).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    RunCreated {
        process: String,
        inputs: Payload,
        code_hash: String,
        modules: Vec<ModuleHash>,
        /// Options the run was started with (max_parallel, harness, non_interactive, ...).
        options: Value,
    },
    RunCompleted {
        output: Payload,
    },
    RunFailed {
        error: ErrorInfo,
    },
    RunHalted {
        reason: String,
        payload: Payload,
    },
    RunCancelled {
        reason: String,
    },
    /// A driver took over the run (start or resume).
    DriverAttached {
        holder: String,
        resumed: bool,
    },
    /// The driver let go of the run without ending it (Ctrl-C, SIGTERM); `interrupted` lists the effects whose
    /// process trees it killed. They run again on `tutti resume`.
    DriverDetached {
        reason: String,
        interrupted: Vec<EffectId>,
    },
    ProcessCodeChanged {
        old_hash: String,
        new_hash: String,
    },
    EffectRequested {
        effect: EffectId,
        scope: String,
        task_id: String,
        kind: String,
        /// Digest of the canonical JSON of the arguments; replay compares it.
        digest: String,
        title: Option<String>,
        /// `file:line:column` of the call in the process source.
        callsite: Option<String>,
        args: Payload,
        task: Payload,
    },
    /// Which harness an effect goes to, and why (preference, default, capabilities, fallback).
    EffectRouted {
        effect: EffectId,
        harness: String,
        reason: String,
    },
    EffectStarted {
        effect: EffectId,
        attempt: u32,
        harness: String,
        pid: Option<u32>,
    },
    /// A worker claimed the attempt from the work queue (distributed mode). `claim` counts this attempt's
    /// claims: a claim after the first is a re-dispatch, and `previous` is the worker whose lease expired.
    EffectClaimed {
        effect: EffectId,
        attempt: u32,
        worker: String,
        claim: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<String>,
    },
    /// An effect that was running when its driver died is dispatched again.
    EffectRedispatched {
        effect: EffectId,
        attempt: u32,
        reason: String,
    },
    EffectResolved {
        effect: EffectId,
        attempt: u32,
        outcome: Outcome,
    },
    EffectCancelled {
        effect: EffectId,
        reason: String,
    },
    /// A person's control command, as the driver applied it: `approve`, `reject`, `post` or `cancel`, on an
    /// effect or (for `cancel`) the whole run. Journaled just before its consequences.
    ControlApplied {
        action: String,
        effect: Option<EffectId>,
        by: Actor,
    },
    /// Tokens and cost of one attempt of an effect.
    EffectUsage {
        effect: EffectId,
        attempt: u32,
        harness: String,
        usage: Usage,
    },
    /// A progress note from a running effect's agent (`progress` tool of `tutti mcp`).
    EffectProgress {
        effect: EffectId,
        message: String,
    },
    /// What an agent CLI printed during one attempt: its event stream (the last MiB; kept in a blob when large)
    /// and the tail of its stderr. `tutti logs` renders it.
    EffectTranscript {
        effect: EffectId,
        attempt: u32,
        harness: String,
        stdout: Payload,
        stderr: String,
    },
    Log {
        scope: String,
        message: String,
    },
    /// A named group with its members; the same names give the same identities after a restart. `budget`
    /// bounds the group's spend, `member_budget` each member's (`{ usd, tokens, turns, timeMs, onExceed }`).
    GroupOpened {
        group: String,
        members: Vec<MemberInfo>,
        persistent: bool,
        /// Absent when `None`; a `null` written by the process is kept as `Some(Value::Null)`.
        #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
        budget: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
        member_budget: Option<Value>,
    },
    /// Partial results of a fan-in (`checkpointEvery`), or an explicit `ctx.checkpoint` (group empty).
    GroupCheckpoint {
        group: String,
        completed: u64,
        value: Payload,
    },
    GroupClosed {
        group: String,
    },
    /// A member's harness session, from its first turn on (and whenever the harness starts a new one), and
    /// for a member of an isolated group its worktree and branch (then `session` is empty until it has one).
    MemberBound {
        group: String,
        member: String,
        harness: String,
        session: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worktree: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch: Option<String>,
    },
    /// A message between the process, a member's agent and the coordinator. Addresses: `coordinator`,
    /// `GROUP/MEMBER`, `GROUP/*`; an effect outside any group is addressed by its id.
    MessageSent {
        id: String,
        from: String,
        to: String,
        body: Payload,
    },
    /// A message handed to an effect (prepended to a member's next turn).
    MessageDelivered {
        id: String,
        effect: EffectId,
    },
    /// `tutti resume --accept-changes`: the edited process calls `effect` with other arguments (or another
    /// task) than the journal recorded, and the resuming driver took the new call. The journaled requests and
    /// results of `superseded` — `effect` and every effect requested after it, in journal order — no longer
    /// count: replay forgets them here, and each runs again when the process calls it (a later
    /// `effect_requested` for the same id).
    ChangesAccepted {
        effect: EffectId,
        old_task_id: String,
        old_args: Payload,
        new_task_id: String,
        new_args: Payload,
        superseded: Vec<EffectId>,
    },
    /// Attempt `attempt` of `effect` failed with `error`, and its retry policy (`retry` on the task) gives it
    /// another: retry number `retry` starts no earlier than `wake_ms` (a durable wait: a driver that resumes
    /// during the backoff waits for the rest of it). A later `effect_started` is that retry.
    EffectRetrying {
        effect: EffectId,
        attempt: u32,
        retry: u32,
        wake_ms: i64,
        error: ErrorInfo,
    },
    /// Attempt `attempt` of `effect` may start: every budgeted scope it counts against (`scopes`, e.g. `run`,
    /// `group reviewers`, `member reviewers/alice`, `harness claude`, `task root/3`) has room for what it is
    /// expected to spend, `usd` and `tokens`, held until the attempt ends.
    BudgetReserved {
        effect: EffectId,
        attempt: u32,
        scopes: Vec<String>,
        usd: f64,
        tokens: u64,
    },
    /// A budget decision: `scope` reached its limit of `measure` (`usd`, `tokens`, `turns` or `timeMs`) with
    /// `spent` against `limit`. `action` is `refused` (`effect` could not start and fails with
    /// `BudgetExceeded`), `finish` (the scope's running attempts are left to finish) or `cancel` (they are
    /// stopped at once).
    BudgetExceeded {
        scope: String,
        measure: String,
        limit: f64,
        spent: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        effect: Option<EffectId>,
        action: String,
    },
}

impl Event {
    /// The short name stored beside the body, used for filtering and listings.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::RunCreated { .. } => "run_created",
            Event::RunCompleted { .. } => "run_completed",
            Event::RunFailed { .. } => "run_failed",
            Event::RunHalted { .. } => "run_halted",
            Event::RunCancelled { .. } => "run_cancelled",
            Event::DriverAttached { .. } => "driver_attached",
            Event::DriverDetached { .. } => "driver_detached",
            Event::ProcessCodeChanged { .. } => "process_code_changed",
            Event::EffectRequested { .. } => "effect_requested",
            Event::EffectRouted { .. } => "effect_routed",
            Event::EffectStarted { .. } => "effect_started",
            Event::EffectClaimed { .. } => "effect_claimed",
            Event::EffectRedispatched { .. } => "effect_redispatched",
            Event::EffectResolved { .. } => "effect_resolved",
            Event::EffectCancelled { .. } => "effect_cancelled",
            Event::ControlApplied { .. } => "control_applied",
            Event::EffectProgress { .. } => "effect_progress",
            Event::EffectTranscript { .. } => "effect_transcript",
            Event::EffectUsage { .. } => "effect_usage",
            Event::Log { .. } => "log",
            Event::GroupOpened { .. } => "group_opened",
            Event::GroupCheckpoint { .. } => "group_checkpoint",
            Event::GroupClosed { .. } => "group_closed",
            Event::MemberBound { .. } => "member_bound",
            Event::MessageSent { .. } => "message_sent",
            Event::MessageDelivered { .. } => "message_delivered",
            Event::ChangesAccepted { .. } => "changes_accepted",
            Event::EffectRetrying { .. } => "effect_retrying",
            Event::BudgetReserved { .. } => "budget_reserved",
            Event::BudgetExceeded { .. } => "budget_exceeded",
        }
    }

    /// The run status this event moves the run to, if it ends it.
    pub fn terminal_status(&self) -> Option<RunStatus> {
        match self {
            Event::RunCompleted { .. } => Some(RunStatus::Completed),
            Event::RunFailed { .. } => Some(RunStatus::Failed),
            Event::RunHalted { .. } => Some(RunStatus::Halted),
            Event::RunCancelled { .. } => Some(RunStatus::Cancelled),
            _ => None,
        }
    }

    /// Every payload the event carries, so that a backend can move large ones out of line.
    pub fn payloads_mut(&mut self) -> Vec<&mut Payload> {
        match self {
            Event::RunCreated { inputs, .. } => vec![inputs],
            Event::RunCompleted { output } => vec![output],
            Event::RunHalted { payload, .. } => vec![payload],
            Event::EffectRequested { args, task, .. } => vec![args, task],
            Event::EffectResolved { outcome: Outcome::Ok { value }, .. } => vec![value],
            Event::GroupCheckpoint { value, .. } => vec![value],
            Event::MessageSent { body, .. } => vec![body],
            Event::EffectTranscript { stdout, .. } => vec![stdout],
            Event::ChangesAccepted { old_args, new_args, .. } => vec![old_args, new_args],
            Event::RunFailed { .. }
            | Event::RunCancelled { .. }
            | Event::DriverAttached { .. }
            | Event::DriverDetached { .. }
            | Event::ProcessCodeChanged { .. }
            | Event::EffectRouted { .. }
            | Event::EffectStarted { .. }
            | Event::EffectClaimed { .. }
            | Event::EffectRedispatched { .. }
            | Event::EffectRetrying { .. }
            | Event::BudgetReserved { .. }
            | Event::BudgetExceeded { .. }
            | Event::EffectResolved { .. }
            | Event::EffectCancelled { .. }
            | Event::ControlApplied { .. }
            | Event::EffectProgress { .. }
            | Event::EffectUsage { .. }
            | Event::Log { .. }
            | Event::GroupOpened { .. }
            | Event::GroupClosed { .. }
            | Event::MemberBound { .. }
            | Event::MessageDelivered { .. } => Vec::new(),
        }
    }
}

/// An event about to be appended; the caller stamps the time so that `ctx.now()` replays exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub ts_ms: i64,
    pub event: Event,
}

/// A stored event.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Record {
    pub seq: Seq,
    pub ts_ms: i64,
    pub event: Event,
}

#[cfg(test)]
mod tests;
