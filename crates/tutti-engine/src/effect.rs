//! The lifecycle of one effect inside a driver, as an explicit state machine.
//!
//! | from     | event                                   | to       |
//! |----------|-----------------------------------------|----------|
//! | Queued   | dispatched to a harness                 | Running  |
//! | Queued   | is a breakpoint or a sleep              | Waiting  |
//! | Queued   | run cancelled / finished                | Done     |
//! | Running  | harness finished, timed out, cancelled  | Done     |
//! | Running  | harness unavailable, falling back       | Queued   |
//! | Running  | answer failed its schema: one more turn | Queued   |
//! | Waiting  | approved, posted, woke, cancelled       | Done     |
//! | Running  | failed, its retry policy gives another  | Backoff  |
//! | Queued   | resumed during a journaled backoff      | Backoff  |
//! | Backoff  | the backoff is over                     | Queued   |
//! | Backoff  | posted, cancelled, run finished         | Done     |
//!
//! `Done` is final. Any other transition is a bug and is refused by [`State::check`].

use std::time::Instant;

use crate::host::EffectRequest;

/// The state of an effect.
pub(crate) enum State {
    Queued,
    /// An attempt runs on `harness`; the executor holds its handle.
    Running {
        harness: String,
    },
    /// Waiting for something that is not a harness: a person (`wake_ms` None) or the clock.
    Waiting {
        wake_ms: Option<i64>,
        since: Instant,
    },
    /// A failed attempt's retry waits until `wake_ms` (wall clock, as journaled in `effect_retrying`).
    Backoff {
        wake_ms: i64,
        since: Instant,
    },
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Queued,
    Running,
    Waiting,
    Backoff,
    Done,
}

impl State {
    pub(crate) fn phase(&self) -> Phase {
        match self {
            State::Queued => Phase::Queued,
            State::Running { .. } => Phase::Running,
            State::Waiting { .. } => Phase::Waiting,
            State::Backoff { .. } => Phase::Backoff,
            State::Done => Phase::Done,
        }
    }
}

/// Whether the lifecycle allows moving from `from` to `to`.
pub(crate) fn allowed(from: Phase, to: Phase) -> bool {
    matches!(
        (from, to),
        (Phase::Queued, Phase::Running)
            | (Phase::Queued, Phase::Waiting)
            | (Phase::Queued, Phase::Done)
            | (Phase::Running, Phase::Done)
            | (Phase::Running, Phase::Queued)
            | (Phase::Waiting, Phase::Done)
            | (Phase::Running, Phase::Backoff)
            | (Phase::Queued, Phase::Backoff)
            | (Phase::Backoff, Phase::Queued)
            | (Phase::Backoff, Phase::Done)
    )
}

/// One effect known to the driver.
pub(crate) struct Effect {
    pub(crate) request: EffectRequest,
    pub(crate) attempt: u32,
    /// The harness chosen by routing (None for breakpoints and sleeps).
    pub(crate) harness: Option<String>,
    /// Harnesses to fall back to, in order, if this one turns out to be unavailable.
    pub(crate) fallbacks: std::collections::VecDeque<String>,
    /// The follow-up prompt of a corrective turn waiting to start; `corrected` once one has been given.
    pub(crate) correction: Option<String>,
    pub(crate) corrected: bool,
    pub(crate) state: State,
    /// Progress notes journaled for the current attempt (capped).
    pub(crate) progress: usize,
    /// Retries its retry policy has granted so far (journaled as `effect_retrying`).
    pub(crate) retries: u32,
    /// Its place in the scheduler's line (priority, group share), fixed by its request.
    pub(crate) class: crate::driver::scheduler::Class,
}

impl Effect {
    pub(crate) fn new(request: EffectRequest, attempt: u32, harness: Option<String>) -> Self {
        let fallbacks = Default::default();
        Self {
            request,
            attempt,
            harness,
            fallbacks,
            correction: None,
            corrected: false,
            state: State::Queued,
            progress: 0,
            retries: 0,
            class: Default::default(),
        }
    }

    /// Move to `next`, returning the previous state. Panics on a transition the table forbids: that is a
    /// bug in the driver, never a user error.
    pub(crate) fn transition(&mut self, next: State) -> State {
        let (from, to) = (self.state.phase(), next.phase());
        assert!(allowed(from, to), "effect {}: illegal transition {from:?} -> {to:?}", self.request.effect);
        std::mem::replace(&mut self.state, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Phase::*;

    #[test]
    fn transition_table() {
        let all = [Queued, Running, Waiting, Backoff, Done];
        let legal = [
            (Queued, Running),
            (Queued, Waiting),
            (Queued, Done),
            (Running, Done),
            (Running, Queued),
            (Waiting, Done),
            (Running, Backoff),
            (Queued, Backoff),
            (Backoff, Queued),
            (Backoff, Done),
        ];
        for from in all {
            for to in all {
                assert_eq!(allowed(from, to), legal.contains(&(from, to)), "{from:?} -> {to:?}");
            }
        }
    }

    fn effect() -> Effect {
        let request = EffectRequest {
            effect: "root/0".into(),
            scope: "root".into(),
            task_id: "t".into(),
            kind: "shell".into(),
            title: None,
            callsite: None,
            args: serde_json::Value::Null,
            task: serde_json::Value::Null,
        };
        Effect::new(request, 1, None)
    }

    #[test]
    fn waiting_then_done() {
        let mut e = effect();
        e.transition(State::Waiting { wake_ms: Some(5), since: Instant::now() });
        assert_eq!(e.state.phase(), Waiting);
        e.transition(State::Done);
        assert_eq!(e.state.phase(), Done);
    }

    #[test]
    #[should_panic(expected = "illegal transition Done -> Queued")]
    fn done_is_final() {
        let mut e = effect();
        e.transition(State::Done);
        e.transition(State::Queued);
    }
}
