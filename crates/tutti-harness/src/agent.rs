//! What the real agent-CLI adapters (`claude.rs`, `codex.rs`, `gemini.rs`, `pi.rs`, `opencode.rs`) share: their
//! `[harness.NAME]` configuration, finding the CLI and its version, the isolated home each CLI runs in, gateway URLs,
//! the prompt, and running the CLI to an outcome built from what its event stream said. Each CLI's own command line and
//! event format are its module's; reading `tutti.toml` is the CLI crate's.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tutti_engine::harness::Error as StartError;
use tutti_engine::{Failure, Job, Outcome, Reporter};
use tutti_journal::{ErrorInfo, Usage};

use crate::cli::is_executable;
use crate::command::last_json;
use crate::process::{self, Exit, Options, ProcessHandle, Stop};
use crate::prompt::{render_messages, render_prompt};
use crate::session::SessionFiles;
use crate::shell::{job_env, tail, timeout_error};
pub use progress::progress_of;
use progress::{Contact, progress_sink, watch_contact};

/// How long one agent turn may run when neither `timeout_ms` nor the task sets a limit. Some CLIs retry an
/// unreachable API for minutes or forever (codex), so tutti always has a limit of its own.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// How much of a CLI's output is kept: its whole event stream is parsed after it exits.
const EVENT_STREAM_CAP: usize = 16 << 20;

/// `[harness.NAME]` in `tutti.toml` for an agent CLI (`use = "claude"`, `use = "pi"`, ..., or a table named
/// after the CLI). Unknown fields are refused, so a misspelt `base-url` is an error and not a silent no-op.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The CLI to run: a path, or a name looked up on `PATH`. Default: the CLI's own name, on `PATH` or in
    /// the CLI cache that `.ci/install-clis.sh` fills (see [`cli_cache_bin`]).
    pub binary: Option<PathBuf>,
    /// A gateway or local model server. A root URL (`http://host:port`) gets the API prefix the CLI expects;
    /// a URL with a path is used as given.
    pub base_url: Option<String>,
    /// The environment variable holding the API key to send; it must be set when this is.
    pub api_key_env: Option<String>,
    pub model: Option<String>,
    /// Extra arguments for the CLI, before the prompt.
    #[serde(default)]
    pub args: Vec<String>,
    /// Added to the CLI's environment last, so it may override what tutti sets.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables passed from tutti's environment to the CLI, beyond the basics (`PATH`, locale, proxies...)
    /// and its key: a CLI gets nothing else of the environment tutti runs in.
    #[serde(default)]
    pub pass_env: Vec<String>,
    pub max_parallel: Option<usize>,
    /// What the harness can do (`edit`, `shell`, ...), for routing.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Stop a turn that runs longer than this (default: the task's timeout, else [`DEFAULT_TIMEOUT`]).
    pub timeout_ms: Option<u64>,
    /// Stop a turn whose CLI has reported it cannot reach its model (connection errors, retries) with no contact
    /// since, for this long; it fails as environmental, so the task may fall back (default
    /// [`UNREACHABLE_AFTER`]).
    pub unreachable_after_ms: Option<u64>,
    /// The retry policy for its tasks that set none, as a task's `retry` (`{ max, backoffMs, ... }`).
    #[serde(default)]
    pub retry: Option<Value>,
}

/// How long a CLI that reports it cannot reach its model may go on retrying before the turn is given up.
pub const UNREACHABLE_AFTER: Duration = Duration::from_secs(60);

/// `base` with the API prefix a CLI expects (`/v1`, or "" for one that adds it itself) when it is a root
/// URL; a URL that has a path is used as given.
pub(crate) fn api_url(base: &str, prefix: &str) -> String {
    let base = base.trim_end_matches('/');
    let after_scheme = base.split_once("://").map_or(base, |(_, rest)| rest);
    if after_scheme.contains('/') { base.to_string() } else { format!("{base}{prefix}") }
}

/// The API key named by `api_key_env`, or the default variable's value; an error when `api_key_env` names a
/// variable that is not set.
pub(crate) fn api_key(harness: &str, config: &AgentConfig, default_var: &str) -> Result<Option<String>, StartError> {
    let var = config.api_key_env.as_deref().unwrap_or(default_var);
    match std::env::var(var).ok().filter(|v| !v.is_empty()) {
        Some(key) => Ok(Some(key)),
        None if config.api_key_env.is_some() => {
            Err(StartError::Invalid(format!("harness {harness}: api_key_env names ${var}, which is not set")))
        }
        None => Ok(None),
    }
}

/// The model provider tutti defines in a CLI's configuration for `base_url` (codex, pi, opencode).
pub(crate) const PROVIDER: &str = "tutti";

/// Sent as the API key when a gateway is configured but no key is: some CLIs refuse to start without one,
/// and local model servers ignore it. (pi reads `apiKey` as a variable name when such a variable exists,
/// else as the key; this is no variable's name.)
pub(crate) const PLACEHOLDER_KEY: &str = "tutti-no-key";

/// The `--model` of a CLI that reaches a gateway through tutti's provider (`tutti/MODEL`); without a gateway,
/// `model` as configured. A gateway without `model` is refused: the CLI asks it for a model by name.
pub(crate) fn provider_model(turn: &crate::cli::Setup<'_>, cli: &str) -> Result<Option<String>, StartError> {
    match (&turn.config.base_url, &turn.config.model) {
        (Some(_), Some(model)) => Ok(Some(format!("{PROVIDER}/{model}"))),
        (Some(_), None) => {
            Err(turn.invalid(&format!("`base_url` needs `model`: {cli} asks a gateway for a model by name")))
        }
        (None, model) => Ok(model.clone()),
    }
}

/// Point a CLI that takes its gateway from the environment at `base_url`: `url_var` gets the root URL as it is
/// (the CLI adds its own API prefix) and `key_var` the key, or with a gateway and no key a placeholder.
pub(crate) fn gateway_env(
    command: &mut Command,
    config: &AgentConfig,
    key: Option<String>,
    url_var: &str,
    key_var: &str,
) {
    if let Some(base) = &config.base_url {
        command.env(url_var, api_url(base, ""));
    }
    match key {
        Some(key) => command.env(key_var, key),
        None if config.base_url.is_some() => command.env(key_var, PLACEHOLDER_KEY),
        None => command,
    };
}

/// The provider keys a CLI gets from tutti's environment: with a gateway, `api_key_env` alone (none here);
/// talking to providers directly, their usual keys.
pub(crate) fn direct_keys(config: &AgentConfig) -> &'static [&'static str] {
    if config.base_url.is_some() { &[] } else { PROVIDER_KEYS }
}

/// `tutti mcp`, the messaging bridge, as a stdio MCP server for the agent CLI of one turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct McpServer {
    /// The `tutti` first on the effect's `PATH`.
    pub(crate) command: PathBuf,
    pub(crate) args: Vec<String>,
    /// The effect's `TUTTI_*` variables, which tell the server which effect speaks: passed explicitly,
    /// because some CLIs give MCP servers only part of their own environment.
    pub(crate) env: Vec<(String, String)>,
}

/// The server name the CLIs know tutti's MCP server by (tools `mcp__tutti__send`, `mcp_tutti_send`, ...).
pub(crate) const MCP_NAME: &str = "tutti";

/// The messaging bridge for `job`, when the effect can use one: `tutti` is on its `PATH` (tutti puts itself
/// there) and it has a message token. Otherwise (a harness run outside `tutti run`) no MCP server is
/// registered.
pub(crate) fn tutti_mcp(job: &Job) -> Option<McpServer> {
    let env: Vec<(String, String)> = job_env(job).into_iter().filter(|(k, _)| k.starts_with("TUTTI_")).collect();
    env.iter().any(|(k, _)| k == "TUTTI_MSG_TOKEN").then_some(())?;
    let path = job.env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str())?;
    let command = std::env::split_paths(path).map(|dir| dir.join("tutti")).find(|p| is_executable(p))?;
    Some(McpServer { command, args: vec!["mcp".into()], env })
}

/// The private home a harness's CLI runs in: `WORKDIR/.tutti/harness-home/NAME`, shared by its turns so
/// that sessions can be resumed, and never the user's own home.
pub(crate) fn harness_home(job: &Job, harness: &str) -> io::Result<PathBuf> {
    let home = job.project.join(".tutti").join("harness-home").join(harness);
    fs::create_dir_all(&home)?;
    Ok(home)
}

/// The session files of harness `harness` (a CLI keeping them under `dir` in its home), with the session the
/// job resumes put back as it stood after its last clean turn: a turn interrupted since then left its prompt
/// in them, and resuming as is would send that prompt twice.
pub(crate) fn sessions(
    harness: &str,
    job: &Job,
    dir: &str,
    belongs: fn(&str, &str) -> bool,
) -> Result<SessionFiles, StartError> {
    let home = harness_home(job, harness).map_err(|source| home_error(harness, job, source))?;
    let files = SessionFiles::new(&home, home.join(dir), belongs);
    if let Some(id) = &job.session {
        files.restore(id).map_err(|source| StartError::Spawn {
            what: format!("harness {harness}: restoring session {id} as its last completed turn left it"),
            source,
        })?;
    }
    Ok(files)
}

/// The start error for a home (or a file in it) that cannot be written.
pub(crate) fn home_error(harness: &str, job: &Job, source: io::Error) -> StartError {
    StartError::Spawn { what: format!("harness {harness}: its home under {}", job.project.display()), source }
}

/// The variables that keep a CLI's configuration, caches and state inside `home`.
pub(crate) fn home_env(home: &Path) -> Vec<(String, OsString)> {
    [
        ("HOME", ""),
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_STATE_HOME", ".local/state"),
        ("XDG_CACHE_HOME", ".cache"),
    ]
    .into_iter()
    .map(|(var, sub)| (var.to_string(), if sub.is_empty() { home.into() } else { home.join(sub).into_os_string() }))
    .collect()
}

/// Write `text` to `path` so that a CLI starting at the same moment reads either the old or the new file.
pub(crate) fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map_or("file".into(), |n| n.to_string_lossy().into_owned());
    let unique = format!(".{name}.{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let tmp = path.with_file_name(unique);
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)
}

/// The task's output schema, where the engine looks for it (`agent.outputSchema`, its kind's block, the top).
pub(crate) fn output_schema(task: &Value) -> Option<&Value> {
    tutti_engine::output_schema(task)
}

/// What the agent is told: this turn's messages, the rendered task, and, with an output schema, how to
/// answer.
pub(crate) fn prompt(job: &Job) -> String {
    let mut text = format!("{}{}", render_messages(&job.messages), render_prompt(&job.task));
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    let io = job.task.get("io").filter(|v| v.is_object());
    if let Some(io) = io {
        text.push_str(&format!("\n\nInputs and outputs of this task:\n{}\n", pretty(io)));
    }
    if let Some(schema) = output_schema(&job.task) {
        text.push_str(&format!(
            "\n\nWhen you are done, answer with only a JSON value that matches this JSON Schema, and no other text:\n{}\n",
            pretty(schema)
        ));
    } else if let Some(outputs) = io.and_then(|io| io.get("outputs")).filter(|v| !v.is_null()) {
        text.push_str(&format!(
            "\n\nWhen you are done, answer with only a JSON value shaped like these outputs, and no other text:\n{}\n",
            pretty(outputs)
        ));
    }
    text
}

/// What a CLI's event stream said about its turn.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transcript {
    pub session: Option<String>,
    /// The final answer's text.
    pub answer: Option<String>,
    /// The turn's tokens (`input_tokens` is the uncached part of the prompt) and cost.
    pub usage: Option<Usage>,
    /// The error the events reported, when the turn failed (a CLI may still exit 0).
    pub error: Option<String>,
}

/// The JSON objects of a JSONL stream; other lines (warnings some CLIs print to stdout) are skipped.
pub(crate) fn events(stdout: &str) -> impl Iterator<Item = Value> + '_ {
    stdout.lines().filter(|l| l.trim_start().starts_with('{')).filter_map(|l| serde_json::from_str(l).ok())
}

/// A number field of an event, 0 when absent.
pub(crate) fn count(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// One CLI turn, ready to start: the command, and how to read what it printed.
pub(crate) struct Turn {
    pub(crate) harness: String,
    pub(crate) command: Command,
    /// Written to the CLI's stdin, which is then closed (the prompt, for CLIs that read it there); `None`
    /// gives it `/dev/null`.
    pub(crate) stdin: Option<Vec<u8>>,
    pub(crate) timeout: Duration,
    pub(crate) schema: Option<Value>,
    pub(crate) parse: Box<dyn FnOnce(&str) -> Transcript + Send>,
    /// The CLI's session files, saved after the turn when it ends cleanly.
    pub(crate) sessions: Option<SessionFiles>,
    /// How long the CLI may retry an unreachable model, and where that model is (for the message).
    pub(crate) unreachable_after: Duration,
    pub(crate) base_url: Option<String>,
    /// The model the harness names (`model`), for usage whose stream does not say which model ran.
    pub(crate) model: Option<String>,
}

impl Turn {
    /// A turn of `job` on the harness named `harness`, with stdin from `/dev/null`.
    pub(crate) fn new(
        harness: &str,
        config: &AgentConfig,
        job: &Job,
        command: Command,
        parse: Box<dyn FnOnce(&str) -> Transcript + Send>,
    ) -> Self {
        Turn {
            harness: harness.to_string(),
            command,
            stdin: None,
            timeout: turn_timeout(config, job),
            schema: output_schema(&job.task).cloned(),
            parse,
            sessions: None,
            unreachable_after: config.unreachable_after_ms.map_or(UNREACHABLE_AFTER, Duration::from_millis),
            base_url: config.base_url.clone(),
            model: config.model.clone(),
        }
    }

    /// Save the session's files when the turn ends cleanly (see [`sessions`]).
    pub(crate) fn saving(mut self, sessions: SessionFiles) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// For CLIs that read the prompt on stdin: write it there and close it.
    pub(crate) fn prompt_on_stdin(mut self, job: &Job) -> Self {
        self.stdin = Some(prompt(job).into_bytes());
        self
    }
}

/// The timeout of a turn: the harness's own, else the task's, else [`DEFAULT_TIMEOUT`].
pub(crate) fn turn_timeout(config: &AgentConfig, job: &Job) -> Duration {
    config.timeout_ms.map(Duration::from_millis).or(job.timeout).unwrap_or(DEFAULT_TIMEOUT)
}

/// What an agent CLI inherits from tutti's own environment: the system basics (search path, locale,
/// terminal, user, temp folder, proxies and CA certificates). Nothing else: not the keys of other services,
/// not a user's tokens. A CLI may write its environment to disk (codex's shell snapshots did) or pass it to
/// the commands its model runs.
const INHERITED: &[&str] = &[
    "PATH",
    "LANG",
    "LANGUAGE",
    "TERM",
    "COLORTERM",
    "TZ",
    "USER",
    "LOGNAME",
    "SHELL",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// The provider keys a multi-provider CLI (pi, opencode) may read when it talks to a provider directly, with
/// no `base_url`.
pub(crate) const PROVIDER_KEYS: &[&str] =
    &["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENROUTER_API_KEY"];

/// The whole environment of an agent CLI, replacing what it would inherit: the basics in [`INHERITED`] (and
/// `LC_*`), the key variables `keys` and `api_key_env` when set, the variables its adapter set on `command`,
/// the harness's `pass_env` names, `PWD` (opencode takes its working directory from it, not from the
/// process's), the attempt's ids and the orchestrator's variables, then the harness's `env`.
pub(crate) fn finish_env(command: &mut Command, job: &Job, config: &AgentConfig, keys: &[&str]) {
    let set_by_adapter: Vec<(OsString, Option<OsString>)> =
        command.get_envs().map(|(k, v)| (k.to_owned(), v.map(OsStr::to_owned))).collect();
    command.env_clear();
    let wanted = |name: &str| {
        INHERITED.contains(&name)
            || name.starts_with("LC_")
            || keys.contains(&name)
            || config.api_key_env.as_deref() == Some(name)
            || config.pass_env.iter().any(|p| p == name)
    };
    for (name, value) in std::env::vars_os() {
        if name.to_str().is_some_and(wanted) {
            command.env(name, value);
        }
    }
    for (name, value) in set_by_adapter {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command.current_dir(&job.workdir).env("PWD", &job.workdir).envs(job_env(job)).envs(&config.env);
}

/// Start `turn` (stdin from `/dev/null` or the turn's input, then closed; its own process group); the session it ran in, its usage and its
/// outcome go to `reporter` when it ends.
pub(crate) fn start(turn: Turn, reporter: Reporter) -> Result<ProcessHandle, StartError> {
    let Turn { harness, command, stdin, timeout, schema, parse, sessions, unreachable_after, base_url, model } = turn;
    let what = format!("harness {harness} (`{}`)", command.get_program().to_string_lossy());
    let contact = Arc::new(Mutex::new(Contact::default()));
    let on_line = progress_sink(reporter.clone(), Arc::clone(&contact));
    let watched = Arc::clone(&contact);
    let options = Options {
        stdin,
        timeout: Some(timeout),
        output_cap: EVENT_STREAM_CAP,
        on_line: Some(on_line),
        ..Options::default()
    };
    let on_exit = move |exit: io::Result<Exit>| {
        let transcript = exit.as_ref().map(|e| parse(&e.stdout)).unwrap_or_default();
        if let Some(session) = transcript.session.clone() {
            let clean = exit.as_ref().is_ok_and(|e| e.code == Some(0) && e.stopped.is_none());
            if let Some(files) = sessions.as_ref().filter(|_| clean) {
                // Best effort: without the copy, the next turn resumes the session as the CLI left it.
                let _ = files.save(&session);
            }
            reporter.session(session);
        }
        if let Some(mut usage) = transcript.usage.clone() {
            if usage.model.is_none() {
                usage.model.clone_from(&model);
            }
            reporter.usage(usage);
        }
        if let Ok(e) = &exit {
            reporter.transcript(e.stdout.clone(), e.stderr.clone());
        }
        let mut result = outcome(&harness, exit, &transcript, schema.as_ref(), timeout);
        if let Err(Failure::Unavailable(error) | Failure::Task(error)) = &mut result
            && error.name == "TimeoutError"
            && watched.lock().unwrap_or_else(PoisonError::into_inner).gave_up
        {
            let last = watched.lock().unwrap_or_else(PoisonError::into_inner).last_error.clone();
            let place = base_url.as_deref().map(|u| format!(" at {u}")).unwrap_or_default();
            let message = format!(
                "harness {harness} cannot reach its model{place}: it kept failing for {} s ({last})",
                unreachable_after.as_secs()
            );
            result = Err(Failure::Unavailable(
                ErrorInfo::new("Unreachable", message).with_data(json!({ "lastError": last })),
            ));
        }
        reporter.finish(result);
    };
    let handle = process::spawn(command, options, on_exit).map_err(|source| StartError::Spawn { what, source })?;
    watch_contact(handle.stopper(), contact, unreachable_after);
    Ok(handle)
}

/// The effect's outcome from how the CLI ended and what its events said: a timeout, an error the events
/// reported, a failed exit, a missing answer or an answer that is not the JSON the schema asks for are
/// errors; otherwise the answer: `{ text }`, or the parsed JSON.
pub(crate) fn outcome(
    harness: &str,
    exit: io::Result<Exit>,
    transcript: &Transcript,
    schema: Option<&Value>,
    timeout: Duration,
) -> Outcome {
    let what = format!("harness {harness}");
    let exit = exit.map_err(|err| ErrorInfo::new("HarnessError", format!("waiting for {what} failed: {err}")))?;
    let details = || {
        json!({
            "exitCode": exit.code,
            "signal": exit.signal.map(process::signal_name),
            "session": transcript.session,
            "stderr": tail(&exit.stderr),
        })
    };
    if exit.stopped == Some(Stop::TimedOut) {
        let mut error = timeout_error(&what, Some(timeout), &exit);
        if let (Some(data), Some(last)) = (error.data.as_mut(), &transcript.error) {
            data["lastError"] = json!(last);
        }
        // No answer and either retries of a failing API or no session at all: the model was never
        // reached, so the task may fall back to another harness.
        let unreached = transcript.answer.is_none() && (transcript.error.is_some() || transcript.session.is_none());
        return Err(if unreached { Failure::Unavailable(error) } else { Failure::Task(error) });
    }
    if let Some(message) = &transcript.error {
        return Err(ErrorInfo::new("AgentError", format!("{what}: {message}")).with_data(details()).into());
    }
    let failure = match (exit.code, exit.signal) {
        (Some(0), _) => None,
        (Some(code), _) => Some(format!("{what} exited with code {code}")),
        (None, Some(signal)) => Some(format!("{what} was killed by {}", process::signal_name(signal))),
        (None, None) => Some(format!("{what} ended without an exit code")),
    };
    if let Some(message) = failure {
        let mut data = details();
        data["stdout"] = json!(tail(&exit.stdout));
        return Err(ErrorInfo::new("HarnessError", message).with_data(data).into());
    }
    let answer = transcript.answer.as_deref().ok_or_else(|| {
        let mut data = details();
        data["stdout"] = json!(tail(&exit.stdout));
        let error = ErrorInfo::new("OutputError", format!("{what} gave no final answer")).with_data(data.clone());
        Failure::Output { error, raw: data }
    })?;
    answer_value(&what, answer, schema)
}

/// `{ "text": answer }`, or with an output schema the JSON value in the answer.
fn answer_value(what: &str, answer: &str, schema: Option<&Value>) -> Outcome {
    if schema.is_none() {
        return Ok(json!({ "text": answer }));
    }
    json_in(answer).ok_or_else(|| {
        let raw = json!({ "answer": answer });
        let message = format!("{what}: the answer is not the JSON the task's output schema asks for");
        Failure::Output { error: ErrorInfo::new("OutputError", message).with_data(raw.clone()), raw }
    })
}

/// The JSON value in an answer: the whole text, else the last fenced block (```json … ```) that parses,
/// else the last JSON object or array in the text.
pub(crate) fn json_in(answer: &str) -> Option<Value> {
    if let Ok(value) = serde_json::from_str(answer.trim()) {
        return Some(value);
    }
    let fenced = answer.split("```").skip(1).step_by(2).collect::<Vec<_>>();
    let from_fence = fenced.iter().rev().find_map(|block| {
        let body = match block.split_once('\n') {
            Some((tag, rest)) if !tag.trim_start().starts_with(['{', '[']) => rest,
            _ => block,
        };
        serde_json::from_str(body.trim()).ok()
    });
    from_fence.or_else(|| last_json(answer).filter(|v| v.is_object() || v.is_array()))
}

mod progress;
#[cfg(test)]
mod tests;
