//! Process-tree control: spawning a command in its own process group with capped, lossily decoded output,
//! waiting for it without hanging on grandchildren that keep its pipes open, and stopping the whole tree. It
//! knows nothing of tasks, jobs or outcomes; the harnesses turn an [`Exit`] into those.
//!
//! Lifecycle of one process (steps 2–4 run on one watcher thread for all processes, `process/reactor.rs`):
//! 1. spawn in a new process group (group id = the child's pid), through `std` or, for a plain command,
//!    `process/spawn.rs`; stdin is `/dev/null` or a pipe the watcher feeds; the watcher reads stdout and
//!    stderr, keeping only the last [`OUTPUT_CAP`] bytes of each.
//! 2. the watcher learns that the direct child exited from a pidfd, *without reaping it*, so the group id
//!    cannot be reused by another process while we may still signal it;
//! 3. it gives the pipes [`READER_GRACE`] to reach end of file, then sends `SIGKILL` to the group: whatever
//!    the task left running in the background ends with the task, and pipes held open by it close;
//! 4. it marks the group released (no signal is sent to that id after this), reaps the child, waits a little
//!    more for the pipes, and hands the [`Exit`] to the caller's callback on a pooled worker thread
//!    (`process/workers.rs`), so a slow callback holds up neither the watcher nor other callbacks.
//!
//! Stopping (cancel or timeout) sends `SIGTERM` to the group, so agents can clean up, and `SIGKILL` after
//! [`STOP_GRACE`] if the direct child is still there; once the child exits, step 3 kills the rest at once.

mod reactor;
mod spawn;
mod workers;

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tutti_engine::Running;

/// The most bytes kept per output stream; earlier bytes are dropped and counted.
pub const OUTPUT_CAP: usize = 1 << 20;
/// How long the pipes may take to reach end of file after the direct child exits.
pub const READER_GRACE: Duration = Duration::from_millis(200);
/// How long a stopped process has between `SIGTERM` and `SIGKILL`.
pub const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long the readers may take after the group was killed; a process that escaped the group (`setsid`)
/// could hold the pipes forever, and then we report what was read so far.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// How to run a process.
pub struct Options {
    /// Written to the child's stdin, which is then closed; `None` gives the child `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// Stop the process (as [`Stop::TimedOut`]) when it runs longer than this.
    pub timeout: Option<Duration>,
    /// The most bytes kept per output stream.
    pub output_cap: usize,
    /// Called with each complete line of standard output as it arrives, on the reader's thread (an agent CLI's
    /// event stream, read while the turn runs).
    pub on_line: Option<LineSink>,
    /// The exit callback is quick (no disk or network work, no waiting): run it on the watcher thread, which
    /// saves a thread hand-off per process. Slow callbacks run on a pooled worker.
    pub quick_exit: bool,
    /// The commands' environment is tutti's own plus their overrides (no `env_clear`), and nothing else of
    /// `Command`'s is set but the program, arguments and directory: tutti may start them itself, without
    /// `posix_spawn`'s per-call stack (`process/spawn.rs`), when the program is an absolute path.
    pub plain: bool,
}

/// What [`Options::on_line`] calls.
pub type LineSink = Box<dyn FnMut(&str) + Send>;

impl Default for Options {
    fn default() -> Self {
        Self { stdin: None, timeout: None, output_cap: OUTPUT_CAP, on_line: None, quick_exit: false, plain: false }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("stdin", &self.stdin.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .field("output_cap", &self.output_cap)
            .field("on_line", &self.on_line.is_some())
            .field("quick_exit", &self.quick_exit)
            .field("plain", &self.plain)
            .finish()
    }
}

/// Why tutti stopped a process before it exited by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Cancelled,
    TimedOut,
}

/// How a process ended, with its captured output.
#[derive(Clone, Debug)]
pub struct Exit {
    /// The exit code, when the process exited normally.
    pub code: Option<i32>,
    /// The signal that killed the process, when it was killed.
    pub signal: Option<i32>,
    /// Standard output, decoded lossily; starts with `[truncated N bytes]` when it was capped.
    pub stdout: String,
    pub stderr: String,
    /// Set when tutti stopped the process (the signal is then tutti's).
    pub stopped: Option<Stop>,
}

/// Spawn `command` in its own process group; `on_exit` is called once, from another thread, when it ends.
pub fn spawn<F>(command: Command, options: Options, on_exit: F) -> io::Result<ProcessHandle>
where
    F: FnOnce(io::Result<Exit>) + Send + 'static,
{
    spawn_first(vec![command], options, on_exit)
}

/// Spawn the first of `commands` that starts (a fast path, then its fallback), like [`spawn`]. When none
/// starts, the error is the last one's.
pub fn spawn_first<F>(commands: Vec<Command>, options: Options, on_exit: F) -> io::Result<ProcessHandle>
where
    F: FnOnce(io::Result<Exit>) + Send + 'static,
{
    let mut failure = io::Error::other("nothing to run");
    let mut started = None;
    for mut command in commands {
        let spawned = if options.plain && spawn::suits(&command) {
            spawn::spawn(&command, options.stdin.is_some()).map(Kid::from_own)
        } else {
            let stdin = if options.stdin.is_some() { Stdio::piped() } else { Stdio::null() };
            command.process_group(0).stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
            command.spawn().map(Kid::from_std)
        };
        match spawned {
            Ok(kid) => {
                started = Some(kid);
                break;
            }
            Err(err) => failure = err,
        }
    }
    let child = started.ok_or(failure)?;
    let group = Arc::new(Group::new(child.id()));
    let Options { stdin, timeout, output_cap, on_line, quick_exit, plain: _ } = options;
    let watch = reactor::Watch {
        child,
        group: Arc::clone(&group),
        stdin,
        output_cap,
        on_line,
        timeout,
        quick_exit,
        on_exit: Box::new(on_exit),
    };
    if let Err(err) = reactor::watch(watch) {
        // Nothing can watch the child; do not leave it running unobserved.
        group.release();
        return Err(err);
    }
    Ok(ProcessHandle { group })
}

/// A started child: its pid and the parent's ends of its pipes (taken by the watcher). Reaped with
/// `waitpid` whichever way it was started.
pub(crate) struct Kid {
    pid: libc::pid_t,
    /// Its pidfd, when it came with the child (taken by the watcher, which otherwise opens one).
    pub(crate) pidfd: Option<OwnedFd>,
    pub(crate) stdin: Option<OwnedFd>,
    pub(crate) stdout: Option<OwnedFd>,
    pub(crate) stderr: Option<OwnedFd>,
}

impl Kid {
    fn from_std(mut child: Child) -> Self {
        Self {
            pid: child.id() as libc::pid_t,
            pidfd: None,
            stdin: child.stdin.take().map(OwnedFd::from),
            stdout: child.stdout.take().map(OwnedFd::from),
            stderr: child.stderr.take().map(OwnedFd::from),
        }
    }

    fn from_own(started: spawn::Started) -> Self {
        let spawn::Started { pid, pidfd, stdin, stdout, stderr } = started;
        Self { pid, pidfd, stdin, stdout: Some(stdout), stderr: Some(stderr) }
    }

    pub(crate) fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Reap the child (it has exited, or its group was killed).
    pub(crate) fn wait(&mut self) -> io::Result<ExitStatus> {
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child with a valid pointer.
            if unsafe { libc::waitpid(self.pid, &mut status, 0) } >= 0 {
                return Ok(ExitStatus::from_raw(status));
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// Run `command` to its end and return how it ended (blocking).
pub fn run(command: Command, options: Options) -> io::Result<Exit> {
    let (tx, rx) = mpsc::channel();
    spawn(command, options, move |exit| {
        let _ = tx.send(exit);
    })?;
    rx.recv().map_err(|_| io::Error::other("the process waiter ended without a result"))?
}

/// The name of a signal, as Node.js spells it (`SIGTERM`), or `SIG<n>` for one without a common name.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => return format!("SIG{signal}"),
    };
    name.to_owned()
}

/// A started process tree. Dropping the handle does not stop the process.
#[derive(Debug)]
pub struct ProcessHandle {
    group: Arc<Group>,
}

impl ProcessHandle {
    /// A handle that can stop the process for a reason of the caller's (a watchdog), from any thread.
    pub fn stopper(&self) -> Stopper {
        Stopper { group: Arc::clone(&self.group) }
    }
}

/// Stops one process (group), giving the reason its [`Exit::stopped`] reports.
#[derive(Clone)]
pub struct Stopper {
    group: Arc<Group>,
}

impl Stopper {
    /// `SIGTERM` to the group, `SIGKILL` after a grace; a no-op once it has ended or was stopped.
    pub fn stop(&self, why: Stop) {
        self.group.stop(why);
    }

    /// Whether the process has ended (its group released).
    pub fn ended(&self) -> bool {
        self.group.lock().released
    }
}

impl Running for ProcessHandle {
    /// The process group id (equal to the direct child's pid).
    fn pid(&self) -> Option<u32> {
        u32::try_from(self.group.pgid).ok()
    }

    /// `SIGTERM` to the whole group, `SIGKILL` after [`STOP_GRACE`]. Idempotent; a no-op once the process
    /// has ended.
    fn cancel(&mut self) {
        self.group.stop(Stop::Cancelled);
    }

    fn wait_stopped(&mut self, timeout: Duration) -> bool {
        self.group.wait_released(timeout)
    }

    /// `SIGKILL` to the whole group now, unless it is already gone.
    fn force_stop(&mut self) {
        self.group.stop(Stop::Cancelled);
        self.group.signal(&self.group.lock(), libc::SIGKILL);
    }
}

/// Block until the child has exited, leaving it a zombie so that its pid (and group id) stays reserved.
fn wait_exited(pid: libc::pid_t) -> io::Result<()> {
    let id = libc::id_t::try_from(pid).map_err(io::Error::other)?;
    loop {
        // SAFETY: siginfo_t is plain data that waitid fills in; all-zero is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with a valid pointer to a siginfo_t; WNOWAIT leaves the child waitable.
        let rc = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// A process group and whether it may still be signalled.
#[derive(Debug)]
struct Group {
    pgid: libc::pid_t,
    state: Mutex<GroupState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GroupState {
    /// Set once the group was killed after its leader exited; from then on the id may be reused.
    released: bool,
    stopped: Option<Stop>,
}

impl Group {
    fn new(pid: u32) -> Self {
        // Linux pids fit in pid_t; a failed conversion would make every signal go nowhere (pid 0 is refused
        // by `signal`), never to the wrong process.
        let pgid = libc::pid_t::try_from(pid).unwrap_or(0);
        Self { pgid, state: Mutex::new(GroupState::default()), changed: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Signal the whole group, unless it was released. The caller holds the lock, so release cannot race.
    fn signal(&self, state: &GroupState, signal: i32) {
        if !state.released && self.pgid > 0 {
            // SAFETY: kill(2) with a negative pid signals a process group that is still ours (see above).
            unsafe { libc::kill(-self.pgid, signal) };
        }
    }

    /// `SIGTERM` now, `SIGKILL` after [`STOP_GRACE`] unless the leader has exited by then.
    fn stop(self: &Arc<Self>, why: Stop) {
        if self.begin_stop(why) && reactor::kill_later(Arc::clone(self)).is_err() {
            self.signal(&self.lock(), libc::SIGKILL);
        }
    }

    /// Send `SIGTERM` and remember why; false (and nothing sent) when the group was already stopped or
    /// released. The caller arranges the `SIGKILL` after [`STOP_GRACE`].
    fn begin_stop(&self, why: Stop) -> bool {
        let mut state = self.lock();
        if state.released || state.stopped.is_some() {
            return false;
        }
        state.stopped = Some(why);
        self.signal(&state, libc::SIGTERM);
        true
    }

    fn wait_released(&self, timeout: Duration) -> bool {
        self.wait_for_release(timeout).released
    }

    /// The state once the group was released or `timeout` passed, whichever comes first (still locked).
    fn wait_for_release(&self, timeout: Duration) -> MutexGuard<'_, GroupState> {
        let waited = self.changed.wait_timeout_while(self.lock(), timeout, |s| !s.released);
        waited.unwrap_or_else(PoisonError::into_inner).0
    }

    /// Kill what is left of the group and stop signalling it: the leader is about to be reaped.
    fn release(&self) {
        let mut state = self.lock();
        self.signal(&state, libc::SIGKILL);
        state.released = true;
        self.changed.notify_all();
    }

    fn stopped(&self) -> Option<Stop> {
        self.lock().stopped
    }
}

/// The tail of one output stream.
#[derive(Debug)]
struct Capture {
    kept: Vec<u8>,
    total: u64,
    cap: usize,
}

impl Capture {
    fn new(cap: usize) -> Self {
        Self { kept: Vec::new(), total: 0, cap }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        self.kept.extend_from_slice(chunk);
        // Trim in batches so that a flood costs amortized O(1) per byte.
        if self.kept.len() > self.cap.saturating_mul(2).max(64 * 1024) {
            let excess = self.kept.len() - self.cap;
            self.kept.drain(..excess);
        }
    }

    fn render(&self) -> String {
        let start = self.kept.len().saturating_sub(self.cap);
        let tail = String::from_utf8_lossy(&self.kept[start..]);
        let dropped = self.total - (self.kept.len() - start) as u64;
        if dropped == 0 { tail.into_owned() } else { format!("[truncated {dropped} bytes]\n{tail}") }
    }
}

/// The longest line handed to a line sink; a longer one is cut (it is still captured whole).
const LINE_CAP: usize = 256 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{alive, gone_within, recv_within, sh};
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::thread;
    use std::time::Instant;

    #[test]
    fn captures_stdout_stderr_and_exit_code() {
        let exit = run(sh("echo out; echo err >&2; exit 3"), Options::default()).unwrap();
        assert_eq!((exit.code, exit.signal, exit.stopped), (Some(3), None, None));
        assert_eq!((exit.stdout.as_str(), exit.stderr.as_str()), ("out\n", "err\n"));
    }

    fn plain() -> Options {
        Options { plain: true, ..Options::default() }
    }

    #[test]
    fn a_plain_start_captures_output_and_exit_code_and_feeds_stdin() {
        let options = Options { stdin: Some(b"hello\n".to_vec()), ..plain() };
        let exit = run(sh("cat; echo err >&2; exit 3"), options).unwrap();
        assert_eq!((exit.code, exit.signal, exit.stopped), (Some(3), None, None));
        assert_eq!((exit.stdout.as_str(), exit.stderr.as_str()), ("hello\n", "err\n"));
        assert_eq!(run(sh("cat"), plain()).unwrap().stdout, "", "no stdin given: /dev/null");
    }

    #[test]
    fn a_plain_start_has_tuttis_environment_with_overrides_its_directory_a_group_and_default_signals() {
        let dir = tempfile::tempdir().unwrap();
        let mut command = sh("echo \"$TUTTI_PLAIN_A|${TUTTI_PLAIN_B-unset}|${HOME:+home}\"; pwd; \
                              echo $$ $(ps -o pgid= -p $$)");
        command.env("TUTTI_PLAIN_A", "set").env_remove("TUTTI_PLAIN_B").current_dir(dir.path());
        // SAFETY: a test-only variable no other test reads.
        unsafe { std::env::set_var("TUTTI_PLAIN_B", "inherited") };
        let exit = run(command, plain()).unwrap();
        let lines: Vec<&str> = exit.stdout.lines().collect();
        assert_eq!(lines[0], "set|unset|home", "{}", exit.stdout);
        assert_eq!(std::path::Path::new(lines[1]).canonicalize().unwrap(), dir.path().canonicalize().unwrap());
        let ids: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(ids[0], ids[1], "the child leads a process group of its own");
        // The program's own view of its signals, as exec'd (a shell blocks them while it waits for a child).
        let grep = || {
            let mut grep = Command::new("/bin/grep");
            grep.args(["-E", "^Sig(Blk|Ign)", "/proc/self/status"]);
            grep
        };
        let own = run(grep(), plain()).unwrap().stdout;
        assert!(own.starts_with("SigBlk:\t0000000000000000\n"), "no signal blocked: {own}");
        let ignored = u64::from_str_radix(own.trim_end().rsplit('\t').next().unwrap(), 16).unwrap();
        assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "SIGPIPE is not ignored: {own}");
        assert_eq!(own, run(grep(), Options::default()).unwrap().stdout, "the same signals as std gives");
        // On Linux 5.5 or later, where clone3 is not filtered (it refuses an empty call with EINVAL, not
        // ENOSYS), the starts above had their handlers cleared by the kernel.
        // SAFETY: a clone3 with no arguments creates nothing; it only tells whether the call exists.
        let probe = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
        let callable = probe < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL);
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let version: Vec<u32> = release.split(['.', '-']).take(2).filter_map(|n| n.trim().parse().ok()).collect();
        if callable && version >= vec![5, 5] {
            assert!(spawn::clears_handlers_in_the_kernel(), "clone3 with CLONE_CLEAR_SIGHAND was not used");
            // The same clone made the child's pidfd (CLONE_PIDFD), so the watcher need not open one.
            let mut started = spawn::spawn(&Command::new("/bin/true"), false).unwrap();
            let pidfd = started.pidfd.take().expect("clone3 made no pidfd");
            let mut kid = Kid::from_own(started);
            assert!(kid.wait().unwrap().success());
            drop(pidfd);
        }
    }

    #[test]
    fn a_plain_start_sees_tuttis_environment_as_it_is_at_that_start() {
        // The environment's C strings are kept between starts; a change in between must reach the next child.
        let show = || {
            let mut command = sh("echo \"${TUTTI_PLAIN_C-unset}|${TUTTI_PLAIN_D-unset}\"");
            command.env("TUTTI_PLAIN_D", "override");
            run(command, plain()).unwrap().stdout
        };
        assert_eq!(show(), "unset|override\n");
        // SAFETY: test-only variables no other test reads.
        unsafe { std::env::set_var("TUTTI_PLAIN_C", "one") };
        assert_eq!(show(), "one|override\n");
        unsafe { std::env::set_var("TUTTI_PLAIN_C", "two") };
        unsafe { std::env::set_var("TUTTI_PLAIN_D", "inherited") };
        assert_eq!(show(), "two|override\n", "an override still wins over tutti's own value");
        unsafe { std::env::remove_var("TUTTI_PLAIN_C") };
        assert_eq!(show(), "unset|override\n");
        // Unchanged since: the kept strings are used as they are, and still hold the overrides' absence.
        let mut plain_echo = sh("echo \"${TUTTI_PLAIN_D-unset}\"");
        plain_echo.env_remove("TUTTI_PLAIN_E");
        assert_eq!(run(plain_echo, plain()).unwrap().stdout, "inherited\n");
    }

    #[test]
    fn a_plain_start_of_a_missing_program_fails_and_the_next_command_runs() {
        let err = run(Command::new("/nonexistent/tutti-no-such-program"), plain()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        let (tx, rx) = mpsc::channel();
        let commands = vec![Command::new("/nonexistent/tutti-no-such-program"), sh("echo second")];
        spawn_first(commands, plain(), move |e| tx.send(e).unwrap()).unwrap();
        assert_eq!(recv_within(&rx, Duration::from_secs(30)).unwrap().stdout, "second\n");
    }

    #[test]
    fn stdin_is_empty_unless_given_and_then_written_and_closed() {
        let exit = run(sh("cat"), Options::default()).unwrap();
        assert_eq!(exit.stdout, "");
        let options = Options { stdin: Some(b"hello\n".to_vec()), ..Options::default() };
        let exit = run(sh("cat; echo done"), options).unwrap();
        assert_eq!(exit.stdout, "hello\ndone\n");
    }

    #[test]
    fn input_larger_than_a_pipe_buffer_is_fed_whole() {
        let input = vec![b'x'; 3 << 20];
        let exit = run(sh("wc -c"), Options { stdin: Some(input), ..Options::default() }).unwrap();
        assert_eq!(exit.stdout.trim(), (3 << 20).to_string());
    }

    #[test]
    fn lines_reach_the_line_sink_as_they_arrive_and_the_last_one_without_a_newline() {
        let (tx, rx) = mpsc::channel();
        let on_line: LineSink = Box::new(move |line| tx.send(line.to_owned()).unwrap());
        let options = Options { on_line: Some(on_line), ..Options::default() };
        let exit = run(sh("echo one; echo two; printf three"), options).unwrap();
        assert_eq!(exit.stdout, "one\ntwo\nthree");
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), ["one", "two", "three"]);
    }

    #[test]
    fn starting_process_after_process_creates_no_thread() {
        // The first run starts the watcher and one exit worker; later runs reuse both. The thread list is
        // read while each process runs, when per-process threads would show.
        run(sh("echo warm"), Options::default()).unwrap();
        let before = threads();
        for i in 0..20 {
            let (tx, rx) = mpsc::channel();
            let script = format!("sleep 0.02; echo {i}; echo {i} >&2");
            let options = Options { stdin: Some(b"input".to_vec()), ..Options::default() };
            spawn(sh(&script), options, move |e| tx.send(e).unwrap()).unwrap();
            assert_eq!(threads(), before, "thread ids changed while process {i} ran");
            let exit = recv_within(&rx, Duration::from_secs(30)).unwrap();
            assert_eq!(exit.stdout, format!("{i}\n"));
        }
        assert_eq!(threads(), before, "thread ids changed while running 20 processes one after another");
    }

    #[test]
    fn a_quick_exit_callback_may_start_the_next_process() {
        fn next(left: u32, tx: mpsc::Sender<u32>) {
            let options = Options { quick_exit: true, ..Options::default() };
            spawn(sh(&format!("echo {left}")), options, move |exit| {
                let left: u32 = exit.unwrap().stdout.trim().parse().unwrap();
                if left == 0 { tx.send(left).unwrap() } else { next(left - 1, tx) }
            })
            .unwrap();
        }
        let (tx, rx) = mpsc::channel();
        next(5, tx);
        assert_eq!(recv_within(&rx, Duration::from_secs(30)), 0);
    }

    #[test]
    fn many_processes_at_once_each_get_their_own_exit() {
        let (tx, rx) = mpsc::channel();
        for i in 0..200 {
            let tx = tx.clone();
            spawn(sh(&format!("sleep 0.2; echo {i}")), Options::default(), move |e| tx.send((i, e)).unwrap()).unwrap();
        }
        let mut seen: Vec<usize> = (0..200)
            .map(|_| {
                let (i, exit) = recv_within(&rx, Duration::from_secs(60));
                let exit = exit.unwrap();
                assert_eq!(exit.stdout, format!("{i}\n"));
                i
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn a_flood_of_output_is_capped_to_its_tail() {
        let exit = run(sh("yes | head -c 50000000"), Options::default()).unwrap();
        assert_eq!(exit.code, Some(0));
        let marker = format!("[truncated {} bytes]\n", 50_000_000 - OUTPUT_CAP);
        assert!(exit.stdout.starts_with(&marker), "{:?}", &exit.stdout[..60]);
        assert_eq!(exit.stdout.len(), marker.len() + OUTPUT_CAP);
        assert!(exit.stdout.ends_with("y\ny\n"));
    }

    #[test]
    fn non_utf8_output_decodes_lossily() {
        let exit = run(sh(r"printf '\377\376ok'; printf '\377' >&2"), Options::default()).unwrap();
        assert_eq!(exit.stdout, "\u{FFFD}\u{FFFD}ok");
        assert_eq!(exit.stderr, "\u{FFFD}");
    }

    #[test]
    fn a_background_child_holding_the_pipes_does_not_hang_the_result_and_is_killed() {
        let started = Instant::now();
        let (tx, rx) = mpsc::channel();
        spawn(sh("sleep 100 & echo $!"), Options::default(), move |e| tx.send(e).unwrap()).unwrap();
        let exit = recv_within(&rx, Duration::from_secs(30)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
        assert_eq!(exit.code, Some(0));
        let sleeper: i32 = exit.stdout.trim().parse().unwrap();
        assert!(gone_within(sleeper, Duration::from_secs(5)), "background sleep {sleeper} survived");
    }

    #[test]
    fn cancel_kills_the_whole_tree_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pids");
        let path = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let script = format!(
            "sleep 100 >/dev/null 2>&1 & a=$!; sleep 100 >/dev/null 2>&1 & b=$!; echo \"$a $b\" > '{}'; wait",
            fifo.display()
        );
        let (tx, rx) = mpsc::channel();
        let mut handle = spawn(sh(&script), Options::default(), move |e| tx.send(e).unwrap()).unwrap();
        let pids = read_pids(fifo);
        assert!(pids.iter().all(|&p| alive(p)), "sleeps {pids:?} should run before cancel");

        handle.cancel();
        handle.cancel();
        let exit = recv_within(&rx, Duration::from_secs(30)).unwrap();
        assert_eq!((exit.stopped, exit.signal), (Some(Stop::Cancelled), Some(libc::SIGTERM)));
        for pid in pids {
            assert!(gone_within(pid, Duration::from_secs(5)), "sleep {pid} survived cancel");
        }
        handle.cancel();
        assert_eq!(handle.pid(), u32::try_from(handle.group.pgid).ok());
    }

    #[test]
    fn a_stop_escalates_to_sigkill_when_sigterm_is_ignored() {
        // Ignoring TERM is inherited by the `sleep`s too, so only SIGKILL ends this tree.
        let options = Options { timeout: Some(Duration::from_millis(100)), ..Options::default() };
        let exit = run(sh("trap '' TERM; while :; do sleep 1; done"), options).unwrap();
        assert_eq!((exit.stopped, exit.signal), (Some(Stop::TimedOut), Some(libc::SIGKILL)));
    }

    #[test]
    fn a_timeout_stops_the_process() {
        let options = Options { timeout: Some(Duration::from_millis(100)), ..Options::default() };
        let exit = run(sh("sleep 100"), options).unwrap();
        assert_eq!((exit.stopped, exit.signal, exit.code), (Some(Stop::TimedOut), Some(libc::SIGTERM), None));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = run(Command::new("/nonexistent/tutti-no-such-program"), Options::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn signals_have_node_style_names() {
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(libc::SIGKILL), "SIGKILL");
        assert_eq!(signal_name(63), "SIG63");
    }

    /// The ids of this test process's threads.
    fn threads() -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort();
        ids
    }

    /// Read "PID PID" from the fifo, on a thread so that a script that never writes fails the test.
    fn read_pids(fifo: std::path::PathBuf) -> Vec<i32> {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || tx.send(std::fs::read_to_string(fifo)).unwrap());
        let text = recv_within(&rx, Duration::from_secs(30)).unwrap();
        text.split_whitespace().map(|p| p.parse().unwrap()).collect()
    }
}
