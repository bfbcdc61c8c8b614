//! Which queued effect starts next, and when: the run's queue, the run's global limit, each harness's own
//! limit (its `max_parallel`, else what the available memory fits), and the effects waiting for a slot of a
//! harness that is full. Higher priority goes first; within a priority, groups take turns (round-robin by
//! share: a group's name, or the root), so a wide fan-out cannot starve another group or the root; within a
//! share, first come first served. It knows effects only by id and harnesses only by name.

use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};

use crate::hash::HashMap;

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

/// Where an effect stands in line: its priority (higher first), and the share it takes turns in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Class {
    pub(crate) priority: i64,
    /// The group the effect belongs to, or "" for the root scope.
    pub(crate) share: String,
}

/// Effects by priority, each priority's shares taking turns, each share first in first out.
#[derive(Default)]
struct FairQueue {
    lanes: BTreeMap<Reverse<i64>, Lane>,
}

#[derive(Default)]
struct Lane {
    /// The shares with effects waiting, the next to be served first.
    turn: VecDeque<String>,
    shares: HashMap<String, VecDeque<EffectId>>,
}

impl FairQueue {
    fn push(&mut self, id: EffectId, class: &Class) {
        let lane = self.lanes.entry(Reverse(class.priority)).or_default();
        let share = lane.shares.entry(class.share.clone()).or_default();
        if share.is_empty() {
            lane.turn.push_back(class.share.clone());
        }
        share.push_back(id);
    }

    /// The next effect of the highest priority: from the share with the fewest attempts running, the one
    /// served longest ago on a tie.
    fn pop(&mut self, running: &HashMap<String, usize>) -> Option<EffectId> {
        let mut entry = self.lanes.first_entry()?;
        let lane = entry.get_mut();
        let load = |s: &String| running.get(s).copied().unwrap_or(0);
        let at = (0..lane.turn.len()).min_by_key(|&i| (load(&lane.turn[i]), i))?;
        let share = lane.turn.remove(at)?;
        let waiting = lane.shares.get_mut(&share)?;
        let id = waiting.pop_front();
        if waiting.is_empty() {
            lane.shares.remove(&share);
        } else {
            lane.turn.push_back(share);
        }
        if lane.turn.is_empty() {
            entry.remove();
        }
        id
    }

    fn iter(&self) -> impl Iterator<Item = &EffectId> {
        self.lanes.values().flat_map(|lane| lane.turn.iter().filter_map(|s| lane.shares.get(s)).flatten())
    }

    fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }
}

pub(crate) struct Scheduler {
    max_parallel: usize,
    /// Effects that go before any other: put back at the head, fallbacks, corrective turns, re-dispatches.
    front: VecDeque<EffectId>,
    queue: FairQueue,
    /// Effects waiting for a slot of a harness that is at its own limit, per harness, in the same order.
    blocked: HashMap<String, FairQueue>,
    running: usize,
    running_by_harness: HashMap<String, usize>,
    running_by_share: HashMap<String, usize>,
    /// The share of each running attempt, so that its end is counted where its start was.
    share_of: HashMap<EffectId, String>,
}

impl Scheduler {
    pub(crate) fn new(max_parallel: usize) -> Self {
        Self {
            max_parallel,
            front: VecDeque::new(),
            queue: FairQueue::default(),
            blocked: HashMap::default(),
            running: 0,
            running_by_harness: HashMap::default(),
            running_by_share: HashMap::default(),
            share_of: HashMap::default(),
        }
    }

    /// Queue a new effect in its place: behind those of higher or equal priority in its share.
    pub(crate) fn push_back(&mut self, id: EffectId, class: &Class) {
        self.queue.push(id, class);
    }

    /// Queue an effect ahead of the others (a fallback, a corrective turn, a re-dispatch after resume).
    pub(crate) fn push_front(&mut self, id: EffectId) {
        self.front.push_front(id);
    }

    pub(crate) fn pop(&mut self) -> Option<EffectId> {
        self.front.pop_front().or_else(|| self.queue.pop(&self.running_by_share))
    }

    /// The effects in the queue (not blocked, not running), roughly in the order they would start.
    pub(crate) fn queued(&self) -> impl Iterator<Item = &EffectId> {
        self.front.iter().chain(self.queue.iter())
    }

    pub(crate) fn running(&self) -> usize {
        self.running
    }

    /// Decide about `id` of `class`, just popped, that runs on `harness` whose own limit is `limit`. An
    /// effect that may not start is put back (at the head) or set aside (waiting for its harness).
    pub(crate) fn admit(&mut self, id: EffectId, class: &Class, harness: &str, limit: Option<usize>) -> Admission {
        if self.running >= self.max_parallel {
            self.front.push_front(id);
            return Admission::RunFull;
        }
        let busy = self.running_by_harness.get(harness).copied().unwrap_or(0);
        if limit.is_some_and(|l| busy >= l) {
            let waiting = self.blocked.entry(harness.to_string()).or_default();
            let first = waiting.is_empty();
            waiting.push(id, class);
            return Admission::HarnessFull { first };
        }
        Admission::Start
    }

    /// An attempt of `id`, of `class`, started on `harness`.
    pub(crate) fn started(&mut self, id: &EffectId, harness: &str, class: &Class) {
        self.running += 1;
        *self.running_by_harness.entry(harness.to_string()).or_default() += 1;
        *self.running_by_share.entry(class.share.clone()).or_default() += 1;
        self.share_of.insert(id.clone(), class.share.clone());
    }

    /// The attempt of `id` on `harness` ended: its slot is free, and the next effect waiting for one (by
    /// priority and turn) goes first.
    pub(crate) fn released(&mut self, id: &EffectId, harness: &str) {
        self.running = self.running.saturating_sub(1);
        let share = self.share_of.remove(id);
        let by_share = share.and_then(|s| self.running_by_share.get_mut(&s));
        for n in [self.running_by_harness.get_mut(harness), by_share].into_iter().flatten() {
            *n = n.saturating_sub(1);
        }
        if let Some(id) = self.blocked.get_mut(harness).and_then(|q| q.pop(&self.running_by_share)) {
            self.front.push_front(id);
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

    fn root() -> Class {
        Class::default()
    }

    fn class(priority: i64, share: &str) -> Class {
        Class { priority, share: share.into() }
    }

    fn drain(s: &mut Scheduler) -> Vec<String> {
        std::iter::from_fn(|| s.pop()).map(|e| e.to_string()).collect()
    }

    #[test]
    fn groups_take_turns_and_higher_priority_goes_first() {
        let mut s = Scheduler::new(10);
        for i in 0..4 {
            s.push_back(id(&format!("a{i}")), &class(0, "wide"));
        }
        s.push_back(id("b0"), &class(0, "small"));
        s.push_back(id("b1"), &class(0, "small"));
        s.push_back(id("r"), &class(0, ""));
        s.push_back(id("urgent"), &class(10, ""));
        assert_eq!(drain(&mut s), ["urgent", "a0", "b0", "r", "a1", "b1", "a2", "a3"]);
    }

    #[test]
    fn the_share_with_the_fewest_running_goes_next() {
        let mut s = Scheduler::new(10);
        for w in ["w0", "w1", "w2"] {
            s.started(&id(w), "shell", &class(0, "wide"));
        }
        s.started(&id("s0"), "shell", &class(0, "small"));
        s.push_back(id("a"), &class(0, "wide"));
        s.push_back(id("b"), &class(0, "small"));
        s.push_back(id("c"), &class(0, "small"));
        assert_eq!(s.pop(), Some(id("b")), "small runs 1, wide runs 3");
        s.started(&id("b"), "shell", &class(0, "small"));
        assert_eq!(s.pop(), Some(id("c")), "small runs 2, still fewer than wide");
        s.started(&id("c"), "shell", &class(0, "small"));
        // Two of wide's attempts end: each end counts against the share its start counted for.
        s.released(&id("w0"), "shell");
        s.released(&id("w1"), "shell");
        s.push_back(id("d"), &class(0, "small"));
        assert_eq!(s.pop(), Some(id("a")), "wide runs 1 now, small runs 3");
    }

    #[test]
    fn the_front_goes_before_any_priority_and_queued_lists_everything() {
        let mut s = Scheduler::new(10);
        s.push_back(id("late"), &class(5, "g"));
        s.push_front(id("again"));
        let queued: Vec<String> = s.queued().map(|e| e.to_string()).collect();
        assert_eq!(queued, ["again", "late"]);
        assert_eq!(drain(&mut s), ["again", "late"]);
    }

    #[test]
    fn a_full_harness_lets_its_waiting_effects_go_by_priority_and_turn() {
        let mut s = Scheduler::new(10);
        s.started(&id("x"), "claude", &root());
        s.admit(id("a0"), &class(0, "wide"), "claude", Some(1));
        s.admit(id("a1"), &class(0, "wide"), "claude", Some(1));
        s.admit(id("b0"), &class(0, "small"), "claude", Some(1));
        s.admit(id("p"), &class(3, "wide"), "claude", Some(1));
        let mut order = Vec::new();
        for _ in 0..4 {
            s.released(&id("x"), "claude");
            s.started(&id("x"), "claude", &root());
            order.extend(s.pop().map(|e| e.to_string()));
        }
        assert_eq!(order, ["p", "a0", "b0", "a1"]);
    }

    #[test]
    fn the_global_limit_keeps_the_effect_at_the_head() {
        let mut s = Scheduler::new(1);
        s.push_back(id("a"), &root());
        s.push_back(id("b"), &root());
        let a = s.pop().expect("a");
        assert_eq!(s.admit(a, &root(), "shell", None), Admission::Start);
        s.started(&id("x"), "shell", &root());
        let b = s.pop().expect("b");
        assert_eq!(s.admit(b, &root(), "shell", None), Admission::RunFull);
        assert_eq!(s.pop(), Some(id("b")), "b waits at the head, not behind later effects");
    }

    #[test]
    fn a_full_harness_blocks_only_its_own_effects() {
        let mut s = Scheduler::new(10);
        s.started(&id("x"), "claude", &root());
        assert_eq!(s.admit(id("a"), &root(), "claude", Some(1)), Admission::HarnessFull { first: true });
        assert_eq!(s.admit(id("b"), &root(), "claude", Some(1)), Admission::HarnessFull { first: false });
        assert_eq!(s.admit(id("c"), &root(), "codex", Some(1)), Admission::Start, "another harness is not held up");
        assert_eq!(s.pop(), None, "blocked effects are not in the queue");
    }

    #[test]
    fn a_freed_slot_lets_the_oldest_blocked_effect_go_first() {
        let mut s = Scheduler::new(10);
        s.started(&id("x"), "claude", &root());
        s.admit(id("a"), &root(), "claude", Some(1));
        s.admit(id("b"), &root(), "claude", Some(1));
        s.push_back(id("z"), &root());
        s.released(&id("x"), "claude");
        assert_eq!(s.running(), 0);
        assert_eq!(s.pop(), Some(id("a")), "the oldest blocked effect goes ahead of the queue");
        assert_eq!(s.pop(), Some(id("z")));
        assert_eq!(s.pop(), None, "b still waits for the next slot");
    }

    #[test]
    fn releasing_another_harness_unblocks_nothing() {
        let mut s = Scheduler::new(10);
        s.started(&id("x"), "claude", &root());
        s.started(&id("y"), "codex", &root());
        s.admit(id("a"), &root(), "claude", Some(1));
        s.released(&id("y"), "codex");
        assert_eq!(s.pop(), None);
        assert_eq!(s.queued().count(), 0);
    }
}
