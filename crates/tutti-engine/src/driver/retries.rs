//! Retrying failed attempts under a task's retry policy (`retry.rs`): the decision is journaled as
//! `effect_retrying` with its wake time before anything else happens, the effect waits in `Backoff`, and when
//! the wait is over it goes back to the queue as its next attempt (a member's retry resumes its session like
//! any turn). On resume, an effect whose last journaled fact is a retry waits for the rest of its backoff.

use super::*;
use crate::retry::{FailureClass, Policy};

impl Driver<'_> {
    /// Give a failed attempt of `id` another try if its retry policy allows one for a failure of `class`;
    /// false leaves the failure to be resolved. `stop` stops the attempt's process (a timeout); otherwise its
    /// harness has already finished it.
    pub(super) fn retry_failed(&mut self, id: &EffectId, class: FailureClass, error: &ErrorInfo, stop: bool) -> bool {
        let Some(e) = self.effects.get(id).filter(|e| e.state.phase() == Phase::Running) else { return false };
        // The task's own policy, else its harness's default.
        let default = || e.harness.as_ref().and_then(|h| self.harnesses.get(h)).and_then(|h| h.retry());
        let policy = match Policy::of(&e.request.task) {
            Ok(Some(policy)) => Some(policy),
            Ok(None) => default().and_then(|retry| Policy::of(&serde_json::json!({ "retry": retry })).ok().flatten()),
            Err(_) => None,
        };
        let Some(policy) = policy else { return false };
        if !policy.allows(class, e.retries) {
            return false;
        }
        let (attempt, retry) = (e.attempt, e.retries + 1);
        let now = wall_ms();
        let delay = policy.delay(retry, (now.rem_euclid(1000)) as f64 / 1000.0);
        let wake_ms = now + delay.as_millis() as i64;
        let Some(e) = self.effects.get_mut(id) else { return false };
        e.retries = retry;
        let previous = e.transition(State::Backoff { wake_ms, since: Instant::now() });
        self.release_slot(id, previous, stop);
        self.record(Event::EffectRetrying { effect: id.clone(), attempt, retry, wake_ms, error: error.clone() });
        let message = format!(
            "retry {retry} of {} in {} ms after {}: {}",
            policy.max,
            delay.as_millis(),
            error.name,
            error.message.lines().next().unwrap_or("")
        );
        self.observer.progress(Progress::Log { scope: id.to_string(), message });
        true
    }

    /// Effects whose backoff is over go back to the queue, ahead of new work, as their next attempt.
    pub(super) fn wake_backoffs(&mut self, now_ms: i64) {
        let mut due: Vec<EffectId> = self
            .effects
            .iter()
            .filter(|(_, e)| matches!(e.state, State::Backoff { wake_ms, .. } if wake_ms <= now_ms))
            .map(|(id, _)| id.clone())
            .collect();
        due.sort();
        for id in due.into_iter().rev() {
            if let Some(e) = self.effects.get_mut(&id) {
                e.attempt += 1;
                e.progress = 0;
                e.transition(State::Queued);
                self.scheduler.push_front(id);
            }
        }
    }

    /// After replay: an unresolved effect keeps the retries the journal granted it, and one whose last fact is
    /// a retry waits until that retry's journaled wake time (true: it is not to be dispatched now).
    pub(super) fn restore_backoff(&mut self, id: &EffectId, retries: u32, backoff: Option<(u32, i64)>) -> bool {
        let Some(e) = self.effects.get_mut(id) else { return false };
        e.retries = retries;
        let Some((attempt, wake_ms)) = backoff else { return false };
        e.attempt = attempt;
        e.transition(State::Backoff { wake_ms, since: Instant::now() });
        true
    }
}
