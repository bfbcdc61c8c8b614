//! How a run ends: the process returned, threw or halted, the run was cancelled, or the driver lets go
//! (Ctrl-C, a closed terminal). Running effects are stopped (and journaled as cancelled unless the driver only
//! detaches), the end is journaled and flushed, and the lease is given back.

use super::*;

impl Driver<'_> {
    /// A step of the process failed in the host. When the shutdown flag is set, the host was told to stop
    /// running JavaScript that would not yield (a loop that never awaits): the process is broken, so the run
    /// fails with the host's account naming the file, after its running effects are stopped.
    pub(super) fn host_failed(self, e: HostError) -> Result<RunEnd, Error> {
        if !self.shutdown.load(Ordering::SeqCst) {
            return Err(e.into());
        }
        self.finish(End::Finished(Err(ErrorInfo::new("ProcessDidNotYield", e.message))))
    }

    pub(super) fn finish(mut self, end: End) -> Result<RunEnd, Error> {
        let interrupted = matches!(end, End::Interrupted(_));
        let reason = match &end {
            End::Cancelled(r) => format!("run cancelled: {r}"),
            End::Interrupted(r) => r.clone(),
            _ => "the run ended".to_string(),
        };
        let stopped = self.stop_all(&reason, !interrupted);
        self.executor.reap(STOP_GRACE);
        let run_end = match end {
            End::Finished(Ok(output)) => {
                self.record(Event::RunCompleted { output: Payload::Inline(output.clone()) });
                RunEnd { status: RunStatus::Completed, output: Some(output), error: None, interrupted: false }
            }
            End::Finished(Err(error)) => {
                self.record(Event::RunFailed { error: error.clone() });
                RunEnd { status: RunStatus::Failed, output: None, error: Some(error), interrupted: false }
            }
            End::Halted { reason, payload } => {
                let output = json!({ "halted": reason, "payload": payload });
                self.record(Event::RunHalted { reason, payload: Payload::Inline(payload) });
                RunEnd { status: RunStatus::Halted, output: Some(output), error: None, interrupted: false }
            }
            End::Cancelled(reason) => {
                let error = ErrorInfo::new("Cancelled", format!("run cancelled: {reason}"));
                self.record(Event::RunCancelled { reason });
                RunEnd { status: RunStatus::Cancelled, output: None, error: Some(error), interrupted: false }
            }
            End::Interrupted(reason) => {
                self.record(Event::DriverDetached { reason, interrupted: stopped });
                RunEnd { status: RunStatus::Running, output: None, error: None, interrupted: true }
            }
        };
        // The end is committed, the lease given back, and both made stable by the store's checkpoint: the
        // end costs the checkpoint's two fsyncs and none of its own.
        self.journal.flush_unsynced()?;
        self.release();
        self.store.persist()?;
        Ok(run_end)
    }

    /// Kill every running effect's process tree; journal them as cancelled unless the run is only being
    /// detached (then they run again on resume). Returns the effects that were stopped.
    pub(super) fn stop_all(&mut self, reason: &str, journal: bool) -> Vec<EffectId> {
        let mut ids: Vec<EffectId> = self.effects.keys().cloned().collect();
        ids.sort();
        let mut stopped = Vec::new();
        for id in &ids {
            let previous = self.finish_effect(id);
            if previous.phase() == Phase::Running {
                stopped.push(id.clone());
            }
            self.release_slot(id, previous, true);
            if journal {
                self.record(Event::EffectCancelled { effect: id.clone(), reason: reason.to_string() });
            }
        }
        stopped
    }
}
