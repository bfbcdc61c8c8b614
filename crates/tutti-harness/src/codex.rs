//! The `codex` harness: runs the Codex CLI headlessly for `agent` tasks (`codex exec --json`, `codex exec
//! resume`), with its own `CODEX_HOME` whose `config.toml` tutti writes (a `tutti` model provider for a
//! gateway, update checks and analytics off), and reads the thread id, final answer, usage and errors from
//! its event stream. Running the process and building the outcome are `agent.rs`'s; the facts about the CLI
//! come from `harness-clis.md`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tutti_engine::harness::Error as StartError;
use tutti_journal::Usage;

use crate::agent::PROVIDER;
use crate::agent::{self, McpServer, Transcript, count};
use crate::cli::{Cli, Codex, Parser, SessionFilesAt, Setup};

/// Where the provider points when only `api_key_env` is set.
const OPENAI_URL: &str = "https://api.openai.com/v1";

/// The Codex CLI.
///
/// Command line: `codex exec [resume] --json --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox
/// [-c model_provider="tutti"] [-m M] ARGS... -- [SESSION] PROMPT`, in the project directory, with stdin from
/// `/dev/null`. Codex ignores `OPENAI_BASE_URL`, so `base_url` becomes a provider in
/// `.tutti/harness-home/NAME/.codex/config.toml` (`CODEX_HOME`): `wire_api = "responses"`, the root URL
/// plus `/v1`, and `env_key` = `api_key_env`.
impl Cli for Codex {
    const PROGRAM: &'static str = "codex";
    const PACKAGE: &'static str = "@openai/codex";
    /// 145–150 MB measured.
    const MEMORY_MB: u64 = 150;
    /// Rollouts: `.codex/sessions/YYYY/MM/DD/rollout-<time>-<thread>.jsonl`.
    const SESSIONS: Option<SessionFilesAt> = Some((".codex/sessions", rollout_file));

    fn command(&self, turn: &Setup<'_>) -> Result<Command, StartError> {
        let (config, job) = (turn.config, turn.job);
        agent::api_key(turn.name, config, "OPENAI_API_KEY")?;
        let codex_home = codex_home(turn);
        let uses_provider = config.base_url.is_some() || config.api_key_env.is_some();
        fs::create_dir_all(&codex_home)
            .and_then(|()| agent::write_atomically(&codex_home.join("config.toml"), &config_toml(turn)))
            .map_err(|e| turn.home_error(e))?;

        let mut command = Command::new(&turn.binary);
        command.arg("exec");
        if job.session.is_some() {
            command.arg("resume");
        }
        command.args(["--json", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox"]);
        if uses_provider {
            command.arg("-c").arg(format!("model_provider=\"{PROVIDER}\""));
        }
        if let Some(model) = &config.model {
            command.arg("-m").arg(model);
        }
        if let Some(server) = agent::tutti_mcp(job) {
            for setting in mcp_settings(&server) {
                command.arg("-c").arg(setting);
            }
        }
        command.args(&config.args).arg("--");
        if let Some(session) = &job.session {
            command.arg(session);
        }
        command.arg(agent::prompt(job));
        command.envs(agent::home_env(&turn.home)).env("CODEX_HOME", &codex_home);
        agent::finish_env(&mut command, job, config, &["OPENAI_API_KEY", "CODEX_API_KEY"]);
        Ok(command)
    }

    fn parse(stdout: &str) -> Transcript {
        parse(stdout, Usage::default())
    }

    /// A resumed thread reports the usage of the whole thread; what it had before is subtracted.
    fn parser(&self, turn: &Setup<'_>) -> Result<Parser, StartError> {
        let thread = turn.job.session.as_deref();
        let before = thread.and_then(|id| thread_usage(&codex_home(turn), id)).unwrap_or_default();
        Ok(Box::new(move |stdout| parse(stdout, before)))
    }
}

fn rollout_file(name: &str, id: &str) -> bool {
    name.ends_with(&format!("-{id}.jsonl"))
}

/// The `CODEX_HOME` a turn runs with.
fn codex_home(turn: &Setup<'_>) -> PathBuf {
    turn.home.join(".codex")
}

/// `config.toml` for this harness's `CODEX_HOME`, rewritten before every turn.
fn config_toml(turn: &Setup<'_>) -> String {
    let config = turn.config;
    let quote = |s: &str| Value::from(s).to_string();
    let mut text = format!(
        "# Written by tutti for [harness.{}] before every turn; edits here are lost.\n\
         check_for_update_on_startup = false\n\n[analytics]\nenabled = false\n\n[feedback]\nenabled = false\n\n\
         # Shell snapshots write the environment, keys included, into files under CODEX_HOME.\n\
         [features]\nshell_snapshot = false\n",
        turn.name
    );
    // Commands the model runs get codex's environment minus names like *KEY*, *SECRET*, *TOKEN* (codex's
    // default); the key variable is named too, whatever it is called.
    let mut excluded = vec![quote("OPENAI_API_KEY"), quote("CODEX_API_KEY")];
    excluded.extend(config.api_key_env.as_deref().map(quote));
    text.push_str(&format!("\n[shell_environment_policy]\nexclude = [{}]\n", excluded.join(", ")));
    if config.base_url.is_some() || config.api_key_env.is_some() {
        let url = config.base_url.as_deref().map_or(OPENAI_URL.to_string(), |base| agent::api_url(base, "/v1"));
        text.push_str(&format!(
            "\n[model_providers.{PROVIDER}]\nname = \"tutti\"\nbase_url = {}\nwire_api = \"responses\"\n",
            quote(&url)
        ));
        if let Some(var) = &config.api_key_env {
            text.push_str(&format!("env_key = {}\n", quote(var)));
        }
    }
    text
}

/// `-c` settings registering tutti's messaging bridge as `mcp_servers.tutti` (its tools come to the model in
/// the namespace `mcp__tutti`). Codex gives MCP servers only part of its environment, so the `TUTTI_*`
/// variables are set explicitly.
fn mcp_settings(server: &McpServer) -> Vec<String> {
    let quote = |s: &str| Value::from(s).to_string();
    let key = format!("mcp_servers.{}", agent::MCP_NAME);
    let args: Vec<String> = server.args.iter().map(|a| quote(a)).collect();
    let env: Vec<String> = server.env.iter().map(|(k, v)| format!("{k} = {}", quote(v))).collect();
    vec![
        format!("{key}.command={}", quote(&server.command.to_string_lossy())),
        format!("{key}.args=[{}]", args.join(", ")),
        format!("{key}.env={{ {} }}", env.join(", ")),
    ]
}

/// Read a `--json` transcript: `thread.started` has the session id; each `item.completed` of type
/// `agent_message` is an answer (the last one is final); `turn.completed` has the thread's cumulative usage
/// (`before` is subtracted); `turn.failed` is an error, and so is a top-level `error` (codex reports retries
/// that way) when no `turn.completed` follows it.
fn parse(stdout: &str, before: Usage) -> Transcript {
    let mut transcript = Transcript::default();
    let mut last_error = None;
    let mut completed = false;
    for event in agent::events(stdout) {
        match event["type"].as_str().unwrap_or("") {
            "thread.started" => transcript.session = event["thread_id"].as_str().map(String::from),
            "item.completed" if event["item"]["type"] == "agent_message" => {
                transcript.answer = event["item"]["text"].as_str().map(String::from);
            }
            "turn.completed" => {
                completed = true;
                transcript.usage = Some(minus(&usage(&event["usage"]), &before));
            }
            "turn.failed" => {
                let message = event["error"]["message"].as_str().unwrap_or("the turn failed");
                transcript.error = Some(message.to_string());
            }
            "error" => last_error = event["message"].as_str().map(String::from),
            _ => {}
        }
    }
    if !completed && transcript.error.is_none() {
        transcript.error = last_error;
    }
    transcript
}

/// Codex's usage fields: `input_tokens` counts the whole prompt, cached and cache-written parts included.
fn usage(u: &Value) -> Usage {
    let (cache_read, cache_write) = (count(u, "cached_input_tokens"), count(u, "cache_write_input_tokens"));
    Usage {
        input_tokens: count(u, "input_tokens").saturating_sub(cache_read + cache_write),
        output_tokens: count(u, "output_tokens"),
        cache_read_tokens: cache_read,
        cache_write_tokens: cache_write,
        cost_usd: None,
        model: None,
        priced: None,
    }
}

fn minus(total: &Usage, before: &Usage) -> Usage {
    Usage {
        input_tokens: total.input_tokens.saturating_sub(before.input_tokens),
        output_tokens: total.output_tokens.saturating_sub(before.output_tokens),
        cache_read_tokens: total.cache_read_tokens.saturating_sub(before.cache_read_tokens),
        cache_write_tokens: total.cache_write_tokens.saturating_sub(before.cache_write_tokens),
        cost_usd: None,
        model: None,
        priced: None,
    }
}

/// The usage a thread has so far: the last `token_count` total in its rollout file
/// (`CODEX_HOME/sessions/YYYY/MM/DD/rollout-…-ID.jsonl`).
fn thread_usage(codex_home: &Path, thread: &str) -> Option<Usage> {
    let rollout = find_rollout(&codex_home.join("sessions"), &format!("-{thread}.jsonl"), 4)?;
    let text = fs::read_to_string(rollout).ok()?;
    text.lines().rev().filter(|l| l.contains("\"token_count\"")).find_map(|line| {
        let event: Value = serde_json::from_str(line).ok()?;
        let total = event.pointer("/payload/info/total_token_usage")?;
        Some(usage(total))
    })
}

fn find_rollout(dir: &Path, suffix: &str, depth: usize) -> Option<PathBuf> {
    let entries = fs::read_dir(dir).ok()?;
    entries.flatten().find_map(|entry| {
        let path = entry.path();
        if path.is_dir() {
            (depth > 0).then(|| find_rollout(&path, suffix, depth - 1)).flatten()
        } else {
            path.file_name()?.to_str()?.ends_with(suffix).then_some(path)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentConfig;
    use crate::testutil::job;
    use serde_json::json;
    use std::ffi::OsStr;

    /// A stream as Codex 0.169.0 printed it for an apply_patch call against the mock.
    const STREAM: &str = r#"{"type":"thread.started","thread_id":"01a21428-8a2b"}
{"type":"turn.started"}
{"type":"item.started","item":{"id":"item_0","type":"file_change","changes":[{"path":"/w/hello.txt","kind":"add"}],"status":"in_progress"}}
{"type":"item.completed","item":{"id":"item_0","type":"file_change","changes":[{"path":"/w/hello.txt","kind":"add"}],"status":"completed"}}
{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"done"}}
{"type":"turn.completed","usage":{"input_tokens":38,"cached_input_tokens":10,"cache_write_input_tokens":0,"output_tokens":14,"reasoning_output_tokens":0}}
"#;

    #[test]
    fn a_transcript_gives_answer_thread_and_usage() {
        let transcript = parse(STREAM, Usage::default());
        assert_eq!(transcript.session.as_deref(), Some("01a21428-8a2b"));
        assert_eq!((transcript.answer.as_deref(), transcript.error.as_deref()), (Some("done"), None));
        assert_eq!(
            transcript.usage,
            Some(Usage {
                input_tokens: 28,
                output_tokens: 14,
                cache_read_tokens: 10,
                cache_write_tokens: 0,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn a_resumed_thread_reports_only_this_turns_usage() {
        let before = Usage { input_tokens: 10, output_tokens: 7, cache_read_tokens: 5, ..Usage::default() };
        let usage = parse(STREAM, before).usage.unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens, usage.cache_read_tokens), (18, 7, 5));
    }

    #[test]
    fn retries_without_a_completed_turn_are_an_error() {
        let stream = r#"{"type":"thread.started","thread_id":"t"}
{"type":"turn.started"}
{"type":"error","message":"Reconnecting... waiting for network (Connection failed)"}"#;
        assert_eq!(
            parse(stream, Usage::default()).error.as_deref(),
            Some("Reconnecting... waiting for network (Connection failed)")
        );
        assert_eq!(parse(&format!("{stream}\n{STREAM}"), Usage::default()).error, None, "a retry that succeeded");
        let failed = "{\"type\":\"turn.failed\",\"error\":{\"message\":\"quota exceeded\"}}";
        assert_eq!(parse(failed, Usage::default()).error.as_deref(), Some("quota exceeded"));
    }

    #[test]
    fn the_thread_usage_so_far_comes_from_its_rollout() {
        let dir = tempfile::tempdir().unwrap();
        let day = dir.path().join("sessions/2026/11/25");
        fs::create_dir_all(&day).unwrap();
        let line = |n: u64| {
            json!({"type": "event_msg", "payload": {"type": "token_count", "info": {"total_token_usage":
            {"input_tokens": n, "cached_input_tokens": 5, "cache_write_input_tokens": 0, "output_tokens": 7}}}})
            .to_string()
        };
        fs::write(
            day.join("rollout-2026-11-25T19-22-10-abc.jsonl"),
            format!("{}\n{}\n{{\"type\":\"x\"}}\n", line(19), line(38)),
        )
        .unwrap();
        let usage = thread_usage(dir.path(), "abc").unwrap();
        assert_eq!((usage.input_tokens, usage.cache_read_tokens, usage.output_tokens), (33, 5, 7));
        assert_eq!(thread_usage(dir.path(), "other"), None);
    }

    fn harness(dir: &std::path::Path, config: AgentConfig) -> crate::cli::CodexHarness {
        crate::testutil::fake_cli(dir, config)
    }

    #[test]
    fn a_gateway_becomes_a_provider_and_a_session_is_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let config = AgentConfig {
            base_url: Some("http://127.0.0.1:9999".into()),
            model: Some("gpt-5.5".into()),
            ..AgentConfig::default()
        };
        let mut job = job("agent", json!({"agent": {"prompt": "go on"}}), json!({}), dir.path());
        job.session = Some("t-1".into());
        let command = harness(dir.path(), config).command(&job).unwrap();
        let codex_home = dir.path().join(".tutti/harness-home/codex/.codex");
        let args: Vec<&OsStr> = command.get_args().collect();
        let expected = [
            "exec",
            "resume",
            "--json",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
            "-c",
            "model_provider=\"tutti\"",
            "-m",
            "gpt-5.5",
            "--",
            "t-1",
            "go on",
        ];
        assert_eq!(args, expected.map(OsStr::new));
        let toml = fs::read_to_string(codex_home.join("config.toml")).unwrap();
        assert!(toml.contains("[model_providers.tutti]\nname = \"tutti\"\nbase_url = \"http://127.0.0.1:9999/v1\"\nwire_api = \"responses\"\n"), "{toml}");
        assert!(!toml.contains("env_key"), "{toml}");
        let home = command.get_envs().find(|(k, _)| *k == "CODEX_HOME").and_then(|(_, v)| v);
        assert_eq!(home, Some(codex_home.as_os_str()));
    }

    #[test]
    fn without_a_gateway_codex_keeps_its_own_provider() {
        let dir = tempfile::tempdir().unwrap();
        let job = job("agent", json!({"agent": {"prompt": "hi"}}), json!({}), dir.path());
        let command = harness(dir.path(), AgentConfig::default()).command(&job).unwrap();
        let codex_home = dir.path().join(".tutti/harness-home/codex/.codex");
        assert!(!command.get_args().any(|a| a == "-c"));
        let toml = fs::read_to_string(codex_home.join("config.toml")).unwrap();
        assert!(toml.contains("check_for_update_on_startup = false") && !toml.contains("model_providers"), "{toml}");
    }
}
