//! The threads that run processes' exit callbacks: a pool that keeps idle threads for a while, so that a run
//! that starts one process after another reuses one thread instead of creating one per process, while a slow
//! callback (a git commit in a worktree, a session copy) never holds up another one or the reactor.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::Duration;

/// How long an idle worker waits for more work before it ends.
const IDLE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Workers waiting for a job.
    idle: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool { state: Mutex::new(State::default()), ready: Condvar::new() })
}

/// Run `job` on a worker: an idle one when there is one, else a new one. When no thread can be created the
/// job runs on the caller's thread, late rather than never.
pub(super) fn run(job: Job) {
    let pool = pool();
    let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
    state.jobs.push_back(job);
    if state.jobs.len() <= state.idle {
        pool.ready.notify_one();
        return;
    }
    drop(state);
    if thread::Builder::new().name("tutti-exit".to_owned()).spawn(work).is_err() {
        let job = pool.state.lock().unwrap_or_else(PoisonError::into_inner).jobs.pop_back();
        if let Some(job) = job {
            job();
        }
    }
}

/// A worker's body: run jobs until none came for [`IDLE`].
fn work() {
    let pool = pool();
    let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if let Some(job) = state.jobs.pop_front() {
            drop(state);
            // A panicking callback must not take the worker (and the jobs queued behind it) down with it.
            let _ = catch_unwind(AssertUnwindSafe(job));
            state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        state.idle += 1;
        let (next, waited) = pool.ready.wait_timeout(state, IDLE).unwrap_or_else(PoisonError::into_inner);
        state = next;
        state.idle -= 1;
        if waited.timed_out() && state.jobs.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn jobs_run_and_a_blocked_job_does_not_hold_up_the_next() {
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel();
        let first = tx.clone();
        run(Box::new(move || {
            let _ = gate_rx.recv_timeout(Duration::from_secs(30));
            first.send("first").unwrap();
        }));
        run(Box::new(move || tx.send("second").unwrap()));
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), "second");
        gate_tx.send(()).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), "first");
    }

    #[test]
    fn a_panicking_job_leaves_the_pool_working() {
        run(Box::new(|| panic!("a callback failed")));
        let (tx, rx) = mpsc::channel();
        run(Box::new(move || tx.send(1).unwrap()));
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), 1);
    }
}
