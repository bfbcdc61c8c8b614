//! The `shell` harness: runs a `shell` task's command with `/bin/sh -c` in the project directory and resolves
//! to babysitter's `{ success, exitCode, stdout, stderr }`, where a non-zero exit is a value, not an error.
//! Also the task-description helpers the `node` harness shares. Process control itself is `process.rs`.

use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tutti_engine::harness::Error;
use tutti_engine::{Harness, Job, Outcome, Reporter, Running};
use tutti_journal::ErrorInfo;

use crate::process::{self, Exit, Options, ProcessHandle, Stop};

/// Runs tasks of kind `shell`.
///
/// The command is the first of `task.shell.command`, `task.command` and `job.args.command` that is set (it
/// must be a string).
/// `task.shell` may also set `expectedExitCode` (default 0), `timeout` (milliseconds), `cwd` (relative to
/// the project directory) and `env` (an object added to tutti's own environment).
#[derive(Clone, Debug, Default)]
pub struct ShellHarness;

impl ShellHarness {
    pub fn new() -> Self {
        Self
    }

    /// Start `job`; `done` receives its outcome, from another thread.
    pub fn launch(&self, job: &Job, done: impl FnOnce(Outcome) + Send + 'static) -> Result<ProcessHandle, Error> {
        let spec = ShellSpec::from_job(job)?;
        let what = format!("shell command `{}`", shorten(&spec.command));
        let on_exit = {
            let (what, expected, timeout) = (what.clone(), spec.expected, spec.timeout);
            move |exit| done(exit_outcome(&what, exit, expected, timeout))
        };
        // A simple command runs without the shell, as make does: the same program, arguments and exit, one
        // exec fewer. Should that fail to start (not found, not a binary), the shell runs it and says why.
        let env = job_env(job);
        let mut commands: Vec<Command> = simple_command(&spec.command)
            .and_then(|argv| {
                let path = spec.env.iter().chain(&env).rev().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone());
                let program = find_program(argv[0], path.or_else(|| std::env::var("PATH").ok()).as_deref())?;
                Some(spec.command_of(job, &program.to_string_lossy(), &argv[1..]))
            })
            .into_iter()
            .collect();
        commands.push(spec.command_of(job, "/bin/sh", &["-c", &spec.command]));
        // Building the outcome is quick: it runs on the process watcher's thread.
        // Its commands are plain (program, arguments, directory, environment overrides): tutti starts them.
        let options = Options { timeout: spec.timeout, quick_exit: true, plain: true, ..Options::default() };
        process::spawn_first(commands, options, on_exit).map_err(|source| Error::Spawn { what, source })
    }
}

impl Harness for ShellHarness {
    fn name(&self) -> &str {
        "shell"
    }

    fn start(&self, job: Job, reporter: Reporter) -> Result<Box<dyn Running>, Error> {
        let handle = self.launch(&job, move |outcome| reporter.finish(outcome))?;
        Ok(Box::new(handle))
    }
}

/// The words of `command` when it is a simple command: one program and its arguments, with nothing the shell
/// would interpret (quotes, variables, globs, redirections, operators, `~`, comments, assignments) and a
/// program that is neither a shell builtin nor a keyword, nor a relative path (which the shell resolves from
/// the task's directory). GNU make takes the same shortcut.
fn simple_command(command: &str) -> Option<Vec<&str>> {
    const BUILTINS: &[&str] = &[
        ".", ":", "[", "alias", "bg", "break", "case", "cd", "chdir", "command", "continue", "do", "done", "echo",
        "elif", "else", "esac", "eval", "exec", "exit", "export", "false", "fc", "fg", "fi", "for", "function",
        "getopts", "hash", "if", "in", "jobs", "kill", "local", "printf", "pwd", "read", "readonly", "return", "set",
        "shift", "test", "then", "time", "times", "trap", "true", "type", "ulimit", "umask", "unalias", "unset",
        "until", "wait", "while",
    ];
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./,:+@=% \t".contains(c);
    if !command.chars().all(plain) {
        return None;
    }
    let words: Vec<&str> = command.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
    let program = *words.first()?;
    let relative = program.contains('/') && !program.starts_with('/');
    (!relative && !program.contains('=') && !BUILTINS.contains(&program)).then_some(words)
}

/// Where `program` lives, searched along `path` as the shell would; `None` when it is not there or `path`
/// has a relative entry (which the shell resolves from the task's directory). An absolute path lets the
/// process start without a `fork` of tutti (the standard library searches a changed `PATH` only that way).
fn find_program(program: &str, path: Option<&str>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable =
        |p: &std::path::Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.starts_with('/') {
        return Some(PathBuf::from(program));
    }
    for dir in path?.split(':') {
        if !dir.starts_with('/') {
            return None;
        }
        let candidate = std::path::Path::new(dir).join(program);
        if runnable(&candidate) {
            return Some(candidate);
        }
    }
    None
}

/// A `shell` task's description, validated.
#[derive(Debug)]
struct ShellSpec {
    command: String,
    expected: i64,
    timeout: Option<Duration>,
    cwd: PathBuf,
    env: Vec<(String, String)>,
}

impl ShellSpec {
    /// `program args` in the task's directory, with its environment (the engine's variables last).
    fn command_of(&self, job: &Job, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command.args(args).current_dir(job.workdir.join(&self.cwd));
        command.envs(self.env.iter().cloned()).envs(job_env(job));
        command
    }

    fn from_job(job: &Job) -> Result<Self, Error> {
        let block = job.task.get("shell").unwrap_or(&Value::Null);
        let command = [block.get("command"), job.task.get("command"), job.args.get("command")]
            .into_iter()
            .flatten()
            .find(|v| !v.is_null())
            .ok_or_else(|| invalid(job, "has no `shell.command`"))?;
        let command = command.as_str().ok_or_else(|| invalid(job, "`shell.command` must be a string"))?;
        let expected = match block.get("expectedExitCode") {
            None | Some(Value::Null) => 0,
            Some(v) => v.as_i64().ok_or_else(|| invalid(job, "`shell.expectedExitCode` must be an integer"))?,
        };
        let cwd = match block.get("cwd") {
            None | Some(Value::Null) => PathBuf::new(),
            Some(v) => v.as_str().map(PathBuf::from).ok_or_else(|| invalid(job, "`shell.cwd` must be a string"))?,
        };
        Ok(Self {
            command: command.to_owned(),
            expected,
            timeout: millis(job, block.get("timeout"), "shell.timeout")?,
            cwd,
            env: env_pairs(job, block.get("env"), "shell.env")?,
        })
    }
}

/// The variables every subprocess gets: the attempt it serves, and what the engine adds so that its agent
/// can reach the orchestrator (`TUTTI_HOME`, `TUTTI_MSG_TOKEN`, `PATH`).
pub(crate) fn job_env(job: &Job) -> Vec<(String, String)> {
    let mut env = vec![
        ("TUTTI_RUN_ID".to_string(), job.run_id.clone()),
        ("TUTTI_EFFECT_ID".to_string(), job.effect.to_string()),
        ("TUTTI_TASK_ID".to_string(), job.task_id.clone()),
        ("TUTTI_ATTEMPT".to_string(), job.attempt.to_string()),
    ];
    env.extend(job.env.iter().cloned());
    env
}

/// An `env` object of a task description as pairs; numbers and booleans are written as text.
pub(crate) fn env_pairs(job: &Job, env: Option<&Value>, field: &str) -> Result<Vec<(String, String)>, Error> {
    let map = match env {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(invalid(job, &format!("`{field}` must be an object"))),
    };
    map.iter()
        .map(|(key, value)| match value {
            Value::String(s) => Ok((key.clone(), s.clone())),
            Value::Number(_) | Value::Bool(_) => Ok((key.clone(), value.to_string())),
            _ => Err(invalid(job, &format!("`{field}.{key}` must be a string"))),
        })
        .collect()
}

/// A duration in milliseconds from a task description.
pub(crate) fn millis(job: &Job, value: Option<&Value>, field: &str) -> Result<Option<Duration>, Error> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(ms) => Ok(Some(Duration::from_millis(ms))),
            None => Err(invalid(job, &format!("`{field}` must be a whole number of milliseconds"))),
        },
    }
}

pub(crate) fn invalid(job: &Job, problem: &str) -> Error {
    Error::Invalid(format!("{} task `{}` (effect {}): {problem}", job.kind, job.task_id, job.effect))
}

/// The outcome of a shell-like task (`shell`, `node`): babysitter's result value, or an error when tutti
/// could not wait for the process or stopped it for running too long.
pub(crate) fn exit_outcome(what: &str, exit: io::Result<Exit>, expected: i64, timeout: Option<Duration>) -> Outcome {
    let exit = exit.map_err(|err| ErrorInfo::new("HarnessError", format!("waiting for {what} failed: {err}")))?;
    if exit.stopped == Some(Stop::TimedOut) {
        return Err(timeout_error(what, timeout, &exit).into());
    }
    Ok(exit_value(&exit, expected))
}

fn exit_value(exit: &Exit, expected: i64) -> Value {
    let mut value = json!({
        "success": exit.code.is_some_and(|code| i64::from(code) == expected),
        "exitCode": exit.code,
        "stdout": exit.stdout,
        "stderr": exit.stderr,
    });
    if let Some(signal) = exit.signal {
        value["signal"] = Value::String(process::signal_name(signal));
    }
    value
}

pub(crate) fn timeout_error(what: &str, timeout: Option<Duration>, exit: &Exit) -> ErrorInfo {
    let after = timeout.map_or_else(String::new, |t| format!(" after {} ms", t.as_millis()));
    ErrorInfo::new("TimeoutError", format!("{what} timed out{after}"))
        .with_data(json!({ "stdout": tail(&exit.stdout), "stderr": tail(&exit.stderr) }))
}

/// The end of a captured stream, short enough for an error message's data.
pub(crate) fn tail(text: &str) -> &str {
    const TAIL: usize = 4096;
    let mut start = text.len().saturating_sub(TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A command line short enough to name in a message.
pub(crate) fn shorten(command: &str) -> String {
    const MAX: usize = 120;
    match command.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &command[..at]),
        None => command.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{job, recv_within};
    use std::sync::mpsc;

    fn run_shell(task: Value, args: Value) -> Outcome {
        let dir = tempfile::tempdir().unwrap();
        run_in(&job("shell", task, args, dir.path()))
    }

    fn run_in(job: &Job) -> Outcome {
        let (tx, rx) = mpsc::channel();
        ShellHarness::new().launch(job, move |outcome| tx.send(outcome).unwrap()).unwrap();
        recv_within(&rx, Duration::from_secs(30))
    }

    #[test]
    fn success_reports_output_and_exit_code() {
        let value =
            run_shell(json!({"kind": "shell", "shell": {"command": "echo hi; echo oops >&2"}}), json!({})).unwrap();
        assert_eq!(value, json!({"success": true, "exitCode": 0, "stdout": "hi\n", "stderr": "oops\n"}));
    }

    #[test]
    fn a_non_zero_exit_is_a_value_with_success_false() {
        let value = run_shell(json!({"shell": {"command": "exit 4"}}), json!({})).unwrap();
        assert_eq!((value["success"].clone(), value["exitCode"].clone()), (json!(false), json!(4)));
    }

    #[test]
    fn expected_exit_code_defines_success() {
        let value = run_shell(json!({"shell": {"command": "exit 4", "expectedExitCode": 4}}), json!({})).unwrap();
        assert_eq!(value["success"], json!(true));
        let value = run_shell(json!({"shell": {"command": "true", "expectedExitCode": 4}}), json!({})).unwrap();
        assert_eq!(value["success"], json!(false));
    }

    #[test]
    fn death_by_signal_has_null_exit_code_and_names_the_signal() {
        let value = run_shell(json!({"shell": {"command": "kill -KILL $$"}}), json!({})).unwrap();
        assert_eq!(value["exitCode"], Value::Null);
        assert_eq!((value["success"].clone(), value["signal"].clone()), (json!(false), json!("SIGKILL")));
    }

    #[test]
    fn the_command_may_sit_at_the_top_level_or_in_args() {
        let top = run_shell(json!({"command": "echo top"}), json!({"command": "echo args"})).unwrap();
        assert_eq!(top["stdout"], json!("top\n"));
        let args = run_shell(json!({"kind": "shell"}), json!({"command": "echo args"})).unwrap();
        assert_eq!(args["stdout"], json!("args\n"));
    }

    #[test]
    fn runs_in_cwd_relative_to_workdir_with_env() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let task = json!({"shell": {"command": "pwd; echo $GREETING $TUTTI_RUN_ID $TUTTI_EFFECT_ID $TUTTI_TASK_ID",
            "cwd": "sub", "env": {"GREETING": "hello"}}});
        let value = run_in(&job("shell", task, json!({}), dir.path())).unwrap();
        let sub = dir.path().join("sub").canonicalize().unwrap();
        assert_eq!(value["stdout"], json!(format!("{}\nhello run-1 effect-1 task-1\n", sub.display())));
    }

    #[test]
    fn only_simple_commands_skip_the_shell() {
        assert_eq!(simple_command("sleep 1"), Some(vec!["sleep", "1"]));
        assert_eq!(simple_command("  git  log --format=%H -n 2 "), Some(vec!["git", "log", "--format=%H", "-n", "2"]));
        assert_eq!(simple_command("/usr/bin/env A=1"), Some(vec!["/usr/bin/env", "A=1"]));
        for shell in [
            "echo hi",
            "cd sub",
            "exit 4",
            "true",
            "kill -KILL 1",
            "sleep 1; echo",
            "sleep $N",
            "ls *.rs",
            "cat <in",
            "a && b",
            "a | b",
            "ls ~",
            "grep 'x y' f",
            "A=1 env",
            "./build.sh",
            "sub/tool x",
            "echo \\n",
            "sleep 1 # c",
            "",
            "   ",
            "ls é",
        ] {
            assert_eq!(simple_command(shell), None, "{shell:?} needs the shell");
        }
        assert_eq!(find_program("sh", Some("/nonexistent:/bin")), Some(PathBuf::from("/bin/sh")));
        assert_eq!(find_program("sh", Some("bin:/bin")), None, "a relative entry is the shell's to resolve");
        assert_eq!(find_program("tutti-no-such-program", Some("/bin:/usr/bin")), None);
        assert_eq!(find_program("/any/absolute", None), Some(PathBuf::from("/any/absolute")));
    }

    #[test]
    fn a_simple_command_runs_directly_with_its_directory_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/file"), "x").unwrap();
        let task = json!({"shell": {"command": "env", "cwd": "sub", "env": {"GREETING": "hello"}}});
        let value = run_in(&job("shell", task, json!({}), dir.path())).unwrap();
        let stdout = value["stdout"].as_str().unwrap();
        assert!(stdout.lines().any(|l| l == "GREETING=hello"), "{stdout}");
        assert!(stdout.lines().any(|l| l == "TUTTI_EFFECT_ID=effect-1"), "{stdout}");
        let listed = run_in(&job("shell", json!({"shell": {"command": "ls", "cwd": "sub"}}), json!({}), dir.path()));
        assert_eq!(listed.unwrap()["stdout"], json!("file\n"));
    }

    #[test]
    fn a_simple_command_that_cannot_start_gets_the_shells_answer() {
        let value = run_shell(json!({"shell": {"command": "tutti-no-such-program --flag"}}), json!({})).unwrap();
        assert_eq!(value["exitCode"], json!(127));
        let stderr = value["stderr"].as_str().unwrap();
        assert!(stderr.contains("tutti-no-such-program") && stderr.contains("not found"), "{stderr}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("script"), "echo from a script without a shebang\n").unwrap();
        let path = dir.path().join("script");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let command = path.display().to_string();
        let value = run_in(&job("shell", json!({"shell": {"command": command}}), json!({}), dir.path())).unwrap();
        assert_eq!(value["stdout"], json!("from a script without a shebang\n"));
    }

    #[test]
    fn a_timeout_is_an_error() {
        let error = run_shell(json!({"shell": {"command": "echo started; sleep 100", "timeout": 100}}), json!({}))
            .unwrap_err()
            .into_error();
        assert_eq!(error.name, "TimeoutError");
        assert_eq!(error.message, "shell command `echo started; sleep 100` timed out after 100 ms");
        assert_eq!(error.data.unwrap()["stdout"], json!("started\n"));
    }

    #[test]
    fn a_missing_command_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let job = job("shell", json!({"shell": {}}), json!({}), dir.path());
        let err = ShellHarness::new().launch(&job, |_| {}).unwrap_err();
        assert_eq!(err.to_string(), "shell task `task-1` (effect effect-1): has no `shell.command`");
    }

    #[test]
    fn a_failed_spawn_names_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let job = job("shell", json!({"shell": {"command": "echo hi", "cwd": "missing"}}), json!({}), dir.path());
        let err = ShellHarness::new().launch(&job, |_| {}).unwrap_err();
        assert!(matches!(err, Error::Spawn { .. }));
        assert_eq!(err.to_string(), "cannot start shell command `echo hi`");
    }

    #[test]
    fn shorten_keeps_short_commands_and_cuts_long_ones_on_char_boundaries() {
        assert_eq!(shorten("ls"), "ls");
        assert_eq!(shorten(&"é".repeat(200)).chars().count(), 121);
        assert_eq!(tail(&"é".repeat(5000)).chars().count(), 2048);
    }
}
