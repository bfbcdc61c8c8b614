//! Ctrl-C, SIGTERM and SIGHUP (a closed terminal): the first one asks the driver to stop cleanly (kill effect
//! process trees, journal `driver_detached`, exit 128 + the signal's number, resumable); a second Ctrl-C or
//! SIGTERM ends tutti at once. Further SIGHUPs are ignored: a closing terminal and the shell that owned it both
//! send one, and the second must not cut the cleanup short.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// The first signal received, 0 before any.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    let _ = RECEIVED.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    if let Some(flag) = FLAG.get() {
        flag.store(true, Ordering::SeqCst);
    }
    // SAFETY: changing a disposition is async-signal-safe; the next Ctrl-C or SIGTERM gets the default action.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}

/// Install the handlers; the returned flag turns true on the first signal.
pub(crate) fn install() -> Arc<AtomicBool> {
    let flag = FLAG.get_or_init(|| Arc::new(AtomicBool::new(false))).clone();
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches atomics and calls signal(2).
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGHUP, handler);
    }
    flag
}

/// The exit code of a run its driver let go of because of a signal: 128 + the signal's number (130 for
/// Ctrl-C, 129 for a closed terminal, 143 for SIGTERM), as a shell reports a death by that signal.
pub(crate) fn exit_code() -> i32 {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => 128 + libc::SIGINT,
        signal => 128 + signal,
    }
}

/// The outcome of a command a signal may have cut short. An error after a signal (JavaScript interrupted while
/// the process loaded or replayed, before the driver could detach) is reported like any error, with the exit
/// code of the signal: the first Ctrl-C always ends `tutti run` with 130.
pub(crate) fn after_interrupt(outcome: anyhow::Result<i32>) -> anyhow::Result<i32> {
    match outcome {
        Err(e) if RECEIVED.load(Ordering::SeqCst) != 0 => {
            crate::output::report_error(&e);
            Ok(exit_code())
        }
        other => other,
    }
}

/// What made the driver let go, for the journal and the user.
pub(crate) fn reason() -> &'static str {
    match RECEIVED.load(Ordering::SeqCst) {
        libc::SIGHUP => "the terminal was closed (SIGHUP)",
        libc::SIGTERM => "terminated (SIGTERM)",
        _ => "interrupted (Ctrl-C)",
    }
}
