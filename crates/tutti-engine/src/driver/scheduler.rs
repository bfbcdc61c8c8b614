//! Which queued effect starts next, and when: the run's queue, the run's global limit, each harness's own
//! limit (its `max_parallel`, else what the available memory fits), and the effects waiting for a slot of a
//! harness that is full. It knows effects only by id and harnesses only by name.

use std::collections::{HashMap, VecDeque};

use tutti_journal::EffectId;

use crate::platform::Platform;
use crate::registry::Harnesses;

/// What to do with the effect at the head of the queue.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Start it now.
    Start,
    /// The run is at its global limit: the effect stays at the head; stop dispatching.
    RunFull,
    /// Its harness is at its own limit: the effect waits for a slot of that harness. `first` is true when
    /// no other effect was already waiting for one (worth telling the user once).
    HarnessFull { first: bool },
}

pub(crate) struct Scheduler {
    max_parallel: usize,
    queue: VecDeque<EffectId>,
    /// Effects waiting for a slot of a harness that is at its own limit, per harness.
    blocked: HashMap<String, VecDeque<EffectId>>,
    running: usize,
    running_by_harness: HashMap<String, usize>,
}

impl Scheduler {
    pub(crate) fn new(max_parallel: usize) -> Self {
        Self {
            max_parallel,
            queue: VecDeque::new(),
            blocked: HashMap::new(),
            running: 0,
            running_by_harness: HashMap::new(),
        }
    }

    /// Queue a new effect behind the others.
    pub(crate) fn push_back(&mut self, id: EffectId) {
        self.queue.push_back(id);
    }

    /// Queue an effect ahead of the others (a fallback, a corrective turn, a re-dispatch after resume).
    pub(crate) fn push_front(&mut self, id: EffectId) {
        self.queue.push_front(id);
    }

    pub(crate) fn pop(&mut self) -> Option<EffectId> {
        self.queue.pop_front()
    }

    /// The effects in the queue (not blocked, not running), head first.
    pub(crate) fn queued(&self) -> impl Iterator<Item = &EffectId> {
        self.queue.iter()
    }

    pub(crate) fn running(&self) -> usize {
        self.running
    }

    /// Decide about `id`, just popped, that runs on `harness` whose own limit is `limit`. An effect that may
    /// not start is put back (at the head) or set aside (blocked on its harness).
    pub(crate) fn admit(&mut self, id: EffectId, harness: &str, limit: Option<usize>) -> Admission {
        if self.running >= self.max_parallel {
            self.queue.push_front(id);
            return Admission::RunFull;
        }
        let busy = self.running_by_harness.get(harness).copied().unwrap_or(0);
        if limit.is_some_and(|l| busy >= l) {
            let waiting = self.blocked.entry(harness.to_string()).or_default();
            let first = waiting.is_empty();
            waiting.push_back(id);
            return Admission::HarnessFull { first };
        }
        Admission::Start
    }

    /// An attempt started on `harness`.
    pub(crate) fn started(&mut self, harness: &str) {
        self.running += 1;
        *self.running_by_harness.entry(harness.to_string()).or_default() += 1;
    }

    /// An attempt on `harness` ended: its slot is free, and the oldest effect waiting for one goes first.
    pub(crate) fn released(&mut self, harness: &str) {
        self.running = self.running.saturating_sub(1);
        if let Some(n) = self.running_by_harness.get_mut(harness) {
            *n = n.saturating_sub(1);
        }
        if let Some(id) = self.blocked.get_mut(harness).and_then(VecDeque::pop_front) {
            self.queue.push_front(id);
        }
    }
}

/// How many attempts of a harness may run at once, and why: its `max_parallel`, else what the available
/// memory fits (at least one); `None` when only the run's global limit applies.
pub(crate) fn limit_of(harnesses: &Harnesses, platform: &dyn Platform, name: &str) -> Option<(usize, String)> {
    let h = harnesses.get(name)?;
    if let Some(n) = h.max_parallel() {
        return Some((n, format!("`max_parallel = {n}` for harness {name}")));
    }
    let per = h.memory_per_attempt_mb()?;
    let available = platform.available_memory_mb()?;
    let n = ((available * 8 / 10) / per.max(1)).max(1) as usize;
    Some((
        n,
        format!(
            "harness {name} runs at most {n} at once: each attempt needs about {per} MB and {available} MB are \
             available (set max_parallel to override)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> EffectId {
        s.into()
    }

    #[test]
    fn the_global_limit_keeps_the_effect_at_the_head() {
        let mut s = Scheduler::new(1);
        s.push_back(id("a"));
        s.push_back(id("b"));
        let a = s.pop().expect("a");
        assert_eq!(s.admit(a, "shell", None), Admission::Start);
        s.started("shell");
        let b = s.pop().expect("b");
        assert_eq!(s.admit(b, "shell", None), Admission::RunFull);
        assert_eq!(s.pop(), Some(id("b")), "b waits at the head, not behind later effects");
    }

    #[test]
    fn a_full_harness_blocks_only_its_own_effects() {
        let mut s = Scheduler::new(10);
        s.started("claude");
        assert_eq!(s.admit(id("a"), "claude", Some(1)), Admission::HarnessFull { first: true });
        assert_eq!(s.admit(id("b"), "claude", Some(1)), Admission::HarnessFull { first: false });
        assert_eq!(s.admit(id("c"), "codex", Some(1)), Admission::Start, "another harness is not held up");
        assert_eq!(s.pop(), None, "blocked effects are not in the queue");
    }

    #[test]
    fn a_freed_slot_lets_the_oldest_blocked_effect_go_first() {
        let mut s = Scheduler::new(10);
        s.started("claude");
        s.admit(id("a"), "claude", Some(1));
        s.admit(id("b"), "claude", Some(1));
        s.push_back(id("z"));
        s.released("claude");
        assert_eq!(s.running(), 0);
        assert_eq!(s.pop(), Some(id("a")), "the oldest blocked effect goes ahead of the queue");
        assert_eq!(s.pop(), Some(id("z")));
        assert_eq!(s.pop(), None, "b still waits for the next slot");
    }

    #[test]
    fn releasing_another_harness_unblocks_nothing() {
        let mut s = Scheduler::new(10);
        s.started("claude");
        s.started("codex");
        s.admit(id("a"), "claude", Some(1));
        s.released("codex");
        assert_eq!(s.pop(), None);
        assert_eq!(s.queued().count(), 0);
    }
}
