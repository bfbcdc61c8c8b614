//! The `external` harness: tutti never runs its jobs. An effect routed to it waits, like a breakpoint, for a
//! result posted from outside (`tutti post`), which is how an outer agent drives a run with `tutti iterate`:
//! it performs the pending tasks itself. Under `tutti iterate --no-exec`, `shell` and `node` are external too.

use tutti_engine::harness::Error;
use tutti_engine::{Harness, Job, Reporter, Running};

/// A harness whose effects wait for a posted result, under the name it stands in for.
#[derive(Clone, Debug)]
pub struct External {
    name: String,
}

impl External {
    /// The harness agent tasks go to with `[defaults] harness = "external"` or `--harness external`.
    pub const NAME: &'static str = "external";

    pub fn new(name: &str) -> Self {
        Self { name: name.to_string() }
    }
}

impl Harness for External {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_external(&self) -> bool {
        true
    }

    fn start(&self, job: Job, _: Reporter) -> Result<Box<dyn Running>, Error> {
        // The driver never starts an external harness's jobs; reaching this is a bug in the caller.
        Err(Error::Invalid(format!(
            "effect {}: the {} harness waits for `tutti post`; it is never started",
            job.effect, self.name
        )))
    }
}
