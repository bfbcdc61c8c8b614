//! What reaches a run from outside its process: control commands queued in the journal (`tutti cancel`,
//! `approve`, `reject`, `post`, and an agent's `tutti msg send` / progress notes, each checked against its
//! attempt's token), taken at housekeeping or at once when the journal pushes word of them, and the lease
//! that makes this driver the run's only one.

use super::*;

impl Driver<'_> {
    pub(super) fn command(&mut self, command: Command) -> Result<(), Error> {
        match command {
            Command::Cancel { reason, by } => {
                if self.end_with(End::Cancelled(reason))
                    && let Some(by) = by
                {
                    self.record(Event::ControlApplied { action: "cancel".into(), effect: None, by });
                }
            }
            Command::Message { effect, attempt, token, to, body } => {
                // `tutti msg send` refused stale attempts when it queued this; the token proves the sender.
                if self.token_is_valid(&effect, attempt, &token) {
                    self.send(effect.address(), to, body);
                }
            }
            Command::Progress { effect, attempt, token, message } => {
                if self.token_is_valid(&effect, attempt, &token) && self.effects.contains_key(&effect) {
                    self.progress(effect, message);
                }
            }
            Command::Resolve { effect, outcome, by } => {
                let pending = self
                    .effects
                    .get(&effect)
                    .filter(|e| matches!(e.state.phase(), Phase::Waiting | Phase::Running | Phase::Backoff));
                if let Some(e) = pending {
                    if let Some(by) = by {
                        let action = control_action(&e.request.kind, &outcome).to_string();
                        self.record(Event::ControlApplied { action, effect: Some(effect.clone()), by });
                    }
                    let outcome = match outcome {
                        Outcome::Ok { value } => Ok(self.store.load(&value)?),
                        Outcome::Error { error } => Err(error),
                    };
                    self.resolve(&effect, outcome, false);
                }
            }
        }
        Ok(())
    }

    /// Journal what an attempt is doing, up to [`crate::harness::PROGRESS_CAP`] notes per attempt.
    pub(super) fn progress(&mut self, effect: EffectId, message: String) {
        let Some(e) = self.effects.get_mut(&effect) else { return };
        if e.progress >= crate::harness::PROGRESS_CAP {
            return;
        }
        e.progress += 1;
        self.observer.progress(Progress::Log { scope: effect.to_string(), message: message.clone() });
        self.record(Event::EffectProgress { effect, message });
    }

    /// Whether `token` is the one this run gave the attempt `attempt` of `effect`.
    fn token_is_valid(&self, effect: &EffectId, attempt: u32, token: &str) -> bool {
        token == crate::identity::message_token(&self.opts.msg_secret, &self.opts.run_id, effect, attempt)
    }

    pub(super) fn acquire_lease(&mut self) -> Result<(), Error> {
        let (run, holder, platform) = (&self.opts.run_id, &self.opts.holder, &self.opts.platform);
        take_lease(self.store.as_mut(), run, holder, platform, (wall_ms(), LEASE_TTL_MS))
    }

    /// Where the journal can push word of new commands (PostgreSQL), a thread waits for it and wakes the
    /// loop with [`Msg::Commands`], so a command acts at once rather than at the next housekeeping.
    pub(super) fn listen_for_commands(&mut self) -> Result<(), Error> {
        let Some(mut listener) = self.store.command_listener(&self.opts.run_id)? else { return Ok(()) };
        let stop = Arc::new(AtomicBool::new(false));
        let (stopped, tx) = (Arc::clone(&stop), self.executor.sender());
        let spawned = std::thread::Builder::new().name("tutti-commands".into()).spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.wait(Duration::from_millis(500)) {
                    Ok(true) if tx.send(Msg::Commands).is_err() => return,
                    Ok(_) => {}
                    // Housekeeping still polls: the listener only makes commands quicker.
                    Err(_) => return,
                }
            }
        });
        if spawned.is_ok() {
            self._listening = Some(StopOnDrop(stop));
        }
        Ok(())
    }

    pub(super) fn release(&mut self) {
        // Best effort: an unreleased lease expires by itself.
        let _ = self.store.release_lease(&self.opts.run_id, &self.opts.holder);
    }
}

/// Take `run`'s lease for `holder` (from `now_ms`, for `ttl_ms`), over a holder whose process `platform`
/// finds gone; another live holder makes it [`Error::Busy`].
pub(super) fn take_lease(
    store: &mut dyn tutti_journal::Leases,
    run: &RunId,
    holder: &LeaseHolder,
    platform: &Arc<dyn Platform>,
    (now_ms, ttl_ms): (i64, i64),
) -> Result<(), Error> {
    let platform = Arc::clone(platform);
    let is_gone = move |h: &LeaseHolder| platform.holder_is_gone(h);
    match store.acquire_lease(run, holder, now_ms, ttl_ms, &is_gone)? {
        LeaseOutcome::Acquired => Ok(()),
        LeaseOutcome::Busy { holder, .. } => Err(Error::Busy { run: run.clone(), holder }),
    }
}

/// What a person's answer to an effect did: `approve` / `reject` a breakpoint, or `post` a result.
fn control_action(kind: &Kind, outcome: &Outcome) -> &'static str {
    let approved = match outcome {
        Outcome::Ok { value: Payload::Inline(v) } => v.get("approved").and_then(Value::as_bool),
        _ => None,
    };
    match (kind, approved) {
        (Kind::Breakpoint, Some(true)) => "approve",
        (Kind::Breakpoint, Some(false)) => "reject",
        _ => "post",
    }
}

/// Sets its flag when dropped: tells a helper thread that its driver is gone.
pub(super) struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
