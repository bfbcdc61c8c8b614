//! Taking over a run: replaying its journal against the re-executed process (every request checked, every
//! result re-delivered in journal order), locating a divergence, and re-dispatching what was running. Replay
//! passes that accept a changed call (`--accept-changes`) are in `changes.rs`.

use super::*;

/// From this many journaled events, a resume reads the journal on a second thread while the process starts.
/// A shorter journal reads in a few milliseconds, and its process's start is as short.
const READ_WHILE_STARTING_FROM: u64 = 2_000;

impl Driver<'_> {
    /// Take over an existing run: replay its journal, then drive it to its end. `changes` says what to do
    /// with a call the edited process now makes with other arguments than the journal has.
    pub fn resume(mut self, current_code_hash: &str, changes: Changes) -> Result<RunEnd, Error> {
        let Some(summary) = self.store.run(&self.opts.run_id)? else {
            return Err(Error::UnknownRun(self.opts.run_id.clone()));
        };
        self.acquire_lease()?;
        self.listen_for_commands()?;
        let (records, started) = self.read_journal(&summary)?;
        if let Some(end) = finished(&records, self.store.as_ref())? {
            self.release();
            return Ok(end);
        }
        self.restore_ledger(&records);
        let pending_code_change = self.code_change(&records, current_code_hash);
        let (inputs, created_ms) = self.created(&records)?;
        self.check_names(&records)?;
        let replayed = records.len();
        let outcome =
            self.replay_changes(records, started, (&inputs, created_ms), pending_code_change.as_ref(), changes);
        self.host.set_replaying(false);
        let (replay, accepted) = match outcome {
            Err(Error::Nondeterminism(mut divergence)) => {
                self.locate(&mut divergence, &inputs, created_ms);
                return Err(Error::Nondeterminism(divergence));
            }
            outcome => outcome?,
        };
        // Replay matched the journal: only now may anything be appended (nothing is committed before this).
        if accepted.is_empty() {
            self.attach(pending_code_change.as_ref());
        }
        self.observer.progress(Progress::Attached { run_id: self.opts.run_id.clone(), resumed: true, replayed });
        self.supersede(&accepted);
        for effect in std::mem::take(&mut self.deferred_cancels) {
            self.cancel_effect(&effect, "cancelled by the process");
        }
        self.redispatch(&replay);
        self.drive()
    }

    /// The run's journal. A long one is read on a second thread while the process starts replaying (it needs
    /// only the run's inputs, from the first event): reading and decoding the journal and re-running the
    /// process up to its first wait are each a large part of a resume, and neither needs the other. Returns
    /// the events and, when the process started meanwhile, what its start did.
    fn read_journal(
        &mut self,
        summary: &tutti_journal::RunSummary,
    ) -> Result<(Vec<Record>, Option<Vec<HostEvent>>), Error> {
        let run = self.opts.run_id.clone();
        if summary.events < READ_WHILE_STARTING_FROM || summary.status.is_terminal() {
            return Ok((self.store.read(&run, 0)?, None));
        }
        let first = self.store.first_event(&run)?;
        let (inputs, created_ms) = self.created(first.as_slice())?;
        let store = &mut *self.store;
        let host = &mut *self.host;
        let (records, started) = std::thread::scope(|scope| {
            let id = &run;
            // Moved, not shared: the store is used from one thread at a time.
            let reader = scope.spawn(move || store.read(id, 0));
            host.set_replaying(true);
            let started = host.start(&run, &inputs, seed(&run), created_ms);
            let records = reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (records, started)
        });
        Ok((records?, Some(started?)))
    }

    /// Re-execute the process against the journal: every request checked, every result re-delivered in
    /// journal order. `started` is what the process's start did, when it was started already.
    pub(super) fn replay(
        &mut self,
        replay: &mut Replay,
        inputs: &Value,
        created_ms: i64,
        started: Option<Vec<HostEvent>>,
    ) -> Result<(), Error> {
        let events = match started {
            Some(events) => events,
            None => self.host.start(&self.opts.run_id, inputs, seed(&self.opts.run_id), created_ms)?,
        };
        self.replay_events(replay, events)?;
        while let Some(delivery) = replay.next_delivery() {
            let d = delivery?;
            let events = self.redeliver(&d)?;
            self.replay_events(replay, events)?;
        }
        self.mailbox = replay.take_mailbox();
        self.groups = replay.groups().clone();
        self.sessions = replay.sessions().clone();
        self.member_worktrees = replay.member_worktrees().clone();
        Ok(())
    }

    /// Hand the process one journaled delivery again.
    pub(super) fn redeliver(&mut self, d: &replay::Delivery) -> Result<Vec<HostEvent>, Error> {
        Ok(match &d.note {
            Some(replay::Note::Message { from, body }) => self.host.message(from, body, d.ts_ms)?,
            Some(replay::Note::Bound { member, session }) => {
                self.host.bound(member, session)?;
                Vec::new()
            }
            None => self.host.deliver(&d.effect, &d.outcome, d.ts_ms)?,
        })
    }

    /// A replaying host records no call sites; after a divergence, run the process once more with call
    /// sites on, up to the divergent call, so that the error can name its line.
    pub(super) fn locate(&mut self, divergence: &mut Nondeterminism, inputs: &Value, created_ms: i64) {
        let (target, replayed) = match divergence {
            Nondeterminism::Changed { effect, replayed, .. } | Nondeterminism::Unexpected { effect, replayed } => {
                (effect.clone(), replayed)
            }
            _ => return,
        };
        // A pass run past an accepted change records call sites already.
        if replayed.callsite.is_some() {
            return;
        }
        let Ok(records) = self.store.read(&self.opts.run_id, 0) else { return };
        let Ok(mut replay) = replay::build(records, |p| self.store.load(p)) else { return };
        if self.host.restart().is_err() {
            return;
        }
        let seed = seed(&self.opts.run_id);
        let mut events = self.host.start(&self.opts.run_id, inputs, seed, created_ms).unwrap_or_default();
        loop {
            for event in &events {
                if let HostEvent::Request(req) = event {
                    if req.effect == target {
                        replayed.callsite = req.callsite.clone();
                        return;
                    }
                    let _ = replay.request(req);
                }
            }
            let Some(Ok(d)) = replay.next_delivery() else { return };
            let Ok(next) = self.redeliver(&d) else { return };
            events = next;
        }
    }

    pub(super) fn created(&self, records: &[Record]) -> Result<(Value, i64), Error> {
        match records.first().map(|r| (&r.event, r.ts_ms)) {
            Some((Event::RunCreated { inputs, .. }, ts)) => Ok((self.store.load(inputs)?, ts)),
            _ => {
                Err(Error::Malformed { run: self.opts.run_id.clone(), detail: "first event is not run_created".into() })
            }
        }
    }

    /// Journaled group and member names obey the rule new ones do: a journal edited by hand cannot smuggle
    /// a '/' or a control character into a member's scope or address.
    fn check_names(&self, records: &[Record]) -> Result<(), Error> {
        for r in records {
            let checked = match &r.event {
                Event::GroupOpened { group, members, .. } => {
                    check_group_names(group, members.iter().map(|m| m.name.as_str()))
                }
                Event::MemberBound { group, member, .. } => check_group_names(group, [member.as_str()]),
                _ => Ok(()),
            };
            checked.map_err(|detail| Error::Malformed {
                run: self.opts.run_id.clone(),
                detail: format!("event {}: {detail}", r.seq),
            })?;
        }
        Ok(())
    }

    pub(super) fn code_change(&mut self, records: &[Record], current: &str) -> Option<Event> {
        let journaled = records.iter().rev().find_map(|r| match &r.event {
            Event::ProcessCodeChanged { new_hash, .. } => Some(new_hash.clone()),
            Event::RunCreated { code_hash, .. } => Some(code_hash.clone()),
            _ => None,
        })?;
        (journaled != current).then(|| {
            self.observer
                .progress(Progress::CodeChanged { old_hash: journaled.clone(), new_hash: current.to_string() });
            Event::ProcessCodeChanged { old_hash: journaled, new_hash: current.to_string() }
        })
    }

    /// Apply host events met during replay: known requests are re-registered silently; the first new one
    /// (allowed only once the journal is exhausted) is journaled like in a live run.
    pub(super) fn replay_events(&mut self, replay: &mut Replay, events: Vec<HostEvent>) -> Result<(), Error> {
        for event in events {
            match event {
                HostEvent::Request(req) => match replay.request(&req)? {
                    Verdict::Replayed => {}
                    Verdict::Unresolved => {
                        let mut req = req;
                        if let Some(task) = replay.take_task(&req.effect) {
                            req.task = self.store.load(&task)?;
                        }
                        self.register(req, 1, false);
                    }
                    Verdict::New => self.request(req),
                },
                HostEvent::Log { .. } => {}
                // Cancelling an effect that must run again: do it once replay is over.
                HostEvent::Cancel { effect } if self.effects.contains_key(&effect) => {
                    self.deferred_cancels.push(effect)
                }
                HostEvent::Cancel { .. } | HostEvent::Send { .. } => {}
                // Journaled with the step that made them, unless the journal had nothing yet.
                HostEvent::GroupOpened { .. } | HostEvent::Checkpoint { .. } | HostEvent::GroupClosed { .. } => {
                    if replay.is_empty() {
                        self.apply(vec![event])?;
                    }
                }
                HostEvent::Finished(_) | HostEvent::Halted { .. } => {
                    if let Some(effect) = replay.undelivered() {
                        return Err(Nondeterminism::FinishedEarly { effect: effect.clone() }.into());
                    }
                    self.apply(vec![event])?;
                }
            }
        }
        Ok(())
    }

    /// After replay: effects the journal resolved are done; the others run again (journaled when a previous
    /// driver had started them).
    pub(super) fn redispatch(&mut self, replay: &Replay) {
        let fresh: std::collections::HashSet<EffectId> = self.scheduler.queued().cloned().collect();
        let unresolved: HashMap<EffectId, (u32, Option<u32>)> =
            replay.unresolved().into_iter().map(|(id, attempt, pid)| (id, (attempt, pid))).collect();
        let mut again = Vec::new();
        let mut resolved = Vec::new();
        for (id, e) in self.effects.iter_mut() {
            if fresh.contains(id) {
                continue;
            }
            match unresolved.get(id) {
                Some(&(last, pid)) => again.push((id.clone(), last, pid, e.request.kind.is_internal())),
                None => resolved.push(id.clone()),
            }
        }
        for id in resolved {
            self.finish_effect(&id);
        }
        again.sort();
        // Effects never journaled as started: one of them may have been started just before the driver died,
        // before its start was committed; its process would still carry the run and effect ids.
        let unstarted = again.iter().any(|(_, last, _, internal)| *last == 0 && !internal);
        let found = if unstarted {
            self.opts.platform.processes_of(&self.opts.run_id)
        } else {
            std::collections::HashMap::new()
        };
        for (id, last, pid, internal) in again.into_iter().rev() {
            let (retries, backoff) = replay.retry_state(&id);
            if self.restore_backoff(&id, retries, backoff) {
                continue;
            }
            let orphans = found.get(id.as_str()).filter(|_| last == 0);
            if !internal && (last > 0 || orphans.is_some()) {
                // The attempt after the last journaled one may have run: the new one is a re-dispatch.
                let attempt = last.max(1) + 1;
                let killed = self.kill_leftovers(&id, last, pid, &found);
                let mut reason = match last {
                    0 => "it was running without a journaled start when its driver stopped".to_string(),
                    _ => "its previous driver stopped before journaling a result".to_string(),
                };
                if !killed.is_empty() {
                    let pids: Vec<String> = killed.iter().map(u32::to_string).collect();
                    reason.push_str(&format!("; killed the previous attempt's process group {}", pids.join(", ")));
                }
                self.record(Event::EffectRedispatched { effect: id.clone(), attempt, reason });
                self.observer.progress(Progress::Redispatched { effect: id.clone(), attempt });
                if let Some(e) = self.effects.get_mut(&id) {
                    e.attempt = attempt;
                }
            }
            self.scheduler.push_front(id);
        }
    }
}

/// The run's end as recorded, if the journal has one.
fn finished(records: &[Record], store: &dyn Store) -> Result<Option<RunEnd>, Error> {
    let Some(last) = records.iter().rev().find(|r| r.event.terminal_status().is_some()) else {
        return Ok(None);
    };
    let status = last.event.terminal_status().expect("filtered on terminal events");
    let (output, error) = match &last.event {
        Event::RunCompleted { output } => (Some(store.load(output)?), None),
        Event::RunFailed { error } => (None, Some(error.clone())),
        Event::RunHalted { reason, payload } => {
            (Some(json!({ "halted": reason, "payload": store.load(payload)? })), None)
        }
        Event::RunCancelled { reason } => (None, Some(ErrorInfo::new("Cancelled", format!("run cancelled: {reason}")))),
        _ => (None, None),
    };
    Ok(Some(RunEnd { status, output, error, interrupted: false }))
}
