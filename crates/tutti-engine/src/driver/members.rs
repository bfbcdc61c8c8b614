//! What the driver does for groups and agents beyond running effects: messages (journaled, delivered to the
//! process in journal order or to a member's next turn), members' harness sessions, and holding answers to
//! their output schema with one corrective turn.

use super::*;

impl Driver<'_> {
    /// Hold an agent's answer to the task's output schema. A first failure gets one corrective turn in the
    /// same session (returns None: the effect is queued again); a second one is a task error carrying the raw
    /// answer.
    pub(super) fn check_output(
        &mut self,
        id: &EffectId,
        outcome: crate::harness::Outcome,
    ) -> Option<crate::harness::Outcome> {
        let e = self.effects.get(id)?;
        let Some(schema) = crate::schema::of(&e.request.kind, &e.request.task) else { return Some(outcome) };
        let (raw, errors) = match &outcome {
            Ok(value) => (value.clone(), crate::schema::violations(&schema, value)),
            Err(Failure::Output { error, raw }) => {
                (raw.clone(), vec![format!("the answer is not JSON: {}", error.message)])
            }
            Err(_) => return Some(outcome),
        };
        if errors.is_empty() {
            return Some(outcome);
        }
        if e.corrected {
            let message =
                format!("the answer does not match the output schema after a corrective turn: {}", errors.join("; "));
            let error = ErrorInfo::new("SchemaError", message).with_data(json!({ "raw": raw, "errors": errors }));
            return Some(Err(Failure::Task(error)));
        }
        let e = self.effects.get_mut(id)?;
        e.corrected = true;
        e.correction = Some(crate::schema::correction(&errors));
        e.attempt += 1;
        let attempt = e.attempt;
        let previous = e.transition(State::Queued);
        self.release_slot(id, previous, false);
        let reason = format!("corrective turn: the answer does not match the output schema ({})", errors.join("; "));
        self.record(Event::EffectRedispatched { effect: id.clone(), attempt, reason });
        self.scheduler.push_front(id.clone());
        None
    }

    /// An attempt ran in `session`: a corrective turn continues it; for a group member, journal the session
    /// when it is new and let the process know.
    pub(super) fn bind(&mut self, effect: &EffectId, attempt: u32, session: String) -> Result<(), Error> {
        let Some(e) = self.effects.get(effect).filter(|e| e.attempt == attempt) else { return Ok(()) };
        self.attempt_sessions.insert(effect.clone(), session.clone());
        let Some((group, member)) = effect.member() else { return Ok(()) };
        let address = effect.address();
        if self.sessions.get(&address) == Some(&session) {
            return Ok(());
        }
        let harness = e.harness.clone().unwrap_or_default();
        let (group, member) = (group.to_string(), member.to_string());
        let (worktree, branch) = self.member_worktrees.get(&address).cloned().unzip();
        self.record(Event::MemberBound { group, member, harness, session: session.clone(), worktree, branch });
        self.host.bound(&address, &session)?;
        self.sessions.insert(address, session);
        Ok(())
    }

    /// An isolated member's attempt works in `path` on `branch`: journal the binding when it is new.
    pub(super) fn bind_worktree(&mut self, effect: &EffectId, attempt: u32, path: String, branch: String) {
        let Some(e) = self.effects.get(effect).filter(|e| e.attempt == attempt) else { return };
        let Some((group, member)) = effect.member() else { return };
        let address = effect.address();
        if self.member_worktrees.get(&address).is_some_and(|(_, b)| *b == branch) {
            return;
        }
        let harness = e.harness.clone().unwrap_or_default();
        let session = self.sessions.get(&address).cloned().unwrap_or_default();
        let (group, member) = (group.to_string(), member.to_string());
        let (worktree, known) = (Some(path.clone()), Some(branch.clone()));
        self.record(Event::MemberBound { group, member, harness, session, worktree, branch: known });
        self.member_worktrees.insert(address, (path, branch));
    }

    /// The session a member's next turn resumes: its last one, when its group is persistent.
    pub(super) fn session_for(&self, effect: &EffectId) -> Option<String> {
        let (group, _) = effect.member()?;
        let persistent = self.groups.get(group).is_none_or(|(_, p)| *p);
        persistent.then(|| self.sessions.get(&effect.address()).cloned()).flatten()
    }

    /// Journal a message; one to the coordinator is handed to the process at once, one to members waits in
    /// the mailbox for their next turn (`GROUP/*` goes to every member of the group).
    pub(super) fn send(&mut self, from: String, to: String, body: Value) {
        let targets: Vec<String> = match to.strip_suffix("/*") {
            Some(group) => {
                self.groups.get(group).into_iter().flat_map(|(m, _)| m).map(|m| format!("{group}/{m}")).collect()
            }
            None => vec![to],
        };
        for to in targets {
            let id = ulid::Ulid::new().to_string();
            let event = Event::MessageSent {
                id: id.clone(),
                from: from.clone(),
                to: to.clone(),
                body: Payload::Inline(body.clone()),
            };
            let ts_ms = self.record(event);
            self.observer
                .progress(Progress::Log { scope: "message".into(), message: format!("{from} -> {to}: {body}") });
            if to == "coordinator" {
                self.notices.push_back(Notice::Message { from: from.clone(), body: body.clone(), ts_ms });
            } else {
                self.mailbox.push(crate::replay::Undelivered { id, from: from.clone(), to, body: body.clone() });
            }
        }
    }

    /// Messages waiting for the member (or effect) that `effect` serves, taken from the mailbox and journaled
    /// as delivered to it.
    pub(super) fn inbound(&mut self, effect: &EffectId) -> Vec<crate::harness::Inbound> {
        let address = effect.address();
        let (mine, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.mailbox).into_iter().partition(|m| m.to == address);
        self.mailbox = rest;
        mine.into_iter()
            .map(|m| {
                self.record(Event::MessageDelivered { id: m.id, effect: effect.clone() });
                crate::harness::Inbound { from: m.from, body: m.body }
            })
            .collect()
    }
}
