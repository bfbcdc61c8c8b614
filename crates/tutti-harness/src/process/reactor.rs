//! The one thread that watches every process tutti started: it reads their output pipes, feeds their stdin,
//! learns of their exit through a pidfd, keeps their deadlines (timeout, reader grace, `SIGKILL` after a
//! stop) and hands each finished [`Exit`] to a worker. All of it on one `epoll` loop, so starting a process
//! creates no thread.
//!
//! The watched processes live in one table behind a mutex. The thread that spawns a process enters it in the
//! table and registers its fds itself, so a spawn costs the loop no wake-up; an `eventfd` wakes the loop only
//! when a new deadline may come before the one it sleeps towards (a process with a timeout, a stop).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::{Capture, DRAIN_GRACE, Exit, Group, Kid, LINE_CAP, LineSink, READER_GRACE, STOP_GRACE, Stop, workers};

/// What the exit callback of one process is.
pub(super) type OnExit = Box<dyn FnOnce(io::Result<Exit>) + Send>;

/// A freshly spawned child for the loop to watch. Its pipes are taken out of `child` and made non-blocking.
pub(super) struct Watch {
    pub(super) child: Kid,
    pub(super) group: Arc<Group>,
    pub(super) stdin: Option<Vec<u8>>,
    pub(super) output_cap: usize,
    pub(super) on_line: Option<LineSink>,
    pub(super) timeout: Option<Duration>,
    pub(super) quick_exit: bool,
    pub(super) on_exit: OnExit,
}

/// The loop's shared half: the epoll instance, the table of watched processes and the `eventfd` that wakes it.
struct Shared {
    epoll: OwnedFd,
    wake: OwnedFd,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    procs: HashMap<u64, Proc>,
    next: u64,
    /// Every deadline a process was given, soonest first. An entry whose process has another deadline by now
    /// (or is gone) is dropped when it comes up: the loop never scans the whole table, which with a thousand
    /// children was most of its work.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Groups to `SIGKILL` at a time, unless they were released by then.
    kills: Vec<(Instant, Arc<Group>)>,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wake the loop, so that it recomputes its next deadline.
    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to an eventfd we own. It fails only when the counter would
        // overflow, and then the loop is awake anyway.
        unsafe { libc::write(self.wake.as_raw_fd(), (&raw const one).cast(), 8) };
    }
}

fn shared() -> io::Result<&'static Shared> {
    static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
    SHARED.get_or_init(start).as_ref().map_err(|e| io::Error::other(e.clone()))
}

/// Create the epoll instance and the wake-up eventfd and start the loop's thread.
fn start() -> Result<Shared, String> {
    let fail = |what: &str| format!("{what}: {}", io::Error::last_os_error());
    // SAFETY: plain syscalls; each returned fd is checked and then owned.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epoll < 0 {
        return Err(fail("cannot create the process watcher's epoll instance"));
    }
    // SAFETY: as above.
    let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
    // SAFETY: as above.
    let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if wake < 0 {
        return Err(fail("cannot create the process watcher's eventfd"));
    }
    // SAFETY: as above.
    let wake = unsafe { OwnedFd::from_raw_fd(wake) };
    register(&epoll, wake.as_raw_fd(), WAKE, libc::EPOLLIN as u32).map_err(|e| e.to_string())?;
    thread::Builder::new().name("tutti-processes".to_owned()).spawn(run).map_err(|e| e.to_string())?;
    Ok(Shared { epoll, wake, table: Mutex::new(Table::default()) })
}

/// Start watching a freshly spawned child: enter it in the table, register its pipes and its pidfd, write
/// what of its input fits.
pub(super) fn watch(watch: Watch) -> io::Result<()> {
    let shared = shared()?;
    let mut table = shared.table();
    let id = table.next;
    table.next += 1;
    let proc = Proc::start(&shared.epoll, id, watch);
    let wake = proc.timeout_at.is_some();
    table.procs.insert(id, proc);
    table.schedule(id);
    drop(table);
    if wake {
        shared.wake();
    }
    Ok(())
}

/// Have the loop `SIGKILL` `group` after [`STOP_GRACE`] unless it was released by then.
pub(super) fn kill_later(group: Arc<Group>) -> io::Result<()> {
    let shared = shared()?;
    shared.table().kills.push((Instant::now() + STOP_GRACE, group));
    shared.wake();
    Ok(())
}

/// The token of the wake-up eventfd; process tokens are `id << 2 | slot`.
const WAKE: u64 = u64::MAX;
const SLOT_PID: u64 = 0;
const SLOT_OUT: u64 = 1;
const SLOT_ERR: u64 = 2;
const SLOT_IN: u64 = 3;

/// The most bytes read from one pipe per wake-up, so that one flooding process cannot starve the others.
const READ_BUDGET: usize = 256 * 1024;

/// Where a watched process is in its life (the module docs of `process` give the steps).
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Running,
    /// The child exited; its readers have until the deadline to reach end of file.
    Exited(Instant),
    /// The group was killed and the child reaped; the readers have until the deadline to drain.
    Reaped(Instant),
}

struct Proc {
    child: Kid,
    group: Arc<Group>,
    pidfd: Option<OwnedFd>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    stdin: Option<Feed>,
    captured: [Capture; 2],
    phase: Phase,
    timeout_at: Option<Instant>,
    status: Option<io::Result<ExitStatus>>,
    quick_exit: bool,
    on_exit: Option<OnExit>,
}

/// An output pipe being read, and the line it is in the middle of.
struct Stream {
    fd: OwnedFd,
    on_line: Option<LineSink>,
    line: Vec<u8>,
}

/// Input still to be written to a child's stdin.
struct Feed {
    fd: OwnedFd,
    data: Vec<u8>,
    written: usize,
}

/// The loop's body: wait for events and deadlines, then move every process they touched along.
fn run() {
    // `start` runs this thread while it initialises `shared()`, which blocks here until it has finished.
    let Ok(shared) = shared() else { return };
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let deadline = shared.table().next_deadline();
        let timeout = deadline.map_or(-1, |at| {
            let left = at.saturating_duration_since(Instant::now());
            // Round up, so that a deadline 0.3 ms away does not spin.
            i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
        });
        let capacity = i32::try_from(events.len()).unwrap_or(i32::MAX);
        // SAFETY: `events` is a valid buffer of `capacity` epoll_event values.
        let n = unsafe { libc::epoll_wait(shared.epoll.as_raw_fd(), events.as_mut_ptr(), capacity, timeout) };
        let n = usize::try_from(n).unwrap_or(0);
        let mut table = shared.table();
        let mut touched = Vec::with_capacity(n);
        for event in &events[..n] {
            let (token, flags) = (event.u64, event.events);
            if token == WAKE {
                let mut count = [0u8; 8];
                // SAFETY: reading 8 bytes into a valid buffer from our non-blocking eventfd (resets it).
                unsafe { libc::read(shared.wake.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
            } else {
                table.on_event(token >> 2, token & 3, flags, &mut buf);
                touched.push(token >> 2);
            }
        }
        table.on_timers(&mut touched);
        touched.sort_unstable();
        touched.dedup();
        let finished: Vec<Proc> = touched.into_iter().filter_map(|id| table.advance(id)).collect();
        drop(table);
        // Exit callbacks run with the table unlocked: a quick one may well start the next process.
        for proc in finished {
            proc.finish();
        }
    }
}

impl Table {
    fn on_event(&mut self, id: u64, slot: u64, flags: u32, buf: &mut [u8]) {
        let Some(proc) = self.procs.get_mut(&id) else { return };
        match slot {
            SLOT_PID => {
                proc.exited();
                self.schedule(id);
            }
            SLOT_IN => {
                if !proc.feed() || flags & (libc::EPOLLERR as u32) != 0 {
                    proc.stdin = None;
                }
            }
            _ => {
                let index = usize::from(slot == SLOT_ERR);
                let stream = if index == 0 { &mut proc.stdout } else { &mut proc.stderr };
                // At end of file (or a broken pipe) the stream is done; dropping the fd deregisters it.
                if stream.as_mut().is_some_and(|s| s.read(buf, &mut proc.captured[index])) {
                    *stream = None;
                }
            }
        }
    }

    fn on_timers(&mut self, touched: &mut Vec<u64>) {
        let now = Instant::now();
        self.kills.retain(|(at, group)| {
            if *at > now {
                return true;
            }
            group.signal(&group.lock(), libc::SIGKILL);
            false
        });
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(proc) = self.procs.get_mut(&id).filter(|p| p.deadline() == Some(at)) else { continue };
            if proc.phase == Phase::Running {
                proc.timeout_at = None;
                if proc.group.begin_stop(Stop::TimedOut) {
                    self.kills.push((now + STOP_GRACE, Arc::clone(&proc.group)));
                }
            }
            touched.push(id);
        }
    }

    /// Enter `id`'s current deadline, if it has one, among the timers.
    fn schedule(&mut self, id: u64) {
        if let Some(at) = self.procs.get(&id).and_then(Proc::deadline) {
            self.timers.push(Reverse((at, id)));
        }
    }

    /// Move `id` along its life as far as it can go now: release and reap an exited child whose readers are
    /// done or out of time, and take out a reaped one whose readers drained or ran out of time.
    fn advance(&mut self, id: u64) -> Option<Proc> {
        let now = Instant::now();
        let proc = self.procs.get_mut(&id)?;
        let drained = proc.stdout.is_none() && proc.stderr.is_none();
        if let Phase::Exited(at) = proc.phase
            && (drained || at <= now)
        {
            proc.group.release();
            proc.status = Some(proc.child.wait());
            proc.phase = Phase::Reaped(now + DRAIN_GRACE);
        }
        match proc.phase {
            Phase::Reaped(at) if drained || at <= now => self.procs.remove(&id),
            Phase::Reaped(_) => {
                self.schedule(id);
                None
            }
            _ => None,
        }
    }

    /// The soonest deadline of any process or pending kill (stale timers are dropped on the way).
    fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if self.procs.get(&id).and_then(Proc::deadline) == Some(at) {
                break;
            }
            self.timers.pop();
        }
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        timer.into_iter().chain(self.kills.iter().map(|(at, _)| *at)).min()
    }
}

impl Proc {
    /// A process's entry, with its fds registered under `id`.
    fn start(epoll: &OwnedFd, id: u64, watch: Watch) -> Self {
        let Watch { mut child, group, stdin, output_cap, on_line, timeout, quick_exit, on_exit } = watch;
        let stdout = child.stdout.take().map(|fd| Stream { fd, on_line, line: Vec::new() });
        let stderr = child.stderr.take().map(|fd| Stream { fd, on_line: None, line: Vec::new() });
        let feed = child.stdin.take().zip(stdin).map(|(fd, data)| Feed { fd, data, written: 0 });
        let mut proc = Self {
            pidfd: None,
            stdout: None,
            stderr: None,
            stdin: None,
            captured: [Capture::new(output_cap), Capture::new(output_cap)],
            phase: Phase::Running,
            timeout_at: timeout.map(|t| Instant::now() + t),
            status: None,
            quick_exit,
            on_exit: Some(on_exit),
            child,
            group,
        };
        let token = |slot| id << 2 | slot;
        let readable = (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        for (slot, stream) in [(SLOT_OUT, stdout), (SLOT_ERR, stderr)] {
            let Some(stream) = stream else { continue };
            // A pipe that cannot be watched is dropped: the child sees EPIPE and its output is lost, but
            // the loop and every other process go on.
            let fd = stream.fd.as_raw_fd();
            if nonblocking(fd).and_then(|()| register(epoll, fd, token(slot), readable)).is_ok() {
                *proc.stream(slot) = Some(stream);
            }
        }
        if let Some(feed) = feed
            && nonblocking(feed.fd.as_raw_fd()).is_ok()
        {
            proc.stdin = Some(feed);
            if proc.feed() && register(epoll, proc.stdin_fd(), token(SLOT_IN), libc::EPOLLOUT as u32).is_err() {
                proc.stdin = None;
            }
        }
        let pidfd = proc.child.pidfd.take().map_or_else(|| pidfd_open(proc.child.id()), Ok);
        match pidfd {
            Ok(fd) if register(epoll, fd.as_raw_fd(), token(SLOT_PID), libc::EPOLLIN as u32).is_ok() => {
                proc.pidfd = Some(fd);
            }
            _ if wait_on_a_thread(id, proc.group.pgid) => {}
            // Nothing can watch this child: kill its group and reap it now, rather than leave it unwatched.
            _ => proc.exited(),
        }
        proc
    }

    /// When the loop must next look at this process, if it need ever do so without an event.
    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running => self.timeout_at,
            Phase::Exited(at) | Phase::Reaped(at) => Some(at),
        }
    }

    /// The child exited: give its readers [`READER_GRACE`].
    fn exited(&mut self) {
        if self.phase == Phase::Running {
            self.phase = Phase::Exited(Instant::now() + READER_GRACE);
            self.pidfd = None;
        }
    }

    fn stream(&mut self, slot: u64) -> &mut Option<Stream> {
        if slot == SLOT_OUT { &mut self.stdout } else { &mut self.stderr }
    }

    fn stdin_fd(&self) -> RawFd {
        self.stdin.as_ref().map_or(-1, |f| f.fd.as_raw_fd())
    }

    /// Write what fits of the remaining input; whether some is left to write (false once it is all written,
    /// or the child closed its end, which is its business).
    fn feed(&mut self) -> bool {
        let Some(feed) = self.stdin.as_mut() else { return false };
        while feed.written < feed.data.len() {
            let rest = &feed.data[feed.written..];
            // SAFETY: writing from a valid slice to our pipe fd.
            let n = unsafe { libc::write(feed.fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
            match usize::try_from(n) {
                Ok(n) => feed.written += n,
                Err(_) => match io::Error::last_os_error().kind() {
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::WouldBlock => return true,
                    _ => break,
                },
            }
        }
        // All written (or the pipe broke): closing our end gives the child end of file.
        self.stdin = None;
        false
    }

    /// Hand the [`Exit`] to its callback: right here when it is quick, else on a worker.
    fn finish(self) {
        let Self { status, captured: [out, err], group, on_exit, quick_exit, .. } = self;
        let exit = status.unwrap_or_else(|| Err(io::Error::other("the process was never reaped"))).map(|status| Exit {
            code: status.code(),
            signal: status.signal(),
            stdout: out.render(),
            stderr: err.render(),
            stopped: group.stopped(),
        });
        match on_exit {
            Some(on_exit) if quick_exit => {
                let _ = catch_unwind(AssertUnwindSafe(move || on_exit(exit)));
            }
            Some(on_exit) => workers::run(Box::new(move || on_exit(exit))),
            None => {}
        }
    }
}

impl Stream {
    /// Read what is there (up to [`READ_BUDGET`]); true at end of file or on an error.
    fn read(&mut self, buf: &mut [u8], captured: &mut Capture) -> bool {
        let mut read = 0;
        while read < READ_BUDGET {
            // SAFETY: reading into a valid buffer from our non-blocking pipe fd.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            match usize::try_from(n) {
                Ok(0) => {
                    self.flush();
                    return true;
                }
                Ok(n) => {
                    read += n;
                    captured.push(&buf[..n]);
                    self.lines(&buf[..n]);
                }
                Err(_) => match io::Error::last_os_error().kind() {
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::WouldBlock => return false,
                    _ => {
                        self.flush();
                        return true;
                    }
                },
            }
        }
        false
    }

    /// Hand each completed line to the line sink, cutting lines at [`LINE_CAP`].
    fn lines(&mut self, chunk: &[u8]) {
        let Some(sink) = self.on_line.as_mut() else { return };
        for piece in chunk.split_inclusive(|b| *b == b'\n') {
            if self.line.len() < LINE_CAP {
                self.line.extend_from_slice(&piece[..piece.len().min(LINE_CAP - self.line.len())]);
            }
            if piece.ends_with(b"\n") {
                let line = String::from_utf8_lossy(&self.line);
                // A panicking sink loses its line, not the loop that serves every process.
                let _ = catch_unwind(AssertUnwindSafe(|| sink(line.trim_end())));
                self.line.clear();
            }
        }
    }

    /// The last line, when the stream ended without a newline.
    fn flush(&mut self) {
        if let Some(sink) = self.on_line.as_mut().filter(|_| !self.line.is_empty()) {
            let line = String::from_utf8_lossy(&self.line);
            let _ = catch_unwind(AssertUnwindSafe(|| sink(&line)));
            self.line.clear();
        }
    }
}

fn register(epoll: &OwnedFd, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: token };
    // SAFETY: epoll_ctl with fds we own and a valid event.
    if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &raw mut event) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Make one of a child's pipe ends non-blocking. The pipe is fresh (tutti's own, or `std`'s), so none of its
/// file status flags is set: they are set, not read and amended.
fn nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A pidfd for `pid`: readable once the process exits, without reaping it.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: the pidfd_open syscall with a pid and no flags; the fd it returns is checked, then owned.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::pid_t::try_from(pid).unwrap_or(0), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: a fresh fd from the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Where pidfds are missing (Linux before 5.3): wait for the child on a thread of its own, which marks it
/// exited and wakes the loop. False when no thread could start.
fn wait_on_a_thread(id: u64, pid: libc::pid_t) -> bool {
    let wait = move || {
        let _ = super::wait_exited(pid);
        if let Ok(shared) = shared() {
            let mut table = shared.table();
            if let Some(proc) = table.procs.get_mut(&id) {
                proc.exited();
                table.schedule(id);
            }
            drop(table);
            shared.wake();
        }
    };
    thread::Builder::new().name("tutti-wait".to_owned()).spawn(wait).is_ok()
}
