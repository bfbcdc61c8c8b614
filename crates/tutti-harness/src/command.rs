//! The generic `command` harness: runs a user-configured program (`[harness.NAME] command = [...]` in
//! `tutti.toml`) for `agent` tasks, hands it the job as one JSON object on stdin, and takes its result from
//! `$TUTTI_RESULT_FILE` or the last JSON value it printed. Parsing `tutti.toml` itself is the CLI's job.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tutti_engine::harness::Error as StartError;
use tutti_engine::{Failure, Harness, Job, Outcome, Reporter, Running};
use tutti_journal::ErrorInfo;

use crate::process::{self, Exit, Options, ProcessHandle, Stop};
use crate::prompt::{render_messages, render_prompt};
use crate::shell::{job_env, tail, timeout_error};

/// `[harness.NAME]` in `tutti.toml` for a command harness. Unknown fields are allowed: other harness kinds
/// share the table and add their own.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CommandConfig {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Added to tutti's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// What the harness can do (`edit`, `shell`, ...), for routing.
    #[serde(default)]
    pub capabilities: Vec<String>,
    pub max_parallel: Option<usize>,
    /// Stop an attempt that runs longer than this.
    pub timeout_ms: Option<u64>,
    /// About how much memory one run of the program takes, in MB: without `max_parallel`, tutti runs only
    /// as many at once as the machine's available memory fits.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// The retry policy for its tasks that set none, as a task's `retry` (`{ max, backoffMs, ... }`).
    #[serde(default)]
    pub retry: Option<Value>,
}

/// Why a command harness's configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("harness {harness}: `command` must name a program")]
    EmptyCommand { harness: String },
}

/// A harness that runs a configured program for each job.
///
/// The program gets, on stdin, `{ runId, effectId, attempt, taskId, kind, title, prompt, args, outputSchema,
/// task }` (`prompt` rendered by [`render_prompt`], `outputSchema` from `task.agent.outputSchema` or
/// `task.outputSchema`), and in its environment `TUTTI_RUN_ID`, `TUTTI_EFFECT_ID`, `TUTTI_TASK_ID`,
/// `TUTTI_ATTEMPT` and `TUTTI_RESULT_FILE`, a path it may write its JSON result to. Without that file the
/// result is the last JSON value on stdout (see [`last_json`]). A non-zero exit, a death by signal and a
/// missing result are errors.
#[derive(Clone, Debug)]
pub struct CommandHarness {
    name: String,
    config: CommandConfig,
}

impl CommandHarness {
    pub fn new(name: impl Into<String>, config: CommandConfig) -> Result<Self, Error> {
        let name = name.into();
        if config.command.first().is_none_or(|program| program.is_empty()) {
            return Err(Error::EmptyCommand { harness: name });
        }
        Ok(Self { name, config })
    }

    pub fn config(&self) -> &CommandConfig {
        &self.config
    }

    /// Start `job`; `done` receives its outcome, from another thread.
    pub fn launch(&self, job: &Job, done: impl FnOnce(Outcome) + Send + 'static) -> Result<ProcessHandle, StartError> {
        self.launch_with_session(job, move |outcome, _| done(outcome))
    }

    /// Like [`CommandHarness::launch`]; `done` also receives what the program wrote to
    /// `$TUTTI_SESSION_FILE` (its session id) and `$TUTTI_USAGE_FILE` (its usage, as JSON), if it did.
    pub fn launch_with_session(
        &self,
        job: &Job,
        done: impl FnOnce(Outcome, Extras) + Send + 'static,
    ) -> Result<ProcessHandle, StartError> {
        let what = format!("harness {} (`{}`)", self.name, self.config.command.join(" "));
        let dir = attempt_dir().map_err(|source| StartError::Spawn { what: what.clone(), source })?;
        let ending = Ending {
            harness: self.name.clone(),
            result_file: dir.join("result.json"),
            timeout: self.config.timeout_ms.map(Duration::from_millis),
        };
        let mut command = self.command(job, &ending.result_file);
        command.env("TUTTI_SESSION_FILE", dir.join("session")).env("TUTTI_USAGE_FILE", dir.join("usage.json"));
        let options = Options { stdin: Some(stdin_payload(job)), timeout: ending.timeout, ..Options::default() };
        let cleanup = dir.clone();
        let on_exit = move |exit| {
            let outcome = ending.outcome(exit);
            let extras = Extras::read(&cleanup);
            let _ = fs::remove_dir_all(&cleanup);
            done(outcome, extras);
        };
        process::spawn(command, options, on_exit).map_err(|source| {
            let _ = fs::remove_dir_all(&dir);
            StartError::Spawn { what, source }
        })
    }

    fn command(&self, job: &Job, result_file: &Path) -> Command {
        let (program, args) = self.config.command.split_first().map_or(("", &[][..]), |(p, a)| (p.as_str(), a));
        let mut command = Command::new(program);
        command.args(args).current_dir(&job.workdir).envs(&self.config.env).envs(job_env(job));
        command.env("TUTTI_RESULT_FILE", result_file);
        command
    }
}

impl Harness for CommandHarness {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_parallel(&self) -> Option<usize> {
        self.config.max_parallel
    }

    fn retry(&self) -> Option<Value> {
        self.config.retry.clone()
    }

    fn capabilities(&self) -> Vec<String> {
        self.config.capabilities.clone()
    }

    fn memory_per_attempt_mb(&self) -> Option<u64> {
        self.config.memory_mb
    }

    /// Unavailable when its program is a bare name that is not on `PATH`, or an absolute path that does not
    /// exist (a relative path is resolved against the effect's working directory, so it is not checked here).
    fn availability(&self) -> Result<(), String> {
        let program = self.config.command.first().map(String::as_str).unwrap_or("");
        let found = if program.starts_with('/') {
            std::path::Path::new(program).exists()
        } else if program.contains('/') {
            true
        } else {
            std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        };
        if found { Ok(()) } else { Err(format!("`{program}` is not installed (not found on PATH)")) }
    }

    fn start(&self, job: Job, reporter: Reporter) -> Result<Box<dyn Running>, StartError> {
        let handle = self.launch_with_session(&job, move |outcome, extras| {
            if let Some(session) = extras.session {
                reporter.session(session);
            }
            if let Some(usage) = extras.usage {
                reporter.usage(usage);
            }
            reporter.finish(outcome);
        })?;
        Ok(Box::new(handle))
    }
}

/// The exit code with which a program says it is unavailable (sysexits.h).
pub const EX_UNAVAILABLE: i32 = 69;

/// What a program may report besides its result, through files tutti names in its environment.
#[derive(Debug, Default)]
pub struct Extras {
    /// `$TUTTI_SESSION_FILE`: the harness session the turn ran in.
    pub session: Option<String>,
    /// `$TUTTI_USAGE_FILE`: `{ input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd }`.
    pub usage: Option<tutti_journal::Usage>,
}

impl Extras {
    fn read(dir: &Path) -> Self {
        let session =
            fs::read_to_string(dir.join("session")).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let usage = fs::read(dir.join("usage.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        Self { session, usage }
    }
}

/// The JSON object the program reads on stdin.
fn stdin_payload(job: &Job) -> Vec<u8> {
    let output_schema = tutti_engine::output_schema(&job.task).cloned().unwrap_or(Value::Null);
    let payload = json!({
        "runId": job.run_id,
        "effectId": job.effect,
        "attempt": job.attempt,
        "taskId": job.task_id,
        "kind": job.kind.as_str(),
        "title": job.title,
        "prompt": format!("{}{}", render_messages(&job.messages), render_prompt(&job.task)),
        "messages": job.messages.iter().map(|m| json!({ "from": m.from, "body": m.body })).collect::<Vec<_>>(),
        "session": job.session,
        "args": job.args,
        "outputSchema": output_schema,
        "task": job.task,
    });
    let mut bytes = payload.to_string().into_bytes();
    bytes.push(b'\n');
    bytes
}

/// A fresh private directory for one attempt's result file.
fn attempt_dir() -> io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tutti-{}-{n}", std::process::id()));
        match DirBuilder::new().mode(0o700).create(&dir) {
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            other => return other.map(|()| dir),
        }
    }
}

/// Turns how the program ended into the job's outcome.
#[derive(Debug)]
struct Ending {
    harness: String,
    result_file: PathBuf,
    timeout: Option<Duration>,
}

impl Ending {
    fn outcome(&self, exit: io::Result<Exit>) -> Outcome {
        let exit = exit.map_err(|err| {
            ErrorInfo::new("HarnessError", format!("waiting for harness {} failed: {err}", self.harness))
        })?;
        self.check_exit(&exit)?;
        if let Some(value) = self.result_file_value(&exit)? {
            return Ok(value);
        }
        last_json(&exit.stdout).ok_or_else(|| {
            let raw = json!({ "stdout": tail(&exit.stdout), "stderr": tail(&exit.stderr) });
            let message = format!("harness {} printed no JSON result", self.harness);
            Failure::Output { error: ErrorInfo::new("OutputError", message).with_data(raw.clone()), raw }
        })
    }

    /// A timeout, a death by signal and a non-zero exit are errors.
    fn check_exit(&self, exit: &Exit) -> Result<(), Failure> {
        let what = format!("harness {}", self.harness);
        if exit.stopped == Some(Stop::TimedOut) {
            return Err(timeout_error(&what, self.timeout, exit).into());
        }
        let message = match (exit.code, exit.signal) {
            (Some(0), _) => return Ok(()),
            (Some(code), _) => format!("{what} exited with code {code}"),
            (None, Some(signal)) => format!("{what} was killed by {}", process::signal_name(signal)),
            (None, None) => format!("{what} ended without an exit code"),
        };
        let signal = exit.signal.map(process::signal_name);
        let data = json!({ "exitCode": exit.code, "signal": signal, "stderr": tail(&exit.stderr) });
        let error = ErrorInfo::new("HarnessError", message).with_data(data);
        // sysexits' EX_UNAVAILABLE: the program says it cannot serve here (no credentials, no network), so
        // the task may fall back to another harness.
        Err(if exit.code == Some(EX_UNAVAILABLE) { Failure::Unavailable(error) } else { Failure::Task(error) })
    }

    /// The parsed result file, if the program wrote one.
    fn result_file_value(&self, exit: &Exit) -> Result<Option<Value>, Failure> {
        let text = match fs::read_to_string(&self.result_file) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(self.result_file_error(&format!("cannot be read: {err}"), exit)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|err| self.result_file_error(&format!("is not JSON: {err}"), exit))
    }

    fn result_file_error(&self, problem: &str, exit: &Exit) -> Failure {
        let message = format!("harness {}: result file {problem}", self.harness);
        let raw = json!({ "stderr": tail(&exit.stderr) });
        Failure::Output { error: ErrorInfo::new("OutputError", message).with_data(raw.clone()), raw }
    }
}

/// The last complete JSON value in `text`: the whole text if it is JSON; else, when the text ends with `}`
/// or `]`, the object or array that runs to its end (pretty-printed JSON after log lines); else the last
/// line that is a JSON object or array. Values that end the text are tried before single lines, because a
/// line inside a pretty-printed result (`[3, 4]` in a list of pairs) may parse on its own. Bare scalars count
/// only as the whole text, so a trailing "42" in a log line is not mistaken for a result.
pub fn last_json(text: &str) -> Option<Value> {
    let text = text.trim();
    if let Ok(value) = serde_json::from_str(text) {
        return Some(value);
    }
    let to_the_end = if text.ends_with('}') || text.ends_with(']') { last_suffix_json(text) } else { None };
    to_the_end.or_else(|| {
        let is_compound = |line: &&str| line.starts_with('{') || line.starts_with('[');
        text.lines().rev().map(str::trim).filter(is_compound).find_map(|line| serde_json::from_str(line).ok())
    })
}

/// The value starting at the last `{` or `[` from which the rest of `text` parses as exactly one value.
fn last_suffix_json(text: &str) -> Option<Value> {
    // Bound the work on pathological output (thousands of unclosed brackets): each try parses a suffix.
    const MAX_TRIES: usize = 10_000;
    let candidates = text.char_indices().rev().filter(|(_, c)| *c == '{' || *c == '[').take(MAX_TRIES);
    candidates.map(|(at, _)| &text[at..]).find_map(|suffix| serde_json::from_str(suffix).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{job, recv_within};
    use std::sync::mpsc;

    /// A command harness running `script` with `/bin/sh` (not exec'd directly: a freshly written executable
    /// can fail with ETXTBSY while another test thread forks), given the temp dir as `$1`.
    fn harness(dir: &Path, script: &str) -> CommandHarness {
        let path = dir.join("agent.sh");
        fs::write(&path, script).unwrap();
        let command = ["/bin/sh", path.to_str().unwrap(), dir.to_str().unwrap()].map(String::from).to_vec();
        let env = BTreeMap::from([("AGENT_MODE".to_owned(), "test".to_owned())]);
        CommandHarness::new("fake", CommandConfig { command, env, ..CommandConfig::default() }).unwrap()
    }

    fn run(harness: &CommandHarness, job: &Job) -> Outcome {
        let (tx, rx) = mpsc::channel();
        harness.launch(job, move |outcome| tx.send(outcome).unwrap()).unwrap();
        recv_within(&rx, Duration::from_secs(30))
    }

    fn agent_job(dir: &Path) -> Job {
        let task = json!({"kind": "agent", "agent": {"prompt": {"role": "dev", "task": "Add 1"},
            "outputSchema": {"type": "object"}}});
        job("agent", task, json!({"n": 41}), dir)
    }

    #[test]
    fn the_last_json_on_stdout_is_the_result_and_stdin_carries_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let script = "cat > \"$1/in.json\"; env | grep -E '^(TUTTI_|AGENT_MODE)' | sort > \"$1/env.txt\"
            echo working; echo '{\"answer\": 1}'; echo '{\"answer\": 42}'; echo bye";
        let value = run(&harness(dir.path(), script), &agent_job(dir.path())).unwrap();
        assert_eq!(value, json!({"answer": 42}));

        let input: Value = serde_json::from_str(&fs::read_to_string(dir.path().join("in.json")).unwrap()).unwrap();
        assert_eq!(input["prompt"], json!("Role: dev\n\nTask: Add 1\n"));
        assert_eq!(input["outputSchema"], json!({"type": "object"}));
        assert_eq!(
            (input["runId"].clone(), input["effectId"].clone(), input["attempt"].clone()),
            (json!("run-1"), json!("effect-1"), json!(1))
        );
        assert_eq!((input["args"].clone(), input["title"].clone()), (json!({"n": 41}), json!("a title")));
        assert_eq!(input["task"]["agent"]["prompt"]["task"], json!("Add 1"));

        let env = fs::read_to_string(dir.path().join("env.txt")).unwrap();
        let names: Vec<&str> = env.lines().map(|l| l.split('=').next().unwrap()).collect();
        assert_eq!(
            names,
            [
                "AGENT_MODE",
                "TUTTI_ATTEMPT",
                "TUTTI_EFFECT_ID",
                "TUTTI_RESULT_FILE",
                "TUTTI_RUN_ID",
                "TUTTI_SESSION_FILE",
                "TUTTI_TASK_ID",
                "TUTTI_USAGE_FILE"
            ]
        );
    }

    #[test]
    fn the_result_file_wins_over_stdout_and_is_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let script = "cat > /dev/null; test ! -e \"$TUTTI_RESULT_FILE\" || exit 9
            echo \"$TUTTI_RESULT_FILE\" > \"$1/path.txt\"
            echo '{\"from\": \"file\"}' > \"$TUTTI_RESULT_FILE\"; echo '{\"from\": \"stdout\"}'";
        let value = run(&harness(dir.path(), script), &agent_job(dir.path())).unwrap();
        assert_eq!(value, json!({"from": "file"}));
        let path = PathBuf::from(fs::read_to_string(dir.path().join("path.txt")).unwrap().trim());
        assert!(!path.parent().unwrap().exists(), "{} was left behind", path.display());
    }

    #[test]
    fn a_non_zero_exit_is_an_error_with_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let script = "cat > /dev/null; echo '{\"ok\": true}'; echo 'rate limited' >&2; exit 3";
        let error = run(&harness(dir.path(), script), &agent_job(dir.path())).unwrap_err().into_error();
        assert_eq!((error.name.as_str(), error.message.as_str()), ("HarnessError", "harness fake exited with code 3"));
        assert_eq!(error.data, Some(json!({"exitCode": 3, "signal": null, "stderr": "rate limited\n"})));
    }

    #[test]
    fn death_by_signal_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = run(&harness(dir.path(), "kill -KILL $$"), &agent_job(dir.path())).unwrap_err().into_error();
        assert_eq!(
            (error.name.as_str(), error.message.as_str()),
            ("HarnessError", "harness fake was killed by SIGKILL")
        );
    }

    #[test]
    fn no_json_is_an_output_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = run(&harness(dir.path(), "echo 'all done'; echo warn >&2"), &agent_job(dir.path()))
            .unwrap_err()
            .into_error();
        assert_eq!(
            (error.name.as_str(), error.message.as_str()),
            ("OutputError", "harness fake printed no JSON result")
        );
        assert_eq!(error.data, Some(json!({"stdout": "all done\n", "stderr": "warn\n"})));
    }

    #[test]
    fn a_result_file_that_is_not_json_is_an_output_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = run(&harness(dir.path(), "echo nope > \"$TUTTI_RESULT_FILE\""), &agent_job(dir.path()))
            .unwrap_err()
            .into_error();
        assert_eq!(error.name, "OutputError");
        assert!(error.message.starts_with("harness fake: result file is not JSON"), "{}", error.message);
    }

    #[test]
    fn a_missing_program_cannot_start() {
        let dir = tempfile::tempdir().unwrap();
        let config = CommandConfig { command: vec!["/nonexistent/agent".into()], ..CommandConfig::default() };
        let harness = CommandHarness::new("ghost", config).unwrap();
        let err = harness.launch(&agent_job(dir.path()), |_| {}).unwrap_err();
        assert_eq!(err.to_string(), "cannot start harness ghost (`/nonexistent/agent`)");
    }

    #[test]
    fn config_reads_defaults_ignores_other_fields_and_needs_a_command() {
        let config: CommandConfig =
            serde_json::from_value(json!({"command": ["agent", "--json"], "max_parallel": 2, "model": "x"})).unwrap();
        assert_eq!((config.env.len(), config.capabilities.len(), config.timeout_ms), (0, 0, None));
        let harness = CommandHarness::new("mine", config).unwrap();
        assert_eq!((harness.name(), harness.max_parallel(), harness.is_pure()), ("mine", Some(2), false));
        let err = CommandHarness::new("empty", CommandConfig::default()).unwrap_err();
        assert_eq!(err.to_string(), "harness empty: `command` must name a program");
    }

    #[test]
    fn output_schema_falls_back_to_the_task_level() {
        let task = json!({"outputSchema": {"type": "array"}, "agent": {"prompt": "hi"}});
        let payload: Value =
            serde_json::from_slice(&stdin_payload(&job("agent", task, json!(null), Path::new("/")))).unwrap();
        assert_eq!(
            (payload["outputSchema"].clone(), payload["prompt"].clone()),
            (json!({"type": "array"}), json!("hi"))
        );
    }

    #[test]
    fn last_json_finds_the_final_value() {
        assert_eq!(last_json("  42 \n"), Some(json!(42)));
        assert_eq!(last_json("log\n{\"a\": 1}\n[2]\nend\n"), Some(json!([2])));
        assert_eq!(last_json("step 1\nResult:\n{\n  \"a\": {\"b\": [1, 2]}\n}\n"), Some(json!({"a": {"b": [1, 2]}})));
        assert_eq!(last_json("pairs:\n[\n  [1, 2],\n  [3, 4]\n]"), Some(json!([[1, 2], [3, 4]])));
        assert_eq!(last_json("{\"a\": 1}\nsee [docs]"), Some(json!({"a": 1})));
        assert_eq!(last_json("progress 42\nfinished"), None);
        assert_eq!(last_json("{ unclosed\n[[[["), None);
        assert_eq!(last_json(""), None);
    }
}
