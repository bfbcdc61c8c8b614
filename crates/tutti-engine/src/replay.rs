//! Replay: what the journal says a run already did, and the pure checks that the re-executed process does
//! the same. The driver feeds requests and deliveries through [`Replay`]; any divergence is a
//! [`Nondeterminism`] error that names both calls. Nothing here touches storage or JavaScript.

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::Value;
use tutti_journal::{EffectId, ErrorInfo, Event, Record};

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
    pub(crate) call: Call,
    /// Highest attempt number journaled as started or re-dispatched (0: never started).
    pub(crate) last_attempt: u32,
    /// Process group of the last journaled start, if the harness reported one.
    pub(crate) pid: Option<u32>,
    pub(crate) resolved: bool,
    /// The journaled task description, kept only for effects that must run again: a replaying host does not
    /// rebuild it.
    pub(crate) task: Option<tutti_journal::Payload>,
}

/// The replay state of one resumed run.
pub(crate) struct Replay {
    journaled: HashMap<EffectId, Journaled>,
    deliveries: VecDeque<Delivery>,
    requested: HashSet<EffectId>,
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
    mut load: impl FnMut(&tutti_journal::Payload) -> Result<Value, tutti_journal::Error>,
) -> Result<Replay, tutti_journal::Error> {
    let mut journaled: HashMap<EffectId, Journaled> = HashMap::new();
    let mut deliveries = VecDeque::new();
    let mut mailbox = Vec::new();
    let mut groups = HashMap::new();
    let mut sessions = HashMap::new();
    let mut member_worktrees = HashMap::new();
    for r in records {
        match r.event {
            Event::EffectRequested { effect, task_id, digest, callsite, task, args, .. } => {
                let args = match args {
                    tutti_journal::Payload::Inline(v) => Some(v),
                    _ => None,
                };
                let call = Call { task_id, digest, callsite, args };
                let j = Journaled { call, last_attempt: 0, pid: None, resolved: false, task: Some(task) };
                journaled.insert(effect, j);
            }
            Event::EffectStarted { effect, attempt, pid, .. } => {
                if let Some(j) = journaled.get_mut(&effect) {
                    j.last_attempt = j.last_attempt.max(attempt);
                    j.pid = pid;
                }
            }
            Event::EffectRedispatched { effect, attempt, .. } => {
                if let Some(j) = journaled.get_mut(&effect) {
                    j.last_attempt = j.last_attempt.max(attempt);
                    j.pid = None;
                }
            }
            Event::EffectResolved { effect, outcome, .. } => {
                let outcome = match outcome {
                    tutti_journal::Outcome::Ok { value: tutti_journal::Payload::Inline(v) } => Ok(v),
                    tutti_journal::Outcome::Ok { value } => Ok(load(&value)?),
                    tutti_journal::Outcome::Error { error } => Err(error),
                };
                if let Some(j) = journaled.get_mut(&effect) {
                    j.resolved = true;
                }
                deliveries.push_back(Delivery { effect, ts_ms: r.ts_ms, outcome, note: None });
            }
            Event::EffectCancelled { effect, reason } => {
                let error = ErrorInfo::new("Cancelled", format!("effect {effect} was cancelled: {reason}"));
                if let Some(j) = journaled.get_mut(&effect) {
                    j.resolved = true;
                }
                deliveries.push_back(Delivery { effect, ts_ms: r.ts_ms, outcome: Err(error), note: None });
            }
            Event::MessageSent { id, from, to, body } => {
                let body = match body {
                    tutti_journal::Payload::Inline(v) => v,
                    other => load(&other)?,
                };
                if to == "coordinator" {
                    let note = Some(Note::Message { from, body });
                    deliveries.push_back(Delivery {
                        effect: EffectId::default(),
                        ts_ms: r.ts_ms,
                        outcome: Ok(Value::Null),
                        note,
                    });
                } else {
                    mailbox.push(Undelivered { id, from, to, body });
                }
            }
            Event::MessageDelivered { id, .. } => mailbox.retain(|m| m.id != id),
            Event::GroupOpened { group, members, persistent } => {
                groups.insert(group, (members.into_iter().map(|m| m.name).collect(), persistent));
            }
            Event::MemberBound { group, member, session, worktree, branch, .. }
                if worktree.is_some() || branch.is_some() =>
            {
                let address = format!("{group}/{member}");
                if let (Some(path), Some(branch)) = (worktree, branch) {
                    member_worktrees.insert(address.clone(), (path, branch));
                }
                if !session.is_empty() {
                    sessions.insert(address.clone(), session.clone());
                    let note = Some(Note::Bound { member: address, session });
                    deliveries.push_back(Delivery {
                        effect: EffectId::default(),
                        ts_ms: r.ts_ms,
                        outcome: Ok(Value::Null),
                        note,
                    });
                }
            }
            Event::MemberBound { group, member, session, .. } => {
                let member = format!("{group}/{member}");
                sessions.insert(member.clone(), session.clone());
                let note = Some(Note::Bound { member, session });
                deliveries.push_back(Delivery {
                    effect: EffectId::default(),
                    ts_ms: r.ts_ms,
                    outcome: Ok(Value::Null),
                    note,
                });
            }
            _ => {}
        }
    }
    for j in journaled.values_mut().filter(|j| j.resolved) {
        j.task = None;
    }
    Ok(Replay { journaled, deliveries, requested: HashSet::new(), mailbox, groups, sessions, member_worktrees })
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
        let mut replayed = Call {
            task_id: req.task_id.clone(),
            digest: digest(&req.args),
            callsite: req.callsite.clone(),
            args: None,
        };
        match self.journaled.get(&req.effect) {
            Some(j) if j.call.task_id == replayed.task_id && j.call.digest == replayed.digest => {
                self.requested.insert(req.effect.clone());
                Ok(if j.resolved { Verdict::Replayed } else { Verdict::Unresolved })
            }
            Some(j) => {
                replayed.args = Some(req.args.clone());
                Err(Box::new(Nondeterminism::Changed {
                    effect: req.effect.clone(),
                    journaled: j.call.clone(),
                    replayed,
                }))
            }
            None if self.deliveries.is_empty() => Ok(Verdict::New),
            None => {
                replayed.args = Some(req.args.clone());
                Err(Box::new(Nondeterminism::Unexpected { effect: req.effect.clone(), replayed }))
            }
        }
    }

    /// True when the journal holds no effect at all (the driver died before its first commit).
    pub(crate) fn is_empty(&self) -> bool {
        self.journaled.is_empty() && self.deliveries.is_empty()
    }

    /// The journaled task description of an effect that must run again.
    pub(crate) fn take_task(&mut self, effect: &str) -> Option<tutti_journal::Payload> {
        self.journaled.get_mut(effect).and_then(|j| j.task.take())
    }

    /// The next journaled result to deliver, checked to be for an effect the process has requested.
    pub(crate) fn next_delivery(&mut self) -> Option<Result<Delivery, Nondeterminism>> {
        let d = self.deliveries.pop_front()?;
        if d.note.is_some() || self.requested.contains(&d.effect) {
            return Some(Ok(d));
        }
        let journaled = self.journaled.get(&d.effect).map(|j| j.call.clone()).unwrap_or(Call {
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
}
