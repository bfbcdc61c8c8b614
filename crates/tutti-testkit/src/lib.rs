//! Test helpers for driving the real `tutti` binary: a temp project per test, running and spawning
//! `tutti`, reading a run's journal, and polling for journal facts with a deadline instead of sleeping.
//! It knows nothing of tutti's internals; everything it learns comes from the binary's output.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod chromium;
pub mod mock_model;
pub mod postgres;
pub use mock_model::{Api, MockModel, Reply, Rule, Script, Usage, When};

/// How often [`wait_for`] polls.
const POLL: Duration = Duration::from_millis(20);

/// A generous deadline for things that normally take well under a second.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The example processes of the repository (`examples/` at the workspace root).
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// A project root in a fresh temp dir, and the `tutti` binary to run in it.
pub struct Project {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Project {
    /// An empty project. `bin` is the binary under test (`env!("CARGO_BIN_EXE_tutti")`).
    pub fn new(bin: impl AsRef<Path>) -> Self {
        let dir = tempfile::Builder::new().prefix("tutti-test-").tempdir().expect("create a temp dir");
        Self { dir, bin: bin.as_ref().to_path_buf() }
    }

    /// A project holding a copy of the repository's `examples/` (its process files, `tutti.toml` and
    /// `agents/`), without any `.tutti/` journal someone left there.
    pub fn with_examples(bin: impl AsRef<Path>) -> Self {
        let project = Self::new(bin);
        copy_tree(&examples_dir(), project.root());
        project
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }

    /// Write a file under the root (creating parent folders); returns its path.
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent folders");
        }
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// A file under the root, or `None` when it does not exist (yet).
    pub fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.path(name)).ok()
    }

    /// The journal database of this project.
    pub fn db(&self) -> PathBuf {
        self.path(".tutti/tutti.db")
    }

    /// `tutti --home ROOT` started in the root, with an environment free of tutti's own variables.
    pub fn tutti(&self) -> Command {
        let mut command = Command::new(&self.bin);
        command.arg("--home").arg(self.root()).current_dir(self.root());
        command.env_remove("TUTTI_HOME").env_remove("TUTTI_FAULT_KILL_AFTER_COMMITS");
        command.stdin(Stdio::null());
        command
    }

    /// Run `tutti ARGS...` to its end (at most [`DEADLINE`]).
    pub fn run(&self, args: &[&str]) -> Output {
        self.spawn(args).wait(DEADLINE)
    }

    /// Start `tutti ARGS...` in the background, for tests that talk to it, signal it or kill it.
    pub fn spawn(&self, args: &[&str]) -> Spawned {
        let mut command = self.tutti();
        command.args(args);
        self.spawn_command(command)
    }

    /// Start `command` (made with [`Project::tutti`], then given arguments and environment) in the
    /// background.
    pub fn spawn_command(&self, mut command: Command) -> Spawned {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let args: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let what = format!("tutti {}", args.join(" "));
        let mut child = command.spawn().unwrap_or_else(|e| panic!("start {what}: {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().expect("piped stdout"), stdout.clone()),
            collect(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];
        Spawned { what, child: Some(child), stdout, stderr, readers }
    }

    /// A run's journal, via `tutti events RUN --json`: one `{seq, ts_ms, event: {type, ...}}` per event.
    pub fn events(&self, run: &str) -> Vec<Value> {
        self.try_events(run).unwrap_or_else(|out| panic!("tutti events {run} --json failed:\n{out}"))
    }

    /// [`Project::events`], or how `tutti events` failed (e.g. the run is not created yet).
    pub fn try_events(&self, run: &str) -> Result<Vec<Value>, Output> {
        events_in(self.run(&["events", run, "--json"]))
    }

    /// Poll the journal until an event matches `pred`; returns it. Panics at the deadline, showing the journal.
    pub fn wait_for_event(&self, run: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut found = None;
        let mut last = Vec::new();
        // `tutti run` announces its run id a moment before the run exists in the journal.
        let waited = try_wait_for(DEADLINE, || {
            last = self.try_events(run).unwrap_or_default();
            found = last.iter().find(|e| pred(e)).cloned();
            found.is_some()
        });
        if !waited {
            panic!("no {what} in the journal of run {run} within {DEADLINE:?}; journal:\n{}", show(&last));
        }
        found.expect("found when waited")
    }

    /// `tutti status RUN --json`, parsed.
    pub fn status(&self, run: &str) -> Value {
        let out = self.run(&["status", run, "--json"]);
        assert_eq!(out.code, 0, "tutti status {run} --json failed:\n{out}");
        out.json()
    }

    /// `tutti ls --json`: one summary per run.
    pub fn runs(&self) -> Vec<Value> {
        let out = self.run(&["ls", "--json"]);
        assert_eq!(out.code, 0, "tutti ls --json failed:\n{out}");
        out.stdout.lines().map(|l| serde_json::from_str(l).expect("ls --json line is JSON")).collect()
    }
}

/// How a finished `tutti` ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit code; a death by signal `n` is reported as `128 + n`, like a shell does.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout parsed as one JSON value.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }

    /// The run id that `tutti run` announced on stderr.
    pub fn run_id(&self) -> String {
        run_id_from(&self.stderr).unwrap_or_else(|| panic!("no run id on stderr:\n{self}"))
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }
}

/// The events `tutti events RUN --json` printed, or its output when it failed. `tutti run` announces its run
/// a moment before the run exists in the journal, so a poll right after the announcement may fail.
pub fn events_in(out: Output) -> Result<Vec<Value>, Output> {
    if out.code != 0 {
        return Err(out);
    }
    Ok(out
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("event line {line:?} is not JSON: {e}")))
        .collect())
}

/// The run id in `tutti: run <ULID> of <path> ...`, the first line `tutti run` prints on stderr.
pub fn run_id_from(stderr: &str) -> Option<String> {
    stderr.lines().find_map(|line| {
        let rest = line.strip_prefix("tutti: run ")?;
        let (id, tail) = rest.split_once(' ')?;
        let is_ulid = id.len() == 26 && id.chars().all(|c| c.is_ascii_alphanumeric());
        (is_ulid && tail.starts_with("of ")).then(|| id.to_string())
    })
}

/// A `tutti` running in the background. Dropping it stops it (SIGTERM, then SIGKILL), so a failing test
/// leaves no driver behind.
pub struct Spawned {
    what: String,
    child: Option<Child>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Spawned {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("not yet waited").id()
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("stdout buffer").clone()
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr buffer").clone()
    }

    /// The run id it announced, waiting for the announcement.
    pub fn run_id(&self) -> String {
        let mut id = None;
        let waited = try_wait_for(DEADLINE, || {
            id = run_id_from(&self.stderr());
            id.is_some()
        });
        assert!(waited, "{} announced no run id within {DEADLINE:?}; stderr:\n{}", self.what, self.stderr());
        id.expect("found when waited")
    }

    /// Send a signal (`libc::SIGINT`, ...) to the `tutti` process itself, not to its effects.
    pub fn signal(&self, signal: i32) {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: kill(2) has no memory-safety preconditions; the child is not reaped yet, so the pid is ours.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}): {}", std::io::Error::last_os_error());
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().expect("not yet waited").try_wait().expect("try_wait").is_none()
    }

    /// Wait for it to exit (panicking, after killing it, if it takes longer than `deadline`).
    pub fn wait(mut self, deadline: Duration) -> Output {
        let mut child = self.child.take().expect("not yet waited");
        let mut status = None;
        let exited = try_wait_for(deadline, || {
            status = child.try_wait().expect("try_wait");
            status.is_some()
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not exit within {deadline:?}; stderr so far:\n{}", self.what, self.stderr());
        }
        for reader in self.readers.drain(..) {
            reader.join().expect("output reader");
        }
        let take = |buf: &Arc<Mutex<String>>| std::mem::take(&mut *buf.lock().expect("output buffer"));
        Output { code: exit_code(status.expect("exited")), stdout: take(&self.stdout), stderr: take(&self.stderr) }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SIGTERM lets tutti stop the process trees of its effects; SIGKILL if it does not go.
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        if !try_wait_for(Duration::from_secs(5), || child.try_wait().ok().flatten().is_some()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn collect(mut pipe: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into.lock().expect("output buffer").push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    })
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Poll `ready` every 20 ms until it returns true; panic with `what` if `deadline` passes first.
pub fn wait_for(deadline: Duration, what: &str, ready: impl FnMut() -> bool) {
    assert!(try_wait_for(deadline, ready), "timed out after {deadline:?} waiting for {what}");
}

/// Poll `ready` every 20 ms until it returns true (then `true`) or `deadline` passes (then `false`).
pub fn try_wait_for(deadline: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// An event's type (`effect_started`, ...).
pub fn kind(event: &Value) -> &str {
    event["event"]["type"].as_str().unwrap_or("")
}

/// The events of one type, in journal order.
pub fn of_kind<'a>(events: &'a [Value], wanted: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| kind(e) == wanted).collect()
}

/// A journal as text, one event per line, for failure messages.
pub fn show(events: &[Value]) -> String {
    events.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
}

/// Whether process `pid` is gone: absent from `/proc`, or a zombie (nothing reaps orphans on some machines,
/// so a killed process may linger as one; it no longer runs).
pub fn process_is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name, which is in parentheses and may itself hold spaces.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("Z"),
    }
}

/// Processes a test started (through tutti) and must not outlive it: dropping this SIGKILLs those not gone
/// yet, so that a test that finds a leak does not leave the leak behind.
pub struct Reaper(pub Vec<u32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if !process_is_gone(pid) {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

/// Copy a folder's files recursively, leaving out `.tutti/` (a journal is the test's own business).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a folder");
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let entry = entry.expect("a folder entry");
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_name() == ".tutti" {
            continue;
        }
        if entry.file_type().expect("a file type").is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_is_read_from_the_announcement() {
        let stderr = "noise\ntutti: run 01M89ZS9HNCE1HGXWNPS8NNQVJ of /tmp/x.js (resume with ...)\n";
        assert_eq!(run_id_from(stderr).as_deref(), Some("01M89ZS9HNCE1HGXWNPS8NNQVJ"));
        assert_eq!(run_id_from("tutti: run 01M89ZS9HNCE1HGXWNPS8NNQVJ completed"), None);
        assert_eq!(run_id_from("tutti: error: nope"), None);
    }

    #[test]
    fn a_live_process_is_not_gone_and_a_missing_one_is() {
        assert!(!process_is_gone(std::process::id()));
        assert!(process_is_gone(u32::MAX - 1));
    }
}
