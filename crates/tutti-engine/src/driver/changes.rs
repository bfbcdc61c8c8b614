//! `tutti resume --accept-changes`: replay that takes a changed call instead of failing on it. The changed
//! effect and every effect the journal requested after it (any of them may have used its result) are
//! superseded: journaled as `changes_accepted`, forgotten by replay, and run again when the process calls
//! them. Replay then starts over from a fresh process, until it matches the journal or diverges otherwise.

use super::*;
use crate::replay::Accepted;

/// What [`Driver::resume`] does when the process calls an effect with other arguments (or another task) than
/// the journal recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Changes {
    /// Fail with [`Nondeterminism::Changed`], naming both calls.
    #[default]
    Refuse,
    /// Run the changed effect again with its new arguments, and every effect the journal requested after it;
    /// effects requested before it keep their journaled results.
    Accept,
}

impl Driver<'_> {
    /// Replay the journal, first from `records` (and `started`, what the process's start did, when the
    /// journal was read while it started). A changed call met under [`Changes::Accept`] is accepted and
    /// replay starts over with what it supersedes forgotten. A pass that accepted changes journals first that
    /// the driver attached (`code_change` with it) and the changes, so that they precede the requests that
    /// follow from them.
    pub(super) fn replay_changes(
        &mut self,
        records: Vec<Record>,
        started: Option<Vec<HostEvent>>,
        start: (&Value, i64),
        code_change: Option<&Event>,
        changes: Changes,
    ) -> Result<(Replay, Vec<Accepted>), Error> {
        let mut accepted: Vec<Accepted> = Vec::new();
        let mut first = Some(records);
        let mut started = started;
        loop {
            let records = match first.take() {
                Some(records) => records,
                None => self.store.read(&self.opts.run_id, 0)?,
            };
            let mut replay = replay::build(records, |p| self.store.load(p))?;
            if !accepted.is_empty() {
                self.attach(code_change);
            }
            for a in &accepted {
                replay.forget(&a.superseded);
                self.record(a.event());
            }
            // After a change the process runs past the journal, and with nothing journaled it starts afresh:
            // either way its new requests need their tasks and call sites.
            let replaying = accepted.is_empty() && !replay.is_empty();
            let started = match started.take() {
                Some(events) if replaying => Some(events),
                // Started as a replay, but the journal holds no request: the process must start afresh,
                // recording its tasks and call sites.
                Some(_) => {
                    self.host.restart()?;
                    None
                }
                None => None,
            };
            if started.is_none() {
                self.host.set_replaying(replaying);
            }
            let divergence = match self.replay(&mut replay, start.0, start.1, started) {
                Ok(()) => return Ok((replay, accepted)),
                Err(Error::Nondeterminism(divergence)) => divergence,
                Err(e) => return Err(e),
            };
            let change = match (changes, divergence.as_ref()) {
                (Changes::Accept, Nondeterminism::Changed { effect, replayed, .. }) => replay.accept(effect, replayed),
                _ => None,
            };
            let Some(change) = change else { return Err(Error::Nondeterminism(divergence)) };
            accepted.push(change);
            self.forget_pass();
            self.host.restart()?;
        }
    }

    /// What a resumed driver journals before anything else it does: that it attached, and a code change.
    pub(super) fn attach(&mut self, code_change: Option<&Event>) {
        self.record(Event::DriverAttached { holder: self.opts.holder.id.clone(), resumed: true });
        if let Some(event) = code_change {
            self.record(event.clone());
        }
    }

    /// Drop what an abandoned replay pass left: the effects it registered, queued or journaled.
    fn forget_pass(&mut self) {
        self.effects.clear();
        self.scheduler = Scheduler::new(self.opts.max_parallel);
        self.journal.discard();
        self.notices.clear();
        self.deferred_cancels.clear();
        self.end = None;
    }

    /// Tell the user what was accepted, and kill what a dead driver may have left running of the superseded
    /// effects (their re-runs start afresh), journaling each kill.
    pub(super) fn supersede(&mut self, accepted: &[Accepted]) {
        for a in accepted {
            self.observer.progress(Progress::ChangesAccepted {
                effect: a.effect.clone(),
                journaled: a.journaled.clone(),
                replayed: a.replayed.clone(),
                superseded: a.superseded.clone(),
            });
        }
        let unfinished: Vec<&(EffectId, u32, Option<u32>)> = accepted.iter().flat_map(|a| &a.unfinished).collect();
        let unstarted = unfinished.iter().any(|(_, last, _)| *last == 0);
        let found = if unstarted {
            self.opts.platform.processes_of(&self.opts.run_id)
        } else {
            std::collections::HashMap::new()
        };
        for (id, last, pid) in unfinished {
            let killed = self.kill_leftovers(id, *last, *pid, &found);
            if !killed.is_empty() {
                let pids: Vec<String> = killed.iter().map(u32::to_string).collect();
                let message = format!("killed the superseded attempt's process group {}", pids.join(", "));
                self.record(Event::Log { scope: id.to_string(), message });
            }
        }
    }

    /// Kill what a dead driver may have left running of `id`: the process group of its last journaled start,
    /// and, when no start was journaled, the processes `found` carrying its id. Returns the pids killed.
    pub(super) fn kill_leftovers(
        &self,
        id: &EffectId,
        last: u32,
        pid: Option<u32>,
        found: &std::collections::HashMap<String, Vec<u32>>,
    ) -> Vec<u32> {
        let os = &self.opts.platform;
        let mut killed: Vec<u32> =
            pid.filter(|&pid| os.kill_group_of(&self.opts.run_id, id, pid)).into_iter().collect();
        if let Some(pids) = found.get(id.as_str()).filter(|_| last == 0) {
            killed.extend(os.kill_found(&self.opts.run_id, id, pids));
        }
        killed
    }
}
