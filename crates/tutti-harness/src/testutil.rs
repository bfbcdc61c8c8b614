//! Helpers shared by this crate's unit tests: building jobs and commands, and watching processes end by
//! event (a pidfd) rather than by sleeping. Not part of the library.

use std::path::Path;
use std::process::Command;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use serde_json::Value;
use tutti_engine::Job;

pub(crate) fn sh(script: &str) -> Command {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(script);
    command
}

pub(crate) fn job(kind: &str, task: Value, args: Value, workdir: &Path) -> Job {
    Job {
        run_id: "run-1".into(),
        effect: "effect-1".into(),
        attempt: 1,
        task_id: "task-1".into(),
        kind: kind.into(),
        title: Some("a title".into()),
        task,
        args,
        workdir: workdir.to_path_buf(),
        project: workdir.to_path_buf(),
        timeout: None,
        env: Vec::new(),
        messages: Vec::new(),
        session: None,
    }
}

/// The next message, or a test failure after `timeout` (so a hang fails instead of blocking forever).
pub(crate) fn recv_within<T>(rx: &Receiver<T>, timeout: Duration) -> T {
    rx.recv_timeout(timeout).unwrap_or_else(|err| panic!("no result within {timeout:?}: {err}"))
}

/// True when `pid` has terminated (or never existed) by the end of `timeout`. A terminated process counts
/// even if it is still a zombie: in containers whose pid 1 does not reap orphans, `kill(pid, 0)` keeps
/// succeeding for a dead process, so this waits on a pidfd, which becomes readable when the process ends.
pub(crate) fn gone_within(pid: i32, timeout: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    }
    let fd = i32::try_from(fd).expect("fd fits in i32");
    let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: poll on one valid pollfd; close the fd we own.
    let ready = unsafe { libc::poll(&mut poll, 1, millis) };
    unsafe { libc::close(fd) };
    ready == 1
}

pub(crate) fn alive(pid: i32) -> bool {
    !gone_within(pid, Duration::ZERO)
}

/// The harness of CLI `C`, named after its program, whose program is an empty executable in `dir`: enough to
/// build its command lines.
pub(crate) fn fake_cli<C: crate::cli::Cli>(dir: &Path, config: crate::AgentConfig) -> crate::AgentHarness<C> {
    use std::os::unix::fs::PermissionsExt;
    let binary = dir.join(C::PROGRAM);
    std::fs::write(&binary, "").expect("write the fake CLI");
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("make it executable");
    crate::AgentHarness::new(C::PROGRAM, crate::AgentConfig { binary: Some(binary), ..config })
}
