//! What a driver tells its user while it works. The CLI implements [`Observer`] to draw the live view or
//! print plain lines; the engine itself never prints.

use tutti_journal::{EffectId, ErrorInfo, Usage};

use crate::error::Call;

#[derive(Clone, Debug)]
pub enum Progress {
    /// The driver holds the run; on resume, `replayed` journal events were replayed.
    Attached {
        run_id: String,
        resumed: bool,
        replayed: usize,
    },
    CodeChanged {
        old_hash: String,
        new_hash: String,
    },
    /// `--accept-changes` took a changed call: `superseded` (the effect and every effect requested after it)
    /// run again.
    ChangesAccepted {
        effect: EffectId,
        journaled: Call,
        replayed: Call,
        superseded: Vec<EffectId>,
    },
    Started {
        effect: EffectId,
        kind: String,
        title: Option<String>,
        harness: String,
        attempt: u32,
    },
    Finished {
        effect: EffectId,
        title: Option<String>,
        elapsed_ms: u64,
        error: Option<ErrorInfo>,
    },
    /// An effect waits for a person (`tutti approve`) or the clock.
    Waiting {
        effect: EffectId,
        kind: String,
        title: Option<String>,
        wake_ms: Option<i64>,
    },
    Redispatched {
        effect: EffectId,
        attempt: u32,
    },
    Queued {
        effect: EffectId,
        reason: String,
    },
    Log {
        scope: String,
        message: String,
    },
    /// Tokens and cost an attempt of `effect` reported (journaled as `effect_usage`).
    Usage {
        effect: EffectId,
        usage: Usage,
    },
    /// Time passes (about every 100 ms while effects run): a live view redraws its clocks.
    Tick,
}

pub trait Observer {
    fn progress(&mut self, event: Progress);
}

/// An observer that ignores everything (benchmarks, tests).
pub struct Silent;

impl Observer for Silent {
    fn progress(&mut self, _: Progress) {}
}
