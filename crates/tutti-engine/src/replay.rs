//! Replay: what the journal says a run already did, and the pure checks that the re-executed process does
//! the same. The driver feeds requests and deliveries through [`Replay`]; any divergence is a
//! [`Nondeterminism`] error that names both calls. A change taken with `--accept-changes` supersedes the
//! changed effect and every effect requested after it ([`Replay::accept`], [`Replay::forget`]): replay no
//! longer knows them, and they run again. Nothing here touches storage or JavaScript.

use std::collections::VecDeque;

use crate::hash::{HashMap, HashSet};

use serde_json::Value;
use tutti_journal::{EffectId, ErrorInfo, Event, Payload, Record, Seq};

use crate::error::{Call, Nondeterminism};
use crate::host::EffectRequest;
use crate::identity::digest;

/// A journaled result, in journal order.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub(crate) effect: EffectId,
    pub(crate) ts_ms: i64,
    pub(crate) outcome: Result<Value, ErrorInfo>,
    /// Set for something that is not an effect's result; `effect` is then empty.
    pub(crate) note: Option<Note>,
}

/// Journaled facts the process observes besides results, re-delivered at their place in the journal.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Note {
    /// A message to the coordinator.
    Message { from: String, body: Value },
    /// A member's harness session.
    Bound { member: String, session: String },
}

/// A message to a member that no effect has taken yet.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Undelivered {
    pub(crate) id: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) body: Value,
}

/// Per effect: what the journal recorded of its request and attempts.
#[derive(Clone, Debug)]
pub(crate) struct Journaled {
    /// The call without its arguments (see `args`).
    pub(crate) call: Call,
    /// The journaled arguments, inline or in a blob.
    pub(crate) args: Payload,
    /// Where the request is in the journal: a change accepted at an effect supersedes the effects after it.
    pub(crate) seq: Seq,
    /// Highest attempt number journaled as started or re-dispatched (0: never started).
    pub(crate) last_attempt: u32,
    /// Process group of the last journaled start, if the harness reported one.
    pub(crate) pid: Option<u32>,
    pub(crate) resolved: bool,
    /// Retries its retry policy granted (`effect_retrying`), and the one still waiting for its backoff: the
    /// failed attempt and the wake time, until a later attempt starts.
    pub(crate) retries: u32,
    pub(crate) backoff: Option<(u32, i64)>,
    /// The journaled task description, kept only for effects that must run again: a replaying host does not
    /// rebuild it.
    pub(crate) task: Option<Payload>,
}

impl Journaled {
    /// The journaled call as an error shows it: with its arguments when they are inline.
    fn shown(&self) -> Call {
        let args = match &self.args {
            Payload::Inline(v) => Some(v.clone()),
            Payload::Blob { .. } => None,
        };
        Call { args, ..self.call.clone() }
    }
}

/// A changed call taken with `--accept-changes`: the effect, its call as journaled and as the process now
/// makes it, and what it supersedes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Accepted {
    pub(crate) effect: EffectId,
    pub(crate) journaled: Call,
    pub(crate) old_args: Payload,
    pub(crate) replayed: Call,
    pub(crate) new_args: Value,
    /// The changed effect and every effect the journal requested after it, in journal order.
    pub(crate) superseded: Vec<EffectId>,
    /// The superseded effects without a journaled result: (effect, last attempt, process group), for the
    /// driver to kill what a dead driver may have left of them.
    pub(crate) unfinished: Vec<(EffectId, u32, Option<u32>)>,
}

impl Accepted {
    /// The journal's record of the change: `changes_accepted`.
    pub(crate) fn event(&self) -> Event {
        Event::ChangesAccepted {
            effect: self.effect.clone(),
            old_task_id: self.journaled.task_id.clone(),
            old_args: self.old_args.clone(),
            new_task_id: self.replayed.task_id.clone(),
            new_args: Payload::Inline(self.new_args.clone()),
            superseded: self.superseded.clone(),
        }
    }
}

/// The replay state of one resumed run.
#[derive(Default)]
pub(crate) struct Replay {
    journaled: HashMap<EffectId, Journaled>,
    deliveries: VecDeque<Delivery>,
    requested: HashSet<EffectId>,
    /// Effects whose journaled request and result a `changes_accepted` voided: new work when called again.
    superseded: HashSet<EffectId>,
    /// Messages to members not yet handed to an effect, in journal order.
    mailbox: Vec<Undelivered>,
    /// Members of each group opened so far, and whether the group is persistent.
    groups: HashMap<String, (Vec<String>, bool)>,
    /// The last journaled harness session of each member (`GROUP/MEMBER`).
    sessions: HashMap<String, String>,
    /// The journaled worktree and branch of each isolated member (`GROUP/MEMBER`).
    member_worktrees: HashMap<String, (String, String)>,
}

/// Turn journal records into a replay, consuming them; `load` resolves blob payloads of results.
pub(crate) fn build(
    records: Vec<Record>,
    mut load: impl FnMut(&Payload) -> Result<Value, tutti_journal::Error>,
) -> Result<Replay, tutti_journal::Error> {
    let mut replay = Replay::default();
    for r in records {
        replay.read(r, &mut load)?;
    }
    for j in replay.journaled.values_mut().filter(|j| j.resolved) {
        j.task = None;
    }
    Ok(replay)
}

impl Replay {
    /// Take one journal record into the replay state.
    fn read(
        &mut self,
        r: Record,
        load: &mut impl FnMut(&Payload) -> Result<Value, tutti_journal::Error>,
    ) -> Result<(), tutti_journal::Error> {
        match r.event {
            Event::EffectRequested { effect, task_id, digest, callsite, task, args, .. } => {
                let call = Call { task_id, digest, callsite, args: None };
                let j = Journaled {
                    call,
                    args,
                    seq: r.seq,
                    last_attempt: 0,
                    pid: None,
                    resolved: false,
                    retries: 0,
                    backoff: None,
                    task: Some(task),
                };
                self.journaled.insert(effect, j);
            }
            Event::EffectStarted { effect, attempt, pid, .. } => {
                if let Some(j) = self.journaled.get_mut(&effect) {
                    j.last_attempt = j.last_attempt.max(attempt);
                    j.pid = pid;
                    j.backoff = j.backoff.filter(|(failed, _)| attempt <= *failed);
                }
            }
            Event::EffectRedispatched { effect, attempt, .. } => {
                if let Some(j) = self.journaled.get_mut(&effect) {
                    j.last_attempt = j.last_attempt.max(attempt);
                    j.pid = None;
                    j.backoff = j.backoff.filter(|(failed, _)| attempt <= *failed);
                }
            }
            Event::EffectRetrying { effect, attempt, retry, wake_ms, .. } => {
                if let Some(j) = self.journaled.get_mut(&effect) {
                    j.last_attempt = j.last_attempt.max(attempt);
                    j.pid = None;
                    j.retries = j.retries.max(retry);
                    j.backoff = Some((attempt, wake_ms));
                }
            }
            Event::EffectResolved { effect, outcome, .. } => {
                let outcome = match outcome {
                    tutti_journal::Outcome::Ok { value: Payload::Inline(v) } => Ok(v),
                    tutti_journal::Outcome::Ok { value } => Ok(load(&value)?),
                    tutti_journal::Outcome::Error { error } => Err(error),
                };
                self.resolved(effect, r.ts_ms, outcome);
            }
            Event::EffectCancelled { effect, reason } => {
                let error = ErrorInfo::new("Cancelled", format!("effect {effect} was cancelled: {reason}"));
                self.resolved(effect, r.ts_ms, Err(error));
            }
            Event::ChangesAccepted { superseded, .. } => self.forget(&superseded),
            Event::MessageSent { id, from, to, body } => {
                let body = match body {
                    Payload::Inline(v) => v,
                    other => load(&other)?,
                };
                if to == "coordinator" {
                    self.note(r.ts_ms, Note::Message { from, body });
                } else {
                    self.mailbox.push(Undelivered { id, from, to, body });
                }
            }
            Event::MessageDelivered { id, .. } => self.mailbox.retain(|m| m.id != id),
            Event::GroupOpened { group, members, persistent, .. } => {
                self.groups.insert(group, (members.into_iter().map(|m| m.name).collect(), persistent));
            }
            Event::MemberBound { group, member, session, worktree, branch, .. }
                if worktree.is_some() || branch.is_some() =>
            {
                let address = format!("{group}/{member}");
                if let (Some(path), Some(branch)) = (worktree, branch) {
                    self.member_worktrees.insert(address.clone(), (path, branch));
                }
                if !session.is_empty() {
                    self.bound(address, session, r.ts_ms);
                }
            }
            Event::MemberBound { group, member, session, .. } => {
                self.bound(format!("{group}/{member}"), session, r.ts_ms)
            }
            _ => {}
        }
        Ok(())
    }

    fn resolved(&mut self, effect: EffectId, ts_ms: i64, outcome: Result<Value, ErrorInfo>) {
        if let Some(j) = self.journaled.get_mut(&effect) {
            j.resolved = true;
        }
        self.deliveries.push_back(Delivery { effect, ts_ms, outcome, note: None });
    }

    fn bound(&mut self, member: String, session: String, ts_ms: i64) {
        self.sessions.insert(member.clone(), session.clone());
        self.note(ts_ms, Note::Bound { member, session });
    }

    fn note(&mut self, ts_ms: i64, note: Note) {
        let outcome = Ok(Value::Null);
        self.deliveries.push_back(Delivery { effect: EffectId::default(), ts_ms, outcome, note: Some(note) });
    }
}

/// What the driver should do with a request met during replay.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// The journal has it and its result: replay delivers that result; nothing to run.
    Replayed,
    /// The journal has it but no result: it must run again after replay.
    Unresolved,
    /// All journaled results are delivered: this is new work.
    New,
}

impl Replay {
    /// Check a request the re-executed process made.
    pub(crate) fn request(&mut self, req: &EffectRequest) -> Result<Verdict, Box<Nondeterminism>> {
        let journaled = self.journaled.get(&req.effect);
        // Equal inline arguments have equal digests: the digest is computed only when they differ or sit in a
        // blob (a resume checks tens of thousands of requests).
        let same_args = |j: &Journaled| matches!(&j.args, Payload::Inline(args) if *args == req.args);
        if let Some(j) = journaled.filter(|j| j.call.task_id == req.task_id && same_args(j)) {
            self.requested.insert(req.effect.clone());
            return Ok(if j.resolved { Verdict::Replayed } else { Verdict::Unresolved });
        }
        let mut replayed = Call {
            task_id: req.task_id.clone(),
            digest: digest(&req.args),
            callsite: req.callsite.clone(),
            args: None,
        };
        match journaled {
            Some(j) if j.call.task_id == replayed.task_id && j.call.digest == replayed.digest => {
                self.requested.insert(req.effect.clone());
                Ok(if j.resolved { Verdict::Replayed } else { Verdict::Unresolved })
            }
            Some(j) => {
                replayed.args = Some(req.args.clone());
                Err(Box::new(Nondeterminism::Changed { effect: req.effect.clone(), journaled: j.shown(), replayed }))
            }
            // A superseded effect is new work wherever the process calls it again.
            None if self.deliveries.is_empty() || self.superseded.contains(&req.effect) => Ok(Verdict::New),
            None => {
                replayed.args = Some(req.args.clone());
                Err(Box::new(Nondeterminism::Unexpected { effect: req.effect.clone(), replayed }))
            }
        }
    }

    /// True when the journal holds no effect at all (the driver died before its first commit).
    pub(crate) fn is_empty(&self) -> bool {
        self.journaled.is_empty() && self.deliveries.is_empty() && self.superseded.is_empty()
    }

    /// Take the changed call at `effect` (the process now calls `replayed`, which carries its arguments):
    /// `effect` and every effect the journal requested after it are superseded — any of them may have
    /// used its result. `None` when the journal has no such effect or the new arguments are unknown.
    pub(crate) fn accept(&self, effect: &EffectId, replayed: &Call) -> Option<Accepted> {
        let changed = self.journaled.get(effect)?;
        let new_args = replayed.args.clone()?;
        let mut after: Vec<(&EffectId, &Journaled)> =
            self.journaled.iter().filter(|(_, j)| j.seq >= changed.seq).collect();
        after.sort_by_key(|(_, j)| j.seq);
        let unfinished = after.iter().filter(|(_, j)| !j.resolved);
        Some(Accepted {
            effect: effect.clone(),
            journaled: changed.shown(),
            old_args: changed.args.clone(),
            replayed: replayed.clone(),
            new_args,
            superseded: after.iter().map(|(id, _)| (*id).clone()).collect(),
            unfinished: unfinished.map(|(id, j)| ((*id).clone(), j.last_attempt, j.pid)).collect(),
        })
    }

    /// Forget the journaled requests and results of `superseded` (a `changes_accepted`): from here on the
    /// journal does not know them, and a call to one of them is new work.
    pub(crate) fn forget(&mut self, superseded: &[EffectId]) {
        let gone: HashSet<&EffectId> = superseded.iter().collect();
        self.journaled.retain(|id, _| !gone.contains(id));
        self.requested.retain(|id| !gone.contains(id));
        self.deliveries.retain(|d| d.note.is_some() || !gone.contains(&d.effect));
        self.superseded.extend(superseded.iter().cloned());
    }

    /// The journaled task description of an effect that must run again.
    pub(crate) fn take_task(&mut self, effect: &str) -> Option<Payload> {
        self.journaled.get_mut(effect).and_then(|j| j.task.take())
    }

    /// The next journaled result to deliver, checked to be for an effect the process has requested.
    pub(crate) fn next_delivery(&mut self) -> Option<Result<Delivery, Nondeterminism>> {
        let d = self.deliveries.pop_front()?;
        if d.note.is_some() || self.requested.contains(&d.effect) {
            return Some(Ok(d));
        }
        let journaled = self.journaled.get(&d.effect).map(Journaled::shown).unwrap_or(Call {
            task_id: "?".into(),
            digest: "?".into(),
            callsite: None,
            args: None,
        });
        Some(Err(Nondeterminism::Missing { effect: d.effect, journaled }))
    }

    /// The result the process was about to receive when it finished, if any: finishing early is divergence.
    pub(crate) fn undelivered(&self) -> Option<&EffectId> {
        self.deliveries.iter().find(|d| d.note.is_none()).map(|d| &d.effect)
    }

    pub(crate) fn groups(&self) -> &HashMap<String, (Vec<String>, bool)> {
        &self.groups
    }

    pub(crate) fn sessions(&self) -> &HashMap<String, String> {
        &self.sessions
    }

    pub(crate) fn member_worktrees(&self) -> &HashMap<String, (String, String)> {
        &self.member_worktrees
    }

    /// Messages to members that no effect took before the driver stopped.
    pub(crate) fn take_mailbox(&mut self) -> Vec<Undelivered> {
        std::mem::take(&mut self.mailbox)
    }

    /// Effects the journal requested and the replay re-requested, but that never got a result: they must be
    /// dispatched again. Each comes with its last journaled attempt and process group.
    /// The retries the journal granted `effect`, and its pending backoff (failed attempt, wake time), if any.
    pub(crate) fn retry_state(&self, effect: &EffectId) -> (u32, Option<(u32, i64)>) {
        self.journaled.get(effect).map_or((0, None), |j| (j.retries, j.backoff))
    }

    pub(crate) fn unresolved(&self) -> Vec<(EffectId, u32, Option<u32>)> {
        let mut out: Vec<(EffectId, u32, Option<u32>)> = self
            .journaled
            .iter()
            .filter(|(id, j)| !j.resolved && self.requested.contains(*id))
            .map(|(id, j)| (id.clone(), j.last_attempt, j.pid))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tutti_journal::{Outcome, Payload};

    fn req(effect: &str, task: &str, args: Value) -> EffectRequest {
        EffectRequest {
            effect: effect.into(),
            scope: "root".into(),
            task_id: task.into(),
            kind: "shell".into(),
            title: None,
            callsite: Some("p.js:3:7".into()),
            args,
            task: json!({"kind": "shell"}),
        }
    }

    fn requested(r: &EffectRequest, seq: u64) -> Record {
        Record {
            seq,
            ts_ms: 0,
            event: Event::EffectRequested {
                effect: r.effect.clone(),
                scope: r.scope.clone(),
                task_id: r.task_id.clone(),
                kind: r.kind.to_string(),
                digest: digest(&r.args),
                title: None,
                callsite: r.callsite.clone(),
                args: Payload::Inline(r.args.clone()),
                task: Payload::Inline(r.task.clone()),
            },
        }
    }

    fn resolved(effect: &str, seq: u64) -> Record {
        Record {
            seq,
            ts_ms: 7,
            event: Event::EffectResolved {
                effect: effect.into(),
                attempt: 1,
                outcome: Outcome::Ok { value: Payload::Inline(json!(1)) },
            },
        }
    }

    fn replay(records: &[Record]) -> Replay {
        build(records.to_vec(), |p| match p {
            Payload::Inline(v) => Ok(v.clone()),
            Payload::Blob { hash, .. } => Err(tutti_journal::Error::MissingBlob(hash.clone())),
        })
        .unwrap()
    }

    #[test]
    fn same_calls_replay() {
        let a = req("root/0", "a", json!({"x": 1}));
        let mut r = replay(&[requested(&a, 1), resolved("root/0", 2)]);
        assert_eq!(r.request(&a), Ok(Verdict::Replayed));
        let d = r.next_delivery().unwrap().unwrap();
        assert_eq!((d.effect.as_str(), d.ts_ms), ("root/0", 7));
        assert_eq!(r.request(&req("root/1", "b", json!(null))), Ok(Verdict::New));
    }

    #[test]
    fn changed_arguments_name_both_calls() {
        let a = req("root/0", "a", json!({"x": 1}));
        let mut r = replay(&[requested(&a, 1)]);
        let err = r.request(&req("root/0", "a", json!({"x": 2}))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("root/0") && text.contains("task \"a\"") && text.contains("p.js:3:7"), "{text}");
    }

    #[test]
    fn changed_task_is_divergence() {
        let a = req("root/0", "a", json!(1));
        let mut r = replay(&[requested(&a, 1)]);
        assert!(matches!(
            r.request(&req("root/0", "b", json!(1))).map_err(|e| *e),
            Err(Nondeterminism::Changed { .. })
        ));
    }

    #[test]
    fn new_call_before_journal_is_exhausted_is_divergence() {
        let a = req("root/0", "a", json!(1));
        let mut r = replay(&[requested(&a, 1), resolved("root/0", 2)]);
        assert!(matches!(
            r.request(&req("root/5", "z", json!(1))).map_err(|e| *e),
            Err(Nondeterminism::Unexpected { .. })
        ));
    }

    #[test]
    fn result_for_unrequested_effect_is_divergence() {
        let a = req("root/0", "a", json!(1));
        let mut r = replay(&[requested(&a, 1), resolved("root/0", 2)]);
        assert!(matches!(r.next_delivery(), Some(Err(Nondeterminism::Missing { .. }))));
    }

    #[test]
    fn unresolved_effects_are_listed_with_attempts() {
        let a = req("root/0", "a", json!(1));
        let started = Record {
            seq: 2,
            ts_ms: 0,
            event: Event::EffectStarted { effect: "root/0".into(), attempt: 1, harness: "shell".into(), pid: None },
        };
        let mut r = replay(&[requested(&a, 1), started]);
        r.request(&a).unwrap();
        assert_eq!(r.unresolved(), vec![("root/0".into(), 1, None)]);
    }

    /// a, b and c, each resolved in turn.
    fn three_resolved() -> (Vec<Record>, [EffectRequest; 3]) {
        let calls = [req("root/0", "a", json!(1)), req("root/1", "b", json!(2)), req("root/2", "c", json!(3))];
        let mut records = Vec::new();
        for (i, call) in calls.iter().enumerate() {
            records.push(requested(call, 2 * i as u64 + 1));
            records.push(resolved(&call.effect, 2 * i as u64 + 2));
        }
        (records, calls)
    }

    #[test]
    fn an_accepted_change_supersedes_the_changed_effect_and_every_later_one() {
        let (records, [a, _, c]) = three_resolved();
        let mut r = replay(&records);
        assert_eq!(r.request(&a), Ok(Verdict::Replayed));
        let changed = req("root/1", "b", json!(20));
        let Err(divergence) = r.request(&changed) else { panic!("a changed call must diverge") };
        let Nondeterminism::Changed { effect, replayed, .. } = *divergence else { panic!("{divergence}") };
        let accepted = r.accept(&effect, &replayed).expect("acceptable");
        assert_eq!(accepted.superseded, [EffectId::from("root/1"), "root/2".into()]);
        assert_eq!((accepted.old_args.clone(), accepted.new_args.clone()), (Payload::Inline(json!(2)), json!(20)));
        assert!(accepted.unfinished.is_empty(), "all three were resolved");

        // The next pass: a keeps its result; b and c are new work, and their old results never come back.
        let mut r = replay(&records);
        r.forget(&accepted.superseded);
        assert_eq!(r.request(&a), Ok(Verdict::Replayed));
        assert_eq!(r.request(&changed), Ok(Verdict::New));
        assert_eq!(r.request(&c), Ok(Verdict::New));
        assert_eq!(r.next_delivery().unwrap().unwrap().effect, "root/0");
        assert!(r.next_delivery().is_none());
    }

    #[test]
    fn a_journaled_acceptance_replays_the_new_results_not_the_superseded_ones() {
        let (mut records, [a, b, c]) = three_resolved();
        let mut r = replay(&records);
        r.request(&a).unwrap();
        let changed = req("root/1", "b", json!(20));
        let replayed = Call { task_id: "b".into(), digest: digest(&json!(20)), callsite: None, args: Some(json!(20)) };
        let accepted = r.accept(&b.effect, &replayed).expect("acceptable");
        records.push(Record { seq: 7, ts_ms: 0, event: accepted.event() });
        records.push(requested(&changed, 8));
        records.push(Record { seq: 9, ts_ms: 9, ..resolved("root/1", 9) });

        let mut r = replay(&records);
        assert_eq!(r.request(&a), Ok(Verdict::Replayed));
        assert_eq!(r.request(&changed), Ok(Verdict::Replayed), "the re-run's request is the journal's now");
        assert!(matches!(r.request(&b).map_err(|e| *e), Err(Nondeterminism::Changed { .. })), "the old call is gone");
        let order: Vec<(String, i64)> = std::iter::from_fn(|| r.next_delivery())
            .map(|d| d.unwrap())
            .map(|d| (d.effect.to_string(), d.ts_ms))
            .collect();
        assert_eq!(order, [("root/0".to_string(), 7), ("root/1".to_string(), 9)]);
        assert_eq!(r.request(&c), Ok(Verdict::New), "c was superseded and not called again yet");
    }

    #[test]
    fn a_superseded_effect_without_a_result_is_named_for_its_leftovers() {
        let a = req("root/0", "a", json!(1));
        let started = Record {
            seq: 2,
            ts_ms: 0,
            event: Event::EffectStarted { effect: "root/0".into(), attempt: 2, harness: "shell".into(), pid: Some(77) },
        };
        let r = replay(&[requested(&a, 1), started]);
        let replayed = Call { task_id: "a".into(), digest: "?".into(), callsite: None, args: Some(json!(5)) };
        let accepted = r.accept(&a.effect, &replayed).expect("acceptable");
        assert_eq!(accepted.unfinished, [("root/0".into(), 2, Some(77))]);
        let no_args = Call { args: None, ..replayed };
        assert!(r.accept(&a.effect, &no_args).is_none(), "no new arguments, nothing to journal");
    }
}
