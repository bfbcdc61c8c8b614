//! Conformance checks of [`Leases`]: a run's lease is held by one driver at a time, taken over only when it
//! has expired or its holder is gone, and renewed or released only by its holder.

use super::{Check, RUN_A, created, id};
use crate::store::{LeaseHolder, LeaseOutcome, Leases, Store};

/// The checks of this part, by name.
pub const LEASE_CHECKS: &[(&str, Check)] = &[
    check!(lease_acquire_and_busy),
    check!(expired_lease_is_taken_over),
    check!(stale_lease_is_taken_over),
    check!(lease_renew_only_while_held),
    check!(lease_release_only_by_holder),
    check!(a_run_created_holding_its_lease_is_held),
];

fn holder(name: &str, pid: u32) -> LeaseHolder {
    LeaseHolder { id: name.into(), host: "host-1".into(), pid }
}

fn never_stale(_: &LeaseHolder) -> bool {
    false
}

fn acquire(store: &mut dyn Leases, me: &LeaseHolder, now_ms: i64) -> LeaseOutcome {
    store.acquire_lease(&id(RUN_A), me, now_ms, 1_000, &never_stale).expect("acquire_lease")
}

pub fn lease_acquire_and_busy(store: &mut dyn Leases) {
    let (me, other) = (holder("me", 1), holder("other", 2));
    assert_eq!(store.lease(&id(RUN_A), 0).expect("lease"), None, "no lease before anyone acquires");
    assert_eq!(acquire(store, &me, 0), LeaseOutcome::Acquired, "a free run is acquired");
    assert_eq!(store.lease(&id(RUN_A), 10).expect("lease"), Some(me.clone()));
    let busy = LeaseOutcome::Busy { holder: me.clone(), expires_ms: 1_000 };
    assert_eq!(acquire(store, &other, 500), busy, "a live lease of someone else is busy");
    assert_eq!(acquire(store, &me, 500), LeaseOutcome::Acquired, "the holder may acquire again");
    assert_eq!(store.lease(&id(RUN_A), 1_400).expect("lease"), Some(me), "re-acquiring extends the lease");
}

pub fn expired_lease_is_taken_over(store: &mut dyn Leases) {
    let (me, other) = (holder("me", 1), holder("other", 2));
    assert_eq!(acquire(store, &other, 0), LeaseOutcome::Acquired);
    assert_eq!(store.lease(&id(RUN_A), 1_000).expect("lease"), None, "a lease is dead at its expiry time");
    assert_eq!(acquire(store, &me, 1_000), LeaseOutcome::Acquired, "an expired lease is taken over");
    assert_eq!(store.lease(&id(RUN_A), 1_500).expect("lease"), Some(me));
}

pub fn stale_lease_is_taken_over(store: &mut dyn Leases) {
    let (me, other) = (holder("me", 1), holder("other", 2));
    assert_eq!(acquire(store, &other, 0), LeaseOutcome::Acquired);
    let dead = |h: &LeaseHolder| h.pid == 2;
    let outcome = store.acquire_lease(&id(RUN_A), &me, 10, 1_000, &dead).expect("acquire_lease");
    assert_eq!(outcome, LeaseOutcome::Acquired, "a lease whose holder is gone is taken over before expiry");
    assert_eq!(store.lease(&id(RUN_A), 20).expect("lease"), Some(me));
}

pub fn lease_renew_only_while_held(store: &mut dyn Leases) {
    let (me, other) = (holder("me", 1), holder("other", 2));
    assert_eq!(acquire(store, &me, 0), LeaseOutcome::Acquired);
    assert!(store.renew_lease(&id(RUN_A), &me, 900, 1_000).expect("renew_lease"), "the holder renews");
    assert_eq!(store.lease(&id(RUN_A), 1_800).expect("lease"), Some(me.clone()), "renewal extends expiry");
    assert!(!store.renew_lease(&id(RUN_A), &other, 900, 1_000).expect("renew_lease"), "a non-holder cannot");
    assert_eq!(acquire(store, &other, 2_000), LeaseOutcome::Acquired, "the renewed lease expires at 1,900");
    assert!(!store.renew_lease(&id(RUN_A), &me, 2_100, 1_000).expect("renew_lease"), "taken over: no renewal");
    assert_eq!(store.lease(&id(RUN_A), 2_100).expect("lease"), Some(other));
}

pub fn lease_release_only_by_holder(store: &mut dyn Leases) {
    let (me, other) = (holder("me", 1), holder("other", 2));
    assert_eq!(acquire(store, &me, 0), LeaseOutcome::Acquired);
    store.release_lease(&id(RUN_A), &other).expect("release_lease by a non-holder");
    assert_eq!(store.lease(&id(RUN_A), 10).expect("lease"), Some(me.clone()), "others cannot release it");
    store.release_lease(&id(RUN_A), &me).expect("release_lease");
    assert_eq!(store.lease(&id(RUN_A), 10).expect("lease"), None, "released");
    assert_eq!(acquire(store, &other, 10), LeaseOutcome::Acquired, "a released run is free");
}

/// `create_run_holding` creates the run and leaves its lease with the holder, whether the backend takes it in
/// the same transaction (it says so) or leaves that to the caller.
pub fn a_run_created_holding_its_lease_is_held(store: &mut dyn Store) {
    let (me, other) = (holder("me", 1), holder("other", 2));
    let taken = store.create_run_holding(&id(RUN_A), &[created(1, "p.js")], &me, 10, 1_000).expect("create");
    if !taken {
        assert_eq!(acquire(store, &me, 10), LeaseOutcome::Acquired);
    }
    assert_eq!(store.run(&id(RUN_A)).expect("run").map(|r| r.events), Some(1), "the run exists");
    assert_eq!(store.lease(&id(RUN_A), 20).expect("lease"), Some(me), "and its lease is held");
    assert!(matches!(acquire(store, &other, 30), LeaseOutcome::Busy { .. }), "by one holder");
    let again = store.create_run_holding(&id(RUN_A), &[created(2, "p.js")], &other, 40, 1_000);
    assert!(again.is_err(), "a run is created once");
}
