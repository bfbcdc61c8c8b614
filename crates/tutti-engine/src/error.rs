//! The engine's one error type, and [`Nondeterminism`], the replay-divergence error.

use tutti_journal::{EffectId, LeaseHolder};

/// One call as the journal or the replayed process sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub task_id: String,
    pub digest: String,
    pub callsite: Option<String>,
    /// The arguments themselves, when known (shown instead of the digest; a value kept in a blob is not).
    pub args: Option<serde_json::Value>,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.args {
            Some(args) => {
                let text = args.to_string();
                let shown: String = text.chars().take(300).collect();
                let more = if shown.len() < text.len() { "…" } else { "" };
                write!(f, "task \"{}\" with arguments {shown}{more}", self.task_id)?;
            }
            None => write!(f, "task \"{}\" (arguments {})", self.task_id, self.digest)?,
        }
        if let Some(site) = &self.callsite {
            write!(f, " at {site}")?;
        }
        Ok(())
    }
}

/// Replay found the process doing something other than what the journal recorded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Nondeterminism {
    #[error(
        "non-determinism at effect {effect}: the journal has {journaled}, but the process now calls {replayed}. \
         Restore the process file as the run started it; or accept the change with \
         `tutti resume RUN --accept-changes`, which runs this call again with its new arguments, and every effect \
         requested after it; or start a new run"
    )]
    Changed { effect: EffectId, journaled: Call, replayed: Call },
    #[error(
        "non-determinism at effect {effect}: the process now calls {replayed}, which the journal does not have at \
         this point"
    )]
    Unexpected { effect: EffectId, replayed: Call },
    #[error("non-determinism at effect {effect}: the journal has {journaled}, which the process no longer calls")]
    Missing { effect: EffectId, journaled: Call },
    #[error("non-determinism: the process finished before replaying the journal's result of effect {effect}")]
    FinishedEarly { effect: EffectId },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Journal(#[from] tutti_journal::Error),
    /// Boxed: it carries two calls, and every `Result` of the driver would otherwise be as large.
    #[error(transparent)]
    Nondeterminism(Box<Nondeterminism>),
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    #[error("run {run} is being driven by another tutti (pid {} on {}); one driver per run", holder.pid, holder.host)]
    Busy { run: String, holder: LeaseHolder },
    #[error("run {0} not found")]
    UnknownRun(String),
    #[error("run {run} lost its lease to another driver")]
    LeaseLost { run: String },
    #[error("journal of run {run} is malformed: {detail}")]
    Malformed { run: String, detail: String },
}

impl From<Nondeterminism> for Error {
    fn from(e: Nondeterminism) -> Self {
        Error::Nondeterminism(Box::new(e))
    }
}

impl From<Box<Nondeterminism>> for Error {
    fn from(e: Box<Nondeterminism>) -> Self {
        Error::Nondeterminism(e)
    }
}

impl Error {
    /// True when the error comes from what the user gave (exit code 2), not from a bug or the environment.
    pub fn is_user_error(&self) -> bool {
        matches!(self, Error::Nondeterminism(_) | Error::Busy { .. } | Error::UnknownRun(_) | Error::LeaseLost { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_lease_and_a_busy_run_are_the_users_to_resolve() {
        assert!(Error::LeaseLost { run: "R".into() }.is_user_error());
        assert!(Error::UnknownRun("R".into()).is_user_error());
        assert!(!Error::Malformed { run: "R".into(), detail: "x".into() }.is_user_error());
    }
}
