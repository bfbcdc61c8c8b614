//! The `node` harness: runs a `node` task's script with Node.js in the project directory and resolves to the
//! same `{ success, exitCode, stdout, stderr }` value as the shell harness. It keeps secrets out of the
//! script's environment (babysitter's rule); process control itself is `process.rs`.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tutti_engine::harness::Error;
use tutti_engine::{Harness, Job, Outcome, Reporter, Running};

use crate::process::{self, Options, ProcessHandle};
use crate::shell::{env_pairs, exit_outcome, invalid, job_env, millis};

/// Parent variables whose names contain one of these (case-insensitively) are not passed to the script.
const SECRET_WORDS: [&str; 4] = ["SECRET", "TOKEN", "PASSWORD", "KEY"];

/// Runs tasks of kind `node`: `task.node = { script | entry, args, env, timeoutMs }` becomes
/// `node SCRIPT ARGS...` in the project directory (a relative script path is relative to it). The script
/// sees tutti's environment minus secrets, plus `node.env` (passed as given, secrets included) and the
/// `TUTTI_*` variables. Exits are reported as by the shell harness, with success meaning exit code 0.
#[derive(Clone, Debug)]
pub struct NodeHarness {
    program: PathBuf,
}

impl Default for NodeHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeHarness {
    /// Runs `node` from `PATH`.
    pub fn new() -> Self {
        Self::with_program("node")
    }

    /// Runs the given Node.js executable instead.
    pub fn with_program(program: impl Into<PathBuf>) -> Self {
        Self { program: program.into() }
    }

    /// Start `job`; `done` receives its outcome, from another thread.
    pub fn launch(&self, job: &Job, done: impl FnOnce(Outcome) + Send + 'static) -> Result<ProcessHandle, Error> {
        let spec = NodeSpec::from_job(job)?;
        let mut command = Command::new(&self.program);
        command.arg(&spec.script).args(&spec.args).current_dir(&job.workdir);
        command.env_clear().envs(inherited_env(std::env::vars_os()));
        command.envs(spec.env.iter().cloned()).envs(job_env(job));
        let options = Options { timeout: spec.timeout, ..Options::default() };
        let what = format!("node script `{}`", spec.script);
        let on_exit = move |exit| done(exit_outcome(&what, exit, 0, spec.timeout));
        process::spawn(command, options, on_exit).map_err(|source| self.spawn_error(job, &spec, source))
    }

    fn spawn_error(&self, job: &Job, spec: &NodeSpec, source: io::Error) -> Error {
        // ENOENT also means a missing working directory; only blame Node when the directory is there.
        let what = if source.kind() == io::ErrorKind::NotFound && job.workdir.is_dir() {
            format!(
                "node script `{}`: `{}` not found; install Node.js and put it on PATH",
                spec.script,
                self.program.display()
            )
        } else {
            format!("node script `{}`", spec.script)
        };
        Error::Spawn { what, source }
    }
}

impl Harness for NodeHarness {
    fn name(&self) -> &str {
        "node"
    }

    fn start(&self, job: Job, reporter: Reporter) -> Result<Box<dyn Running>, Error> {
        let handle = self.launch(&job, move |outcome| reporter.finish(outcome))?;
        Ok(Box::new(handle))
    }
}

/// A `node` task's description, validated.
#[derive(Debug)]
struct NodeSpec {
    script: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    timeout: Option<Duration>,
}

impl NodeSpec {
    fn from_job(job: &Job) -> Result<Self, Error> {
        let block = job.task.get("node").unwrap_or(&Value::Null);
        let script = [block.get("script"), block.get("entry")]
            .into_iter()
            .flatten()
            .find_map(Value::as_str)
            .ok_or_else(|| invalid(job, "has no `node.script` (or `node.entry`) string"))?;
        let args = match block.get("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.iter().map(arg_text).collect(),
            Some(_) => return Err(invalid(job, "`node.args` must be an array")),
        };
        Ok(Self {
            script: script.to_owned(),
            args,
            env: env_pairs(job, block.get("env"), "node.env")?,
            timeout: millis(job, block.get("timeoutMs"), "node.timeoutMs")?,
        })
    }
}

/// Strings are passed as they are; other values as JSON text.
fn arg_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The parent's variables a node script may see: all but those whose names look like secrets.
fn inherited_env(vars: impl Iterator<Item = (OsString, OsString)>) -> Vec<(OsString, OsString)> {
    vars.filter(|(key, _)| {
        let key = key.to_string_lossy().to_ascii_uppercase();
        !SECRET_WORDS.iter().any(|word| key.contains(word))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{job, recv_within};
    use serde_json::json;
    use std::sync::mpsc;

    fn run_node(job: &Job) -> Outcome {
        let (tx, rx) = mpsc::channel();
        let launched = NodeHarness::new().launch(job, move |outcome| tx.send(outcome).unwrap());
        if let Err(err) = launched {
            panic!("{err} ({:?}): these tests need Node.js 20 installed and on PATH", std::error::Error::source(&err));
        }
        recv_within(&rx, Duration::from_secs(60))
    }

    #[test]
    fn runs_a_script_with_args_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let script = "console.log(JSON.stringify({args: process.argv.slice(2), color: process.env.COLOR, \
                      effect: process.env.TUTTI_EFFECT_ID, cwd: process.cwd()}))";
        std::fs::write(dir.path().join("main.js"), script).unwrap();
        let task = json!({"node": {"script": "main.js", "args": ["a", 2, {"b": true}], "env": {"COLOR": "red"}}});
        let value = run_node(&job("node", task, json!({}), dir.path())).unwrap();
        assert_eq!((value["success"].clone(), value["exitCode"].clone()), (json!(true), json!(0)));
        let printed: Value = serde_json::from_str(value["stdout"].as_str().unwrap()).unwrap();
        let cwd = dir.path().canonicalize().unwrap();
        assert_eq!(
            printed,
            json!({"args": ["a", "2", "{\"b\":true}"], "color": "red", "effect": "effect-1",
            "cwd": cwd.to_str().unwrap()})
        );
    }

    #[test]
    fn a_failing_script_is_a_value_with_success_false() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fail.js"), "console.error('bad'); process.exit(2)").unwrap();
        let task = json!({"node": {"entry": "fail.js"}});
        let value = run_node(&job("node", task, json!({}), dir.path())).unwrap();
        assert_eq!(value, json!({"success": false, "exitCode": 2, "stdout": "", "stderr": "bad\n"}));
    }

    #[test]
    fn secrets_are_not_inherited() {
        let vars = ["PATH", "API_KEY", "github_token", "DB_PASSWORD", "MY_SECRET_X", "HOME"]
            .map(|k| (OsString::from(k), OsString::from("v")));
        let kept: Vec<_> = inherited_env(vars.into_iter()).into_iter().map(|(k, _)| k).collect();
        assert_eq!(kept, ["PATH", "HOME"]);
    }

    #[test]
    fn a_missing_node_says_to_install_it() {
        let dir = tempfile::tempdir().unwrap();
        let job = job("node", json!({"node": {"script": "x.js"}}), json!({}), dir.path());
        let err = NodeHarness::with_program("/nonexistent/node").launch(&job, |_| {}).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot start node script `x.js`: `/nonexistent/node` not found; install Node.js and put it on PATH"
        );
    }

    #[test]
    fn a_missing_script_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let job = job("node", json!({"node": {"args": []}}), json!({}), dir.path());
        let err = NodeHarness::new().launch(&job, |_| {}).unwrap_err();
        assert_eq!(
            err.to_string(),
            "node task `task-1` (effect effect-1): has no `node.script` (or `node.entry`) string"
        );
    }
}
