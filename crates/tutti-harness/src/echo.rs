//! The in-process `echo` harness: resolves every job at once with its own arguments. For tests and for
//! processes that only move data; it runs nothing and touches nothing outside tutti.

use tutti_engine::harness::Error;
use tutti_engine::{Harness, Job, Outcome, Reporter, Running};

/// Resolves each job with `job.args`, synchronously inside [`Harness::start`]. Pure: running a job twice is
/// unobservable, so the engine need not make the request durable first.
#[derive(Clone, Debug, Default)]
pub struct EchoHarness;

impl EchoHarness {
    pub fn new() -> Self {
        Self
    }

    /// The outcome of `job`: its arguments.
    pub fn outcome(job: &Job) -> Outcome {
        Ok(job.args.clone())
    }
}

impl Harness for EchoHarness {
    fn name(&self) -> &str {
        "echo"
    }

    fn is_pure(&self) -> bool {
        true
    }

    fn start(&self, job: Job, reporter: Reporter) -> Result<Box<dyn Running>, Error> {
        reporter.finish(Self::outcome(&job));
        Ok(Box::new(Done))
    }
}

/// An attempt that finished (or failed) before `start` returned: no process, nothing to cancel. The other
/// harnesses that settle a job inside `start` (`merge`, a worktree that cannot be made) use it too.
#[derive(Debug)]
pub(crate) struct Done;

impl Running for Done {
    fn pid(&self) -> Option<u32> {
        None
    }

    fn cancel(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::job;
    use serde_json::json;

    #[test]
    fn echoes_the_args_and_is_pure() {
        let job = job("echo", json!({"kind": "echo"}), json!({"x": [1, 2]}), std::path::Path::new("/"));
        assert_eq!(EchoHarness::outcome(&job), Ok(json!({"x": [1, 2]})));
        assert!(EchoHarness::new().is_pure());
        let mut done = Done;
        done.cancel();
        assert_eq!(done.pid(), None);
    }
}
