//! The engine's view of a running process: the [`ProcessHost`] trait (implemented by `tutti-js` over QuickJS)
//! and what a host reports after each step. A host is deterministic: given the same start and the same
//! deliveries in the same order, it makes the same requests.

use serde_json::Value;
use tutti_journal::{EffectId, ErrorInfo};

/// An effect the process asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct EffectRequest {
    pub effect: EffectId,
    pub scope: String,
    pub task_id: String,
    pub kind: crate::kind::Kind,
    pub title: Option<String>,
    pub callsite: Option<String>,
    pub args: Value,
    /// The task description the task's builder returned.
    pub task: Value,
}

/// What the process did during one step.
#[derive(Clone, Debug, PartialEq)]
pub enum HostEvent {
    Request(EffectRequest),
    Log {
        scope: String,
        message: String,
    },
    /// The process function returned (Ok) or threw (Err).
    Finished(Result<Value, ErrorInfo>),
    /// The process called `ctx.halt`.
    Halted {
        reason: String,
        payload: Value,
    },
    /// The process gave up on an effect (a lost race, a decided fan-in, `handle.cancel()`).
    Cancel {
        effect: EffectId,
    },
    /// `ctx.group(name, opts)`: `budget` and `member_budget` as the process gave them (checked by the driver).
    GroupOpened {
        group: String,
        members: Vec<tutti_journal::event::MemberInfo>,
        persistent: bool,
        budget: Option<Value>,
        member_budget: Option<Value>,
    },
    /// Partial fan-in results, or an explicit `ctx.checkpoint` (empty group).
    Checkpoint {
        group: String,
        completed: u64,
        value: Value,
    },
    GroupClosed {
        group: String,
    },
    /// `ctx.send(to, body)` from code running in `scope`.
    Send {
        scope: String,
        to: String,
        body: Value,
    },
}

/// A failure of the host itself (not of the process code, which ends the run as failed instead).
#[derive(Debug, thiserror::Error)]
#[error("process host: {message}")]
pub struct HostError {
    pub message: String,
}

/// A loaded process, run one step at a time. Each call runs the process until it is blocked on effects.
pub trait ProcessHost {
    /// Call the process function with `inputs`. `now_ms` is what `ctx.now()` and `Date.now()` return until
    /// the next step; `seed` seeds `Math.random`.
    fn start(&mut self, run_id: &str, inputs: &Value, seed: u32, now_ms: i64) -> Result<Vec<HostEvent>, HostError>;

    /// While replaying, a host may leave out what the journal already holds (call sites, task descriptions):
    /// requests then carry `callsite: None` and `task: Null`.
    fn set_replaying(&mut self, replaying: bool) {
        let _ = replaying;
    }

    /// Start over with the process freshly loaded (used to locate a divergent call after a failed replay).
    fn restart(&mut self) -> Result<(), HostError> {
        Err(HostError { message: "this process host cannot restart".into() })
    }

    /// Hand the process a message addressed to the coordinator and run what it wakes.
    fn message(&mut self, from: &str, body: &Value, now_ms: i64) -> Result<Vec<HostEvent>, HostError>;

    /// Tell the process a member's harness session (`member.session`); runs nothing.
    fn bound(&mut self, member: &str, session: &str) -> Result<(), HostError> {
        let _ = (member, session);
        Ok(())
    }

    /// Settle the promise of `effect` with `outcome` and run what it wakes.
    fn deliver(
        &mut self,
        effect: &str,
        outcome: &Result<Value, ErrorInfo>,
        now_ms: i64,
    ) -> Result<Vec<HostEvent>, HostError>;
}
