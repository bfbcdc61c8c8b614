//! Retry policies: `retry: { max, backoffMs, factor, jitter, on }` on a task description (also set by
//! `ctx.task(def, args, { retry })`). A failed attempt whose failure class the policy names, with retries left,
//! is tried again after a backoff of `backoffMs * factor^(n-1)` (± `jitter` of it) for retry `n`. The driver
//! journals each decision as `effect_retrying` with its wake time, so a restart during the backoff waits
//! for the rest of it.

use std::time::Duration;

use serde_json::Value;
use tutti_journal::ErrorInfo;

use crate::harness::{ENVIRONMENTAL, Failure};

/// What kind of failure an attempt had, for `retry.on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailureClass {
    /// The harness's environment: not installed, auth, network, a model never reached.
    Environmental,
    /// The attempt ran past its timeout.
    Timeout,
    /// Anything else the task itself failed with.
    Error,
}

impl FailureClass {
    fn name(self) -> &'static str {
        match self {
            FailureClass::Environmental => "environmental",
            FailureClass::Timeout => "timeout",
            FailureClass::Error => "error",
        }
    }

    /// The class of a harness's failure.
    pub(crate) fn of_failure(failure: &Failure) -> Self {
        match failure {
            Failure::Unavailable(_) => FailureClass::Environmental,
            other => Self::of_error(other.error()),
        }
    }

    /// The class of a journaled error.
    pub(crate) fn of_error(error: &ErrorInfo) -> Self {
        let environmental = error.data.as_ref().and_then(|d| d.get(ENVIRONMENTAL)).and_then(Value::as_bool);
        if environmental == Some(true) || error.name == "Unreachable" {
            FailureClass::Environmental
        } else if matches!(error.name.as_str(), "Timeout" | "TimeoutError") {
            FailureClass::Timeout
        } else {
            FailureClass::Error
        }
    }
}

/// A task's retry policy.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Policy {
    /// Retries after the first attempt.
    pub(crate) max: u32,
    pub(crate) backoff: Duration,
    pub(crate) factor: f64,
    /// A fraction of each backoff, added or taken at random.
    pub(crate) jitter: f64,
    pub(crate) on: Vec<FailureClass>,
}

impl Policy {
    /// The policy a task description sets (`retry`), if any; `Err` says what is wrong with it.
    pub(crate) fn of(task: &Value) -> Result<Option<Policy>, String> {
        let Some(retry) = task.get("retry").filter(|r| !r.is_null()) else { return Ok(None) };
        let number = |key: &str, default: f64| -> Result<f64, String> {
            match retry.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v
                    .as_f64()
                    .filter(|n| n.is_finite() && *n >= 0.0)
                    .ok_or_else(|| format!("retry.{key} must be a number of at least 0, not {v}")),
            }
        };
        let max = number("max", 1.0)?;
        if max.fract() != 0.0 {
            return Err(format!("retry.max must be a whole number, not {max}"));
        }
        let jitter = number("jitter", 0.0)?;
        if jitter > 1.0 {
            return Err(format!("retry.jitter is a fraction of the backoff, at most 1, not {jitter}"));
        }
        let on = match retry.get("on") {
            None | Some(Value::Null) => vec![FailureClass::Environmental, FailureClass::Timeout, FailureClass::Error],
            Some(Value::Array(names)) => names.iter().map(class_named).collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(format!("retry.on must be a list such as [\"environmental\", \"timeout\"], not {other}"));
            }
        };
        Ok(Some(Policy {
            max: max as u32,
            backoff: Duration::from_millis(number("backoffMs", 1000.0)? as u64),
            factor: number("factor", 2.0)?,
            jitter,
            on,
        }))
    }

    /// The wait before retry `n` (1 for the first), with `unit` in [0, 1) picking the jitter.
    pub(crate) fn delay(&self, n: u32, unit: f64) -> Duration {
        let base = self.backoff.as_secs_f64() * self.factor.powi(n.saturating_sub(1) as i32);
        let spread = base * self.jitter * (2.0 * unit - 1.0);
        Duration::from_secs_f64((base + spread).clamp(0.0, 86_400.0))
    }

    /// Whether a failure of `class` after `retries` retries gets another.
    pub(crate) fn allows(&self, class: FailureClass, retries: u32) -> bool {
        retries < self.max && self.on.contains(&class)
    }
}

/// Why `retry` (a policy in the form of a task's `retry`) is not a valid policy, if it is not.
pub fn check(retry: &Value) -> Result<(), String> {
    Policy::of(&serde_json::json!({ "retry": retry })).map(drop)
}

fn class_named(name: &Value) -> Result<FailureClass, String> {
    let all = [FailureClass::Environmental, FailureClass::Timeout, FailureClass::Error];
    all.into_iter()
        .find(|c| name.as_str() == Some(c.name()))
        .ok_or_else(|| format!("retry.on: {name} is not a failure class (environmental, timeout, error)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_policy_reads_its_fields_with_defaults() {
        assert_eq!(Policy::of(&json!({})), Ok(None));
        let p = Policy::of(&json!({"retry": {"max": 3, "backoffMs": 500, "factor": 2}})).unwrap().unwrap();
        assert_eq!((p.max, p.backoff, p.factor, p.jitter), (3, Duration::from_millis(500), 2.0, 0.0));
        assert_eq!(p.on.len(), 3, "every class by default");
        assert_eq!(
            (p.delay(1, 0.5), p.delay(2, 0.5), p.delay(3, 0.5)),
            (Duration::from_millis(500), Duration::from_millis(1000), Duration::from_millis(2000))
        );
        let only = Policy::of(&json!({"retry": {"max": 1, "on": ["timeout"]}})).unwrap().unwrap();
        assert!(only.allows(FailureClass::Timeout, 0) && !only.allows(FailureClass::Error, 0));
        assert!(!only.allows(FailureClass::Timeout, 1), "no retries left");
    }

    #[test]
    fn jitter_spreads_the_backoff_both_ways() {
        let p = Policy::of(&json!({"retry": {"backoffMs": 1000, "jitter": 0.2}})).unwrap().unwrap();
        assert_eq!(p.delay(1, 0.0), Duration::from_millis(800));
        assert_eq!(p.delay(1, 1.0), Duration::from_millis(1200));
    }

    #[test]
    fn bad_policies_say_what_is_wrong() {
        for (retry, says) in [
            (json!({"max": -1}), "retry.max must be a number of at least 0"),
            (json!({"max": 1.5}), "whole number"),
            (json!({"backoffMs": "soon"}), "retry.backoffMs"),
            (json!({"jitter": 2}), "at most 1"),
            (json!({"on": ["flaky"]}), "not a failure class"),
            (json!({"on": "timeout"}), "must be a list"),
        ] {
            let err = Policy::of(&json!({ "retry": retry })).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn failures_are_classed_for_retry_on() {
        assert_eq!(FailureClass::of_error(&ErrorInfo::new("TimeoutError", "x")), FailureClass::Timeout);
        let env = ErrorInfo::new("HarnessError", "x").with_data(json!({ ENVIRONMENTAL: true }));
        assert_eq!(FailureClass::of_error(&env), FailureClass::Environmental);
        assert_eq!(FailureClass::of_error(&ErrorInfo::new("HarnessError", "exit 69")), FailureClass::Error);
    }
}
