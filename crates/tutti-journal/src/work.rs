//! The work queue of distributed mode: attempts a run's driver offers to remote executors (`tutti worker`),
//! claimed by one worker at a time under a lease kept alive by heartbeats and fenced by a token, so that a
//! worker that dies loses its claim and a late result from a superseded claim is refused. Also the registry
//! of workers (`tutti workers`) and which worker holds each harness session (affinity). Only a backend
//! that many machines share implements it (PostgreSQL); the types here are what crosses it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{EffectId, RunId};
use crate::store::Result;

/// An attempt offered to workers. `job` is the attempt as a worker needs it to run (the harness crate's
/// wire form); the queue only stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    pub run: RunId,
    pub effect: EffectId,
    pub attempt: u32,
    pub harness: String,
    pub job: Value,
    /// The harness session the attempt resumes: it is offered first to the worker that holds it.
    pub session: Option<String>,
}

/// An attempt a worker claimed: it runs it and completes it with `token`.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    pub id: i64,
    pub token: i64,
    pub run: RunId,
    pub effect: EffectId,
    pub attempt: u32,
    pub harness: String,
    pub job: Value,
    /// The worker that held the claim before, whose lease expired: this claim is a re-dispatch.
    pub previous: Option<String>,
    /// The worker holding the attempt's session, when it is not this one (it is gone): start afresh.
    pub session_holder: Option<String>,
}

/// Where an offered attempt stands.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkState {
    Queued,
    /// Claimed by `worker` (the `claims`th claim; more than one means it was re-dispatched).
    Claimed {
        worker: String,
        claims: u32,
        previous: Option<String>,
    },
    /// A worker completed it with the current token; `outcome` is the worker's report.
    Done {
        worker: String,
        claims: u32,
        previous: Option<String>,
        outcome: Value,
    },
    /// The driver withdrew it (cancelled).
    Withdrawn,
}

/// A worker as it registered itself and last reported.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct WorkerInfo {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub harnesses: Vec<String>,
    pub capacity: u32,
    pub running: u32,
    pub heartbeat_ms: i64,
    pub draining: bool,
}

/// The queue between drivers and workers. Every method takes `&mut self`: a queue is one connection, used
/// by one thread.
pub trait WorkQueue: Send {
    /// Offer an attempt; returns its id in the queue. Workers listening are told.
    fn offer(&mut self, offer: &Offer) -> Result<i64>;

    /// Where each of `ids` stands, in the order given (an unknown id is left out).
    fn work_states(&mut self, ids: &[i64]) -> Result<Vec<(i64, WorkState)>>;

    /// Withdraw an attempt (cancelled): nobody claims it any more, and the worker running it stops it at its
    /// next heartbeat.
    fn withdraw(&mut self, id: i64) -> Result<()>;

    /// Claim the oldest attempt for one of `harnesses` that is queued, or claimed under a lease that expired
    /// before `now_ms`, skipping rows other workers are claiming (`FOR UPDATE SKIP LOCKED`). An attempt that
    /// resumes a session held by a live worker is left to that worker.
    fn claim(&mut self, worker: &str, harnesses: &[String], now_ms: i64, ttl_ms: i64) -> Result<Option<Claim>>;

    /// Record `worker` alive (its registry row) and extend the leases of its `claims` (id, token) to
    /// `now_ms + ttl_ms`; returns, for each claim, whether it is still this worker's to run (not taken over,
    /// not withdrawn).
    fn heartbeat(&mut self, worker: &WorkerInfo, claims: &[(i64, i64)], now_ms: i64, ttl_ms: i64) -> Result<Vec<bool>>;

    /// Complete a claim with the worker's report; accepted only while `token` is the claim's current one.
    /// Returns whether it was accepted. A session the attempt ran in is recorded as held by `worker`.
    fn complete(&mut self, id: i64, token: i64, worker: &str, outcome: &Value, session: Option<&str>) -> Result<bool>;

    /// Every registered worker, by id.
    fn workers(&mut self) -> Result<Vec<WorkerInfo>>;

    /// Remove a worker from the registry (it stopped cleanly).
    fn unregister(&mut self, worker: &str) -> Result<()>;

    /// Block until work may have changed (offered, claimed or completed), or `timeout` passes.
    fn wait_for_work(&mut self, timeout: std::time::Duration) -> Result<bool>;
}
