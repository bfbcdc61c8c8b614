//! Starting a child without `posix_spawn`'s per-call stack. glibc's `posix_spawn` maps a stack for the
//! child, clones with `CLONE_VM | CLONE_VFORK`, and unmaps the stack when the child has exec'd; in a process
//! with other threads, that unmap is a TLB shootdown on every core that runs one of them (46 µs median, 89 µs
//! at p90 per spawn on a 2-core VM). This does the same clone on a stack kept per spawning thread, so a spawn
//! maps and unmaps nothing. Used for commands whose whole setup is known here: an absolute program, its
//! arguments, environment overrides on top of tutti's own environment, a directory, a new process group, and
//! three pipes (or `/dev/null` for stdin). Everything else goes through `std::process::Command`.
//!
//! The child runs on the parent's memory until it execs, so between the clone and the exec it only makes
//! system calls on data the parent prepared: no allocation, no lock, no Rust runtime.
//!
//! Where the kernel has it (Linux 5.5), the clone is `clone3` with `CLONE_CLEAR_SIGHAND`: the kernel gives
//! the child default handlers for every signal the parent handles, which otherwise takes the child a
//! query and a reset per signal (about 128 system calls on the step's critical path).

use std::cell::RefCell;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// The child's stack: it only calls into libc's system call wrappers.
const STACK_SIZE: usize = 64 * 1024;

thread_local! {
    /// One stack per spawning thread: `CLONE_VFORK` suspends the thread until its child has exec'd or died,
    /// so a thread never has two children on it at once.
    static STACK: RefCell<Vec<u8>> = RefCell::new(vec![0; STACK_SIZE]);
}

/// A child started here: its pid and the parent's ends of its pipes.
pub(super) struct Started {
    pub(super) pid: libc::pid_t,
    /// The child's pidfd, when the kernel made one with the child (`clone3`'s `CLONE_PIDFD`).
    pub(super) pidfd: Option<OwnedFd>,
    pub(super) stdin: Option<OwnedFd>,
    pub(super) stdout: OwnedFd,
    pub(super) stderr: OwnedFd,
}

/// The signals glibc keeps for itself (thread cancellation, `setxid` across threads); `posix_spawn` leaves
/// them ignored in the child, and so does this.
const GLIBC_INTERNAL: [libc::c_int; 2] = [32, 33];

/// The kernel's `struct sigaction` (x86-64 layout), for the signals glibc's wrapper refuses.
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Everything the child needs, prepared by the parent; the child reads it and writes only `error`.
struct Plan {
    /// The kernel cleared the child's handlers (`CLONE_CLEAR_SIGHAND`): only SIGPIPE and glibc's own
    /// signals are left to set.
    cleared: bool,
    program: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    dir: Option<CString>,
    /// The child's ends: stdin, stdout, stderr.
    fds: [RawFd; 3],
    /// The highest signal number.
    last_signal: libc::c_int,
    /// Set by the child when a step before the exec (or the exec) fails: the errno.
    error: libc::c_int,
}

/// Whether `command` is one this module can start exactly as `std` would: an absolute program, on x86-64.
/// (Its environment must be tutti's own plus overrides; the caller vouches for that.)
pub(super) fn suits(command: &Command) -> bool {
    // The kernel's sigaction layout below is x86-64's.
    cfg!(target_arch = "x86_64") && Path::new(command.get_program()).is_absolute()
}

/// Start `command` in a process group of its own with piped stdout and stderr, and a piped stdin when
/// `piped_stdin` (else `/dev/null`). The command's environment is tutti's own plus its overrides.
pub(super) fn spawn(command: &Command, piped_stdin: bool) -> io::Result<Started> {
    let program = cstring(command.get_program())?;
    let mut args = vec![program.clone()];
    for arg in command.get_args() {
        args.push(cstring(arg)?);
    }
    let (_inherited, _overrides, envp) = environment(command)?;
    let dir = command.get_current_dir().map(|d| cstring(d.as_os_str())).transpose()?;

    let (stdin_pipe, stdin_parent) = if piped_stdin {
        let (read, write) = pipe()?;
        (Some(read), Some(write))
    } else {
        (None, None)
    };
    let stdin_child = match &stdin_pipe {
        Some(read) => read.as_raw_fd(),
        None => dev_null()?,
    };
    let (stdout_parent, stdout_child) = pipe()?;
    let (stderr_parent, stderr_child) = pipe()?;

    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut plan = Plan {
        cleared: false,
        program,
        argv,
        envp,
        dir,
        fds: [stdin_child, stdout_child.as_raw_fd(), stderr_child.as_raw_fd()],
        last_signal: libc::SIGRTMAX(),
        error: 0,
    };
    let (pid, pidfd) = clone_and_exec(&mut plan)?;
    // The child's ends are closed here (they were open in the child until its exec).
    drop((stdin_pipe, stdout_child, stderr_child));
    if plan.error != 0 {
        drop(pidfd);
        reap(pid);
        return Err(io::Error::from_raw_os_error(plan.error));
    }
    Ok(Started { pid, pidfd, stdin: stdin_parent, stdout: stdout_parent, stderr: stderr_parent })
}

/// Whether `clone3` with `CLONE_CLEAR_SIGHAND` works here: not tried yet, yes, or no (an older kernel, or a
/// seccomp filter that refuses `clone3`).
static CLONE3: AtomicU8 = AtomicU8::new(CLONE3_UNTRIED);
const CLONE3_UNTRIED: u8 = 0;
const CLONE3_WORKS: u8 = 1;
const CLONE3_REFUSED: u8 = 2;

/// Whether children start with the kernel clearing their signal handlers (after the first start).
#[cfg(test)]
pub(super) fn clears_handlers_in_the_kernel() -> bool {
    CLONE3.load(Ordering::Relaxed) == CLONE3_WORKS
}

/// Clone a child on this thread's stack with all signals blocked, and wait (`CLONE_VFORK`) until it has
/// exec'd or exited. Returns its pid, and its pidfd when the kernel made one with it.
fn clone_and_exec(plan: &mut Plan) -> io::Result<(libc::pid_t, Option<OwnedFd>)> {
    STACK.with(|stack| {
        let mut stack = stack.try_borrow_mut().map_err(|_| io::Error::other("spawn re-entered on one thread"))?;
        // SAFETY: sigset_t is plain data; sigfillset initialises it.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to sigset_t values owned by this frame.
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        let base = stack.as_mut_ptr();
        let top = base.wrapping_add(stack.len());
        // Stacks grow down, and the ABI wants 16-byte alignment.
        let top = top.wrapping_sub(top as usize % 16);
        let mut result = None;
        if CLONE3.load(Ordering::Relaxed) != CLONE3_REFUSED {
            plan.cleared = true;
            let mut pidfd: libc::c_int = -1;
            // SAFETY: as for libc::clone below; the kernel starts the child at the top of the same stack.
            let pid = unsafe { clone3(base, top as usize - base as usize, plan, &mut pidfd) };
            match pid {
                pid if pid >= 0 => {
                    CLONE3.store(CLONE3_WORKS, Ordering::Relaxed);
                    // SAFETY: with CLONE_PIDFD the kernel stored a fresh fd (close-on-exec) that nobody else owns.
                    let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
                    result = Some(Ok((pid as libc::pid_t, pidfd)));
                }
                // Not this kernel's (ENOSYS), not this flag (EINVAL), or a filter's refusal (EPERM).
                errno if matches!(-errno as i32, libc::ENOSYS | libc::EINVAL | libc::EPERM) => {
                    CLONE3.store(CLONE3_REFUSED, Ordering::Relaxed);
                }
                errno => result = Some(Err(io::Error::from_raw_os_error(-errno as i32))),
            }
        }
        let result = result.unwrap_or_else(|| {
            plan.cleared = false;
            // SAFETY: `child` runs on `stack`, which outlives the child's use of it: CLONE_VFORK suspends
            // this thread until the child has exec'd or exited. The child reads `plan` (alive in this frame
            // for as long) and only makes async-signal-safe system calls. All signals are blocked across the
            // clone, so no handler of the parent's runs in the child before it resets them.
            let pid = unsafe {
                libc::clone(
                    child,
                    top.cast(),
                    libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                    std::ptr::from_mut(plan).cast(),
                )
            };
            if pid < 0 { Err(io::Error::last_os_error()) } else { Ok((pid, None)) }
        });
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        result
    })
}

/// The kernel's `struct clone_args` (Linux 5.5 and later: the first eleven fields).
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;

/// `clone3(CLONE_VM | CLONE_VFORK | CLONE_CLEAR_SIGHAND | CLONE_PIDFD)` running [`child`] on `stack`: the
/// child's pid, or minus the errno; the kernel stores the child's pidfd in `pidfd` (which spares the watcher
/// a `pidfd_open`). There is no libc wrapper for it: the child starts on the new stack at the instruction
/// after the system call, so that instruction must be ours.
///
/// # Safety
///
/// As for `libc::clone` with [`child`]: `stack` (of `size` bytes, its end 16-byte aligned) and `plan` outlive
/// the child's use of them, which CLONE_VFORK guarantees, and all signals are blocked.
unsafe fn clone3(stack: *mut u8, size: usize, plan: &mut Plan, pidfd: &mut libc::c_int) -> i64 {
    let args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD) as u64 | CLONE_CLEAR_SIGHAND,
        pidfd: std::ptr::from_mut(pidfd) as u64,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack as u64,
        stack_size: size as u64,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: 0,
    };
    let entry: extern "C" fn(*mut libc::c_void) -> libc::c_int = child;
    let ret: i64;
    // SAFETY: the parent returns from the system call with the pid (or -errno) and only rax, rcx and r11
    // changed. The child returns from it with rax = 0 on the new stack (the kernel sets rsp to its end), with
    // the parent's other registers: it calls `entry(plan)` from r12 and r13 (kept across the system call),
    // which ends in execve or _exit; should it return, the child exits with its value.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "mov edi, eax",
            "mov eax, {exit}",
            "syscall",
            "ud2",
            "2:",
            exit = const libc::SYS_exit,
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") &raw const args,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") entry,
            in("r13") std::ptr::from_mut(plan),
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// The child, between the clone and the exec. Only system calls on prepared data.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Plan` the parent passed to clone; the parent is suspended until we exec or exit.
    let plan = unsafe { &mut *arg.cast::<Plan>() };
    // SAFETY: each call below is an async-signal-safe system call wrapper given valid pointers into `plan`
    // or locals of this frame.
    unsafe {
        // Signals the parent handles go back to their defaults (an exec would do it, but a signal arriving
        // before the exec must not run the parent's handler here); SIGPIPE, which Rust ignores, too.
        let mut action: libc::sigaction = std::mem::zeroed();
        for signal in 1..=plan.last_signal {
            if signal == libc::SIGKILL || signal == libc::SIGSTOP {
                continue;
            }
            // When the kernel cleared the handlers, only SIGPIPE and glibc's own two are left to set.
            if plan.cleared && signal != libc::SIGPIPE && !GLIBC_INTERNAL.contains(&signal) {
                continue;
            }
            if GLIBC_INTERNAL.contains(&signal) {
                // As glibc's posix_spawn leaves them (its sigaction refuses them: straight to the kernel).
                let ignore = KernelSigaction { handler: libc::SIG_IGN, flags: 0, restorer: 0, mask: 0 };
                libc::syscall(libc::SYS_rt_sigaction, signal, &ignore, std::ptr::null_mut::<KernelSigaction>(), 8);
                continue;
            }
            if libc::sigaction(signal, std::ptr::null(), &mut action) != 0 {
                continue;
            }
            let handled = action.sa_sigaction != libc::SIG_DFL && action.sa_sigaction != libc::SIG_IGN;
            if handled || signal == libc::SIGPIPE {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(signal, &default, std::ptr::null_mut());
            }
        }
        if libc::setpgid(0, 0) != 0 {
            return fail(plan);
        }
        for (target, &fd) in plan.fds.iter().enumerate() {
            let target = target as RawFd;
            if fd == target {
                // Already in place: it only needs to survive the exec.
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return fail(plan);
                }
            } else if libc::dup2(fd, target) < 0 {
                return fail(plan);
            }
        }
        if let Some(dir) = &plan.dir
            && libc::chdir(dir.as_ptr()) != 0
        {
            return fail(plan);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(plan.program.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
        fail(plan)
    }
}

/// Record errno for the parent and end the child.
fn fail(plan: &mut Plan) -> libc::c_int {
    plan.error = io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    // SAFETY: _exit ends the child without running anything of the parent's (no atexit, no flush).
    unsafe { libc::_exit(127) }
}

/// tutti's own environment as `KEY=VALUE` C strings, kept from one start to the next: building them anew took
/// about 55,000 instructions per start. They are built again when the environment changed since (its
/// `environ` array no longer holds the same strings).
struct Inherited {
    /// The `environ` array it was built from: the address of each string.
    from: Vec<usize>,
    entries: Vec<CString>,
    /// The length of each entry's key.
    keys: Vec<usize>,
}

static INHERITED: Mutex<Option<Arc<Inherited>>> = Mutex::new(None);

unsafe extern "C" {
    /// The C library's environment: a null-terminated array of `KEY=VALUE` strings.
    static environ: *const *const libc::c_char;
}

/// The address of each string in the C library's `environ` array, in order.
fn environ_addresses() -> impl Iterator<Item = usize> {
    // SAFETY: `environ` is the C library's null-terminated array; tutti does not change its environment while
    // it runs children (std's `set_var` is `unsafe` for this reason), so the array is stable while it is read.
    let mut at = unsafe { environ };
    std::iter::from_fn(move || {
        // SAFETY: as above; `at` stays within the array, whose end is the null entry.
        unsafe {
            if at.is_null() || (*at).is_null() {
                return None;
            }
            let address = *at as usize;
            at = at.add(1);
            Some(address)
        }
    })
}

impl Inherited {
    /// Whether `environ` holds the strings this was built from. The C library never changes a string it
    /// holds in place: `setenv` puts a new one in the array, `unsetenv` takes one out.
    fn is_current(&self) -> bool {
        environ_addresses().eq(self.from.iter().copied())
    }

    fn build() -> io::Result<Self> {
        let from: Vec<usize> = environ_addresses().collect();
        let mut entries = Vec::with_capacity(from.len());
        let mut keys = Vec::with_capacity(from.len());
        for (key, value) in std::env::vars_os() {
            keys.push(key.len());
            entries.push(entry(&key, &value)?);
        }
        Ok(Self { from, entries, keys })
    }
}

/// tutti's environment as it is now, built at most once per change.
fn inherited() -> io::Result<Arc<Inherited>> {
    let mut kept = INHERITED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(current) = kept.as_ref().filter(|i| i.is_current()) {
        return Ok(Arc::clone(current));
    }
    let built = Arc::new(Inherited::build()?);
    *kept = Some(Arc::clone(&built));
    Ok(built)
}

/// The child's environment: tutti's own with `command`'s overrides applied, in the order `std` gives it
/// (tutti's variables less the overridden ones, then the overrides). Returns the strings the pointers
/// point into, to be kept alive until the child has exec'd, and the null-terminated `envp` array.
fn environment(command: &Command) -> io::Result<(Arc<Inherited>, Vec<CString>, Vec<*const libc::c_char>)> {
    let inherited = inherited()?;
    let overrides: Vec<CString> =
        command.get_envs().filter_map(|(key, value)| value.map(|value| entry(key, value))).collect::<Result<_, _>>()?;
    let keys: Vec<&[u8]> = command.get_envs().map(|(key, _)| key.as_bytes()).collect();
    let overridden = |entry: &CString, key_len: usize| keys.contains(&&entry.as_bytes()[..key_len]);
    let mut envp: Vec<*const libc::c_char> = Vec::with_capacity(inherited.entries.len() + overrides.len() + 1);
    for (entry, &key_len) in inherited.entries.iter().zip(&inherited.keys) {
        if !overridden(entry, key_len) {
            envp.push(entry.as_ptr());
        }
    }
    envp.extend(overrides.iter().map(|e| e.as_ptr()));
    envp.push(std::ptr::null());
    Ok((inherited, overrides, envp))
}

/// `KEY=VALUE` as a C string.
fn entry(key: &OsStr, value: &OsStr) -> io::Result<CString> {
    let mut entry = Vec::with_capacity(key.len() + value.len() + 1);
    entry.extend_from_slice(key.as_bytes());
    entry.push(b'=');
    entry.extend_from_slice(value.as_bytes());
    CString::new(entry).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the environment"))
}

fn cstring(text: &OsStr) -> io::Result<CString> {
    CString::new(text.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("a NUL byte in {}", text.to_string_lossy())))
}

/// A pipe, both ends close-on-exec: (read, write).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills two fds into a valid array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two fresh fds from the kernel, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `/dev/null`, opened once (close-on-exec): the stdin of every plain start that has no input. Each child
/// gets its own descriptor for it with `dup2`; reading `/dev/null` changes nothing another child could see.
fn dev_null() -> io::Result<RawFd> {
    static DEV_NULL: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = DEV_NULL.get() {
        return Ok(fd.as_raw_fd());
    }
    let opened: OwnedFd = std::fs::File::open("/dev/null")?.into();
    Ok(DEV_NULL.get_or_init(|| opened).as_raw_fd())
}

/// Wait for a child that failed before its exec.
fn reap(pid: libc::pid_t) {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}
