//! What the dispatcher does with effects: journal and route a request, admit queued effects to a harness
//! (committing first when the harness touches the world), hold breakpoints and sleeps, resolve and cancel —
//! queuing a notice for the process instead of calling into it — and act on what the process did in a step.

use super::*;
use crate::harness::{Inbound, Job};
use scheduler::Admission;

impl Driver<'_> {
    /// Journal a new request and queue it.
    pub(super) fn request(&mut self, req: EffectRequest) {
        if let Some(why) = crate::schema::invalid(&req.kind, &req.task)
            && self.warned_schemas.insert(req.task_id.clone())
        {
            let message = format!(
                "warning: {}: its outputSchema is not a valid JSON Schema ({why}); its answers are taken without a \
                 schema",
                named(&req)
            );
            self.observer.progress(Progress::Log { scope: "warning".into(), message: message.clone() });
            self.record(Event::Log { scope: "warning".into(), message });
        }
        self.record(Event::EffectRequested {
            effect: req.effect.clone(),
            scope: req.scope.clone(),
            task_id: req.task_id.clone(),
            kind: req.kind.to_string(),
            digest: digest(&req.args),
            title: req.title.clone(),
            callsite: req.callsite.clone(),
            args: Payload::Inline(req.args.clone()),
            task: Payload::Inline(req.task.clone()),
        });
        let effect = req.effect.clone();
        let bad_retry = crate::retry::Policy::of(&req.task)
            .err()
            .map(|why| ErrorInfo::new("InvalidRetry", format!("{}: {why}", named(&req))))
            .or_else(|| budgets::task_budget(&req.task, &named(&req)).err());
        if let Some((harness, reason)) = self.register(req, 1, true) {
            self.record(Event::EffectRouted { effect: effect.clone(), harness, reason });
        }
        if let Some(error) = bad_retry {
            self.resolve(&effect, Err(error), false);
        }
    }

    /// Route and queue an effect; returns the routing decision's reason, for the journal.
    pub(super) fn register(&mut self, req: EffectRequest, attempt: u32, queue: bool) -> Option<(String, String)> {
        let id = req.effect.clone();
        let route =
            if req.kind.is_internal() { None } else { self.harnesses.route(&req.kind, &req.task, &req.args).ok() };
        let class = class_of(&req);
        let mut effect = Effect::new(req, attempt, route.as_ref().map(|r| r.harness.clone()));
        if let Some(r) = &route {
            effect.fallbacks = r.fallbacks.iter().cloned().collect();
        }
        if queue {
            self.scheduler.push_back(id.clone(), &class);
        }
        effect.class = class;
        self.effects.insert(id, effect);
        route.map(|r| (r.harness, r.reason))
    }

    /// Move an effect whose harness turned out to be unavailable to its next candidate, if it has one.
    pub(super) fn fall_back(&mut self, id: &EffectId, why: &str) -> bool {
        let Some(e) = self.effects.get_mut(id) else { return false };
        let Some(next) = e.fallbacks.pop_front() else { return false };
        let failed = e.harness.replace(next.clone()).unwrap_or_default();
        let reason = format!("fallback: {failed} is unavailable ({why})");
        self.record(Event::EffectRouted { effect: id.clone(), harness: next, reason });
        self.scheduler.push_front(id.clone());
        true
    }

    /// Start queued effects while limits allow. Commits first when an effect with outside effects starts.
    pub(super) fn dispatch(&mut self) -> Result<(), Error> {
        // A process that returned, halted or was cancelled starts nothing more, even what it asked for in
        // its last step.
        if self.end.is_some() {
            return Ok(());
        }
        while let Some(id) = self.scheduler.pop() {
            let Some(e) = self.effects.get(&id).filter(|e| e.state.phase() == Phase::Queued) else { continue };
            if e.request.kind.is_internal() {
                self.wait(&id);
                continue;
            }
            let Some(name) = e.harness.clone() else {
                let error = self.harnesses.route(&e.request.kind, &e.request.task, &e.request.args).err();
                let mut error = error.unwrap_or_else(|| ErrorInfo::new("NoHarness", "no harness"));
                error.message = format!("effect {id}: {}", error.message);
                self.resolve(&id, Err(error), false);
                continue;
            };
            if self.harnesses.get(&name).is_some_and(|h| h.is_external()) {
                self.wait(&id);
                continue;
            }
            let limit = scheduler::limit_of(&self.harnesses, self.opts.platform.as_ref(), &name);
            let class = e.class.clone();
            let Some(reservation) = self.budget_check(&id, &name) else { continue };
            match self.scheduler.admit(id.clone(), &class, &name, limit.as_ref().map(|(n, _)| *n)) {
                Admission::Start => {
                    self.reserve(&id, reservation);
                    self.start(&id, &name)?
                }
                Admission::RunFull => break,
                Admission::HarnessFull { first } => {
                    if let Some((_, reason)) = limit.filter(|_| first) {
                        self.observer.progress(Progress::Queued { effect: id, reason });
                    }
                }
            }
        }
        Ok(())
    }

    fn start(&mut self, id: &EffectId, name: &str) -> Result<(), Error> {
        let Some(harness) = self.harnesses.get(name).cloned() else {
            let error = ErrorInfo::new("NoHarness", format!("effect {id}: no harness named {name}"));
            self.resolve(id, Err(error), false);
            return Ok(());
        };
        // The output-commit rule: the request is durable before anything outside the driver runs it. A task in a
        // git worktree touches the repository whatever its harness.
        let isolated = self.effects.get(id).is_some_and(|e| e.request.task.get("isolation").is_some());
        if !harness.is_pure() || isolated {
            self.journal.flush()?;
        }
        let mut messages = self.inbound(id);
        let mut session = self.session_for(id);
        let Some(e) = self.effects.get_mut(id) else { return Ok(()) };
        if let Some(correction) = e.correction.take() {
            messages.push(Inbound { from: "tutti".into(), body: Value::String(correction) });
            session = self.attempt_sessions.get(id).cloned().or(session);
        }
        let mut env = self.opts.agent_env.clone();
        let token = crate::identity::message_token(&self.opts.msg_secret, &self.opts.run_id, id, e.attempt);
        env.push(("TUTTI_MSG_TOKEN".to_string(), token));
        let job = Job {
            run_id: self.opts.run_id.clone(),
            effect: id.clone(),
            attempt: e.attempt,
            task_id: e.request.task_id.clone(),
            kind: e.request.kind.clone(),
            title: e.request.title.clone(),
            task: crate::schema::without_invalid(&e.request.task),
            args: e.request.args.clone(),
            workdir: self.opts.workdir.clone(),
            project: self.opts.workdir.clone(),
            timeout: timeout_of(&e.request.task),
            env,
            messages,
            session,
        };
        let (attempt, kind, title) = (e.attempt, e.request.kind.to_string(), e.request.title.clone());
        let pid = match self.executor.start(harness.as_ref(), job) {
            Ok(pid) => pid,
            Err(err) if self.fall_back(id, &err.to_string()) => return Ok(()),
            Err(err) => {
                self.resolve(id, Err(ErrorInfo::new("HarnessError", err.to_string())), false);
                return Ok(());
            }
        };
        self.record(Event::EffectStarted { effect: id.clone(), attempt, harness: name.to_string(), pid });
        let class = self.effects.get(id).map(|e| e.class.clone()).unwrap_or_default();
        self.scheduler.started(id, name, &class);
        if let Some(e) = self.effects.get_mut(id) {
            e.transition(State::Running { harness: name.to_string() });
        }
        let harness = name.to_string();
        self.observer.progress(Progress::Started { effect: id.clone(), kind, title, harness, attempt });
        Ok(())
    }

    /// A breakpoint or a sleep: resolved by a person, by `--non-interactive`, or by the clock.
    fn wait(&mut self, id: &EffectId) {
        let Some(e) = self.effects.get_mut(id) else { return };
        let (kind, title) = (e.request.kind.clone(), e.request.title.clone());
        if kind == Kind::Breakpoint && (self.opts.non_interactive || self.opts.simulate) {
            e.transition(State::Waiting { wake_ms: None, since: Instant::now() });
            let why = if self.opts.simulate { "--simulate" } else { "--non-interactive" };
            let approval = json!({ "approved": true, "response": format!("auto-approved ({why})") });
            return self.resolve(id, Ok(approval), false);
        }
        if kind == Kind::Sleep && self.opts.simulate {
            e.transition(State::Waiting { wake_ms: None, since: Instant::now() });
            return self.resolve(id, Ok(Value::Null), false);
        }
        let wake_ms = (kind == Kind::Sleep).then(|| sleep_target(&e.request.args)).flatten();
        e.transition(State::Waiting { wake_ms, since: Instant::now() });
        let kind = kind.to_string();
        self.observer.progress(Progress::Waiting { effect: id.clone(), kind, title, wake_ms });
    }

    /// Journal an effect's result and queue it for the process. `finished` says the harness reported it;
    /// otherwise (timeout, a posted result) its attempt is stopped.
    pub(super) fn resolve(&mut self, id: &EffectId, outcome: Result<Value, ErrorInfo>, finished: bool) {
        let Some(e) = self.effects.get(id) else { return };
        let (attempt, title) = (e.attempt, e.request.title.clone());
        let previous = self.finish_effect(id);
        let elapsed_ms = self.release_slot(id, previous, !finished);
        let journaled = match &outcome {
            Ok(v) => Outcome::Ok { value: Payload::Inline(v.clone()) },
            Err(err) => Outcome::Error { error: err.clone() },
        };
        let ts_ms = self.record(Event::EffectResolved { effect: id.clone(), attempt, outcome: journaled });
        let error = outcome.as_ref().err().cloned();
        self.observer.progress(Progress::Finished { effect: id.clone(), title, elapsed_ms, error });
        self.notices.push_back(Notice::Deliver { effect: id.clone(), outcome, ts_ms });
    }

    /// Move an effect to `Done` and forget it: the driver keeps only effects that are still active, so an
    /// empty table with the process still waiting means nothing will ever wake it.
    pub(super) fn finish_effect(&mut self, id: &EffectId) -> State {
        match self.effects.remove(id) {
            Some(mut e) => e.transition(State::Done),
            None => State::Done,
        }
    }

    /// Give back what the effect held in its previous state: a running attempt's slot (stopping its
    /// process tree when `stop`), and return how long it ran or waited, in ms.
    pub(super) fn release_slot(&mut self, id: &EffectId, previous: State, stop: bool) -> u64 {
        match previous {
            State::Running { harness } => {
                let ran = if stop { self.executor.stop(id) } else { self.executor.finished(id) };
                self.scheduler.released(id, &harness);
                self.requeue_budget_waiting();
                ran.unwrap_or_default().as_millis() as u64
            }
            State::Waiting { since, .. } | State::Backoff { since, .. } => since.elapsed().as_millis() as u64,
            State::Queued | State::Done => 0,
        }
    }

    /// Act on what the process did during a step.
    pub(super) fn apply(&mut self, events: Vec<HostEvent>) -> Result<(), HostError> {
        for event in events {
            match event {
                HostEvent::Request(req) => self.request(req),
                HostEvent::Log { scope, message } => {
                    self.record(Event::Log { scope: scope.clone(), message: message.clone() });
                    self.observer.progress(Progress::Log { scope, message });
                }
                HostEvent::Finished(result) => {
                    self.end_with(End::Finished(result));
                }
                HostEvent::Halted { reason, payload } => {
                    self.end_with(End::Halted { reason, payload });
                }
                HostEvent::Cancel { effect } => self.cancel_effect(&effect, "cancelled by the process"),
                HostEvent::Send { scope, to, body } => {
                    // Code in a member's scope speaks as the member; anything else as the coordinator.
                    let inside = EffectId::from(format!("{scope}/0"));
                    let from = if inside.member().is_some() { inside.address() } else { "coordinator".to_string() };
                    self.send(from, to, body);
                }
                HostEvent::GroupOpened { group, members, persistent, budget, member_budget } => {
                    check_group_names(&group, members.iter().map(|m| m.name.as_str()))
                        .map_err(|message| HostError { message })?;
                    // A bad budget ends the run before anything of the group starts (the user's to fix).
                    if let Err(message) = budgets::group_budgets(&group, budget.as_ref(), member_budget.as_ref()) {
                        self.end_with(End::Finished(Err(ErrorInfo::new("InvalidBudget", message))));
                        continue;
                    }
                    self.groups.insert(group.clone(), (members.iter().map(|m| m.name.clone()).collect(), persistent));
                    let names: Vec<String> = members
                        .iter()
                        .map(|m| m.harness.as_ref().map_or(m.name.clone(), |h| format!("{} on {h}", m.name)))
                        .collect();
                    let message = format!("group opened: {}", names.join(", "));
                    self.observer.progress(Progress::Log { scope: format!("group:{group}"), message });
                    self.record(Event::GroupOpened { group, members, persistent, budget, member_budget });
                }
                HostEvent::Checkpoint { group, completed, value } => {
                    self.record(Event::GroupCheckpoint { group, completed, value: Payload::Inline(value) });
                }
                HostEvent::GroupClosed { group } => {
                    self.record(Event::GroupClosed { group });
                }
            }
        }
        Ok(())
    }

    /// Stop an effect the process no longer wants: kill its process tree, journal it, and settle its promise
    /// with a `Cancelled` error.
    pub(super) fn cancel_effect(&mut self, id: &EffectId, reason: &str) {
        let Some(e) = self.effects.get(id) else { return };
        let title = e.request.title.clone();
        let previous = self.finish_effect(id);
        let elapsed_ms = self.release_slot(id, previous, true);
        let error = ErrorInfo::new("Cancelled", format!("effect {id} was cancelled: {reason}"));
        let ts_ms = self.record(Event::EffectCancelled { effect: id.clone(), reason: reason.to_string() });
        let shown = Some(error.clone());
        self.observer.progress(Progress::Finished { effect: id.clone(), title, elapsed_ms, error: shown });
        self.notices.push_back(Notice::Deliver { effect: id.clone(), outcome: Err(error), ts_ms });
    }

    /// Hand the process what it must be told, one notice at a time in journal order; each may wake code that
    /// queues more.
    pub(super) fn tell(&mut self) -> Result<(), Error> {
        while let Some(notice) = self.notices.pop_front() {
            let events = match notice {
                Notice::Deliver { effect, outcome, ts_ms } => self.host.deliver(&effect, &outcome, ts_ms)?,
                Notice::Message { from, body, ts_ms } => self.host.message(&from, &body, ts_ms)?,
            };
            self.apply(events)?;
        }
        Ok(())
    }
}

/// A request as messages name it: `task "ID" (FILE:LINE:COL)`.
fn named(req: &EffectRequest) -> String {
    let at = req.callsite.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
    format!("task \"{}\"{at}", req.task_id)
}

/// Where an effect stands in the scheduler's line: the `priority` of its task description (set there, by
/// `ctx.task(def, args, { priority })` or by its group), and the group whose turn it takes, if any.
fn class_of(req: &EffectRequest) -> scheduler::Class {
    let priority = req.task.get("priority").and_then(|p| p.as_i64().or_else(|| p.as_f64().map(|f| f as i64)));
    let share = req.effect.as_str().strip_prefix("group:").and_then(|rest| rest.split('/').next()).unwrap_or("");
    scheduler::Class { priority: priority.unwrap_or(0), share: share.to_string() }
}
