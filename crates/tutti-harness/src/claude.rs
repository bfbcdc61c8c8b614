//! The `claude` harness: runs Claude Code headlessly for `agent` tasks (`claude -p --output-format
//! stream-json`), in a private home, pointed at a gateway by `ANTHROPIC_BASE_URL`, and reads the session id,
//! final answer, usage, cost and errors from its event stream. Running the process and building the outcome
//! are `agent.rs`'s; the facts about the CLI come from `harness-clis.md`.

use std::process::Command;

use serde_json::Value;
use tutti_engine::harness::Error as StartError;
use tutti_journal::Usage;

use crate::agent::{self, McpServer, Transcript, count};
use crate::cli::{Claude, Cli, SessionFilesAt, Setup};

/// Claude Code.
///
/// Command line: `claude -p --output-format stream-json --verbose --permission-mode bypassPermissions
/// [--model M] [--resume SESSION] ARGS... -- PROMPT`, in the project directory, with stdin from `/dev/null`.
/// Environment: `HOME` and `CLAUDE_CONFIG_DIR` in `.tutti/harness-home/NAME`, telemetry, error reports,
/// auto-update and other non-essential traffic off, `IS_SANDBOX=1` (bypassPermissions is refused to root
/// without it), and with `base_url` set, `ANTHROPIC_BASE_URL` (a root URL as it is: the CLI adds `/v1`)
/// and `ANTHROPIC_API_KEY`.
impl Cli for Claude {
    const PROGRAM: &'static str = "claude";
    const PACKAGE: &'static str = "@anthropic-ai/claude-code";
    /// 197–228 MB measured.
    const MEMORY_MB: u64 = 230;
    /// Transcripts: `.claude/projects/<cwd>/<session>.jsonl`.
    const SESSIONS: Option<SessionFilesAt> = Some((".claude/projects", session_file));

    fn command(&self, turn: &Setup<'_>) -> Result<Command, StartError> {
        let (config, job, home) = (turn.config, turn.job, &turn.home);
        let mut command = Command::new(&turn.binary);
        command.args(["-p", "--output-format", "stream-json", "--verbose", "--permission-mode", "bypassPermissions"]);
        if let Some(model) = &config.model {
            command.arg("--model").arg(model);
        }
        if let Some(session) = &job.session {
            command.arg("--resume").arg(session);
        }
        if let Some(server) = agent::tutti_mcp(job) {
            command.arg("--mcp-config").arg(mcp_config(&server).to_string()).arg("--strict-mcp-config");
        }
        command.args(&config.args).arg("--").arg(agent::prompt(job));

        command.envs(agent::home_env(home)).env("CLAUDE_CONFIG_DIR", home.join(".claude"));
        for var in [
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
            "DISABLE_AUTOUPDATER",
            "DISABLE_TELEMETRY",
            "DISABLE_ERROR_REPORTING",
            "IS_SANDBOX",
        ] {
            command.env(var, "1");
        }
        command.env("ENABLE_TOOL_SEARCH", "false");
        let key = agent::api_key(turn.name, config, "ANTHROPIC_API_KEY")?;
        agent::gateway_env(&mut command, config, key, "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY");
        agent::finish_env(&mut command, job, config, &[]);
        Ok(command)
    }

    fn parse(stdout: &str) -> Transcript {
        parse(stdout)
    }
}

fn session_file(name: &str, id: &str) -> bool {
    name == format!("{id}.jsonl")
}

/// `--mcp-config` registering tutti's messaging bridge (its tools are `mcp__tutti__send`, ...); with
/// `--strict-mcp-config` no other MCP configuration is read.
fn mcp_config(server: &McpServer) -> Value {
    let env: serde_json::Map<String, Value> =
        server.env.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
    serde_json::json!({ "mcpServers": { agent::MCP_NAME: {
        "command": server.command, "args": server.args, "env": env,
    }}})
}

/// Read a `stream-json` transcript: `system/init` and every later line carry `session_id`; the last line,
/// `result`, has the final text (`result`), `is_error`, `usage` for the whole invocation and
/// `total_cost_usd`. Without a `result` line (a crash, a kill) only the session is known, and the last
/// `system/api_retry` line, if any, is the error.
fn parse(stdout: &str) -> Transcript {
    let mut transcript = Transcript::default();
    let mut retrying = None;
    let mut ended = false;
    let mut init_model = None;
    for event in agent::events(stdout) {
        if let Some(id) = event["session_id"].as_str() {
            transcript.session = Some(id.to_string());
        }
        if event["type"] == "system" && event["subtype"] == "init" {
            init_model = event["model"].as_str().map(String::from);
        }
        if event["type"] == "system" && event["subtype"] == "api_retry" {
            retrying = Some(retry_message(&event));
        }
        if event["type"] != "result" {
            continue;
        }
        ended = true;
        let text = event["result"].as_str().map(String::from);
        if event["is_error"] == true {
            let reason = event["terminal_reason"].as_str().or(event["subtype"].as_str()).unwrap_or("error");
            transcript.error = Some(text.clone().unwrap_or_else(|| format!("the turn ended with {reason}")));
        }
        transcript.answer = text;
        transcript.usage = Some(usage(&event));
    }
    if let (Some(u), Some(model)) = (transcript.usage.as_mut(), init_model) {
        u.model.get_or_insert(model);
    }
    if !ended {
        transcript.error = retrying;
    }
    transcript
}

/// "API request failed (attempt 4 of 10, status 529): overloaded".
fn retry_message(event: &Value) -> String {
    let status = event["error_status"].as_u64().map_or("none".into(), |s| s.to_string());
    format!(
        "API request failed (attempt {} of {}, status {status}): {}",
        count(event, "attempt"),
        count(event, "max_retries"),
        event["error"].as_str().unwrap_or("unknown")
    )
}

fn usage(result: &Value) -> Usage {
    let u = &result["usage"];
    Usage {
        input_tokens: count(u, "input_tokens"),
        output_tokens: count(u, "output_tokens"),
        cache_read_tokens: count(u, "cache_read_input_tokens"),
        cache_write_tokens: count(u, "cache_creation_input_tokens"),
        cost_usd: result["total_cost_usd"].as_f64(),
        // The model that did the work: the first of `modelUsage` (claude prices each model itself).
        model: result["modelUsage"].as_object().and_then(|m| m.keys().next().cloned()),
        priced: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentConfig;
    use crate::testutil::job;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::ffi::OsStr;

    /// A stream as Claude Code 2.1.332 printed it for a Write tool call against the mock (lines shortened).
    const STREAM: &str = r#"{"type":"system","subtype":"init","cwd":"/w","session_id":"13c7b9cb","tools":["Write"],"model":"claude-sonnet-4-5"}
{"type":"assistant","message":{"content":[{"id":"toolu_mock1","input":{"file_path":"/w/hello.txt","content":"hi"},"name":"Write","type":"tool_use"}]},"session_id":"13c7b9cb"}
{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_mock1","type":"tool_result","content":"File created"}]},"session_id":"13c7b9cb"}
{"type":"assistant","message":{"content":[{"text":"done","type":"text"}]},"session_id":"13c7b9cb"}
{"type":"result","subtype":"success","is_error":false,"result":"done","session_id":"13c7b9cb","total_cost_usd":0.0003015,"usage":{"input_tokens":22,"cache_creation_input_tokens":6,"cache_read_input_tokens":10,"output_tokens":14},"terminal_reason":"completed"}
"#;

    #[test]
    fn a_transcript_gives_answer_session_usage_and_cost() {
        let transcript = parse(STREAM);
        assert_eq!(transcript.session.as_deref(), Some("13c7b9cb"));
        assert_eq!((transcript.answer.as_deref(), transcript.error.as_deref()), (Some("done"), None));
        let usage = Usage {
            input_tokens: 22,
            output_tokens: 14,
            cache_read_tokens: 10,
            cache_write_tokens: 6,
            cost_usd: Some(0.0003015),
            model: Some("claude-sonnet-4-5".into()),
            priced: None,
        };
        assert_eq!(transcript.usage, Some(usage));
    }

    #[test]
    fn an_api_error_is_read_from_the_result_line() {
        let stream = r#"{"type":"system","subtype":"init","session_id":"s2"}
{"type":"result","subtype":"success","is_error":true,"result":"API Error: Connection refused","session_id":"s2","terminal_reason":"api_error","usage":{}}"#;
        let transcript = parse(stream);
        assert_eq!(transcript.error.as_deref(), Some("API Error: Connection refused"));
        assert_eq!(transcript.session.as_deref(), Some("s2"));
    }

    #[test]
    fn retries_are_the_error_of_a_turn_that_never_ended() {
        let retry = |n: u32| {
            format!(
                "{{\"type\":\"system\",\"subtype\":\"api_retry\",\"attempt\":{n},\"max_retries\":10,\"error_status\":529,\"error\":\"overloaded\",\"session_id\":\"s4\"}}"
            )
        };
        let killed = format!("{}\n{}\n", retry(1), retry(2));
        assert_eq!(
            parse(&killed).error.as_deref(),
            Some("API request failed (attempt 2 of 10, status 529): overloaded")
        );
        let recovered = format!("{killed}{STREAM}");
        assert_eq!((parse(&recovered).error, parse(&recovered).answer.as_deref()), (None, Some("done")));
    }

    #[test]
    fn a_killed_turn_still_tells_its_session() {
        let transcript = parse("{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s3\"}\nnot json\n");
        assert_eq!((transcript.session.as_deref(), transcript.answer.as_deref()), (Some("s3"), None));
    }

    fn envs(command: &Command) -> BTreeMap<String, String> {
        command
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_string_lossy().into_owned(), v?.to_string_lossy().into_owned())))
            .collect()
    }

    fn harness(dir: &std::path::Path, config: AgentConfig) -> crate::cli::ClaudeHarness {
        crate::testutil::fake_cli(dir, config)
    }

    #[test]
    fn the_command_line_resumes_sets_the_model_and_ends_with_the_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let config = AgentConfig {
            model: Some("sonnet".into()),
            args: vec!["--effort".into(), "low".into()],
            ..AgentConfig::default()
        };
        let mut job = job("agent", json!({"agent": {"prompt": "-x: do it"}}), json!({}), dir.path());
        job.session = Some("abc".into());
        let command = harness(dir.path(), config).command(&job).unwrap();
        let args: Vec<&OsStr> = command.get_args().collect();
        let expected = [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "bypassPermissions",
            "--model",
            "sonnet",
            "--resume",
            "abc",
            "--effort",
            "low",
            "--",
            "-x: do it",
        ];
        assert_eq!(args, expected.map(OsStr::new));
        assert_eq!(command.get_current_dir(), Some(dir.path()));
    }

    #[test]
    fn the_environment_isolates_the_home_and_points_at_the_gateway() {
        let dir = tempfile::tempdir().unwrap();
        let config = AgentConfig {
            base_url: Some("http://127.0.0.1:9999".into()),
            env: BTreeMap::from([("DISABLE_TELEMETRY".into(), "0".into())]),
            ..AgentConfig::default()
        };
        let job = job("agent", json!({"agent": {"prompt": "hi"}}), json!({}), dir.path());
        let env = envs(&harness(dir.path(), config).command(&job).unwrap());
        let home = dir.path().join(".tutti/harness-home/claude");
        assert!(home.is_dir());
        assert_eq!(env["HOME"], home.display().to_string());
        assert_eq!(env["CLAUDE_CONFIG_DIR"], home.join(".claude").display().to_string());
        assert_eq!(env["ANTHROPIC_BASE_URL"], "http://127.0.0.1:9999");
        assert_eq!(
            (env["IS_SANDBOX"].as_str(), env["DISABLE_TELEMETRY"].as_str()),
            ("1", "0"),
            "the harness's env wins"
        );
        assert_eq!(env["TUTTI_EFFECT_ID"], "effect-1");
        if std::env::var_os("ANTHROPIC_API_KEY").is_none() {
            assert_eq!(env["ANTHROPIC_API_KEY"], agent::PLACEHOLDER_KEY);
        }
    }

    #[test]
    fn a_missing_key_variable_and_a_missing_cli_cannot_start() {
        let dir = tempfile::tempdir().unwrap();
        let config = AgentConfig { api_key_env: Some("TUTTI_TEST_NO_SUCH_KEY".into()), ..AgentConfig::default() };
        let job = job("agent", json!({}), json!({}), dir.path());
        let err = harness(dir.path(), config).command(&job).unwrap_err();
        assert_eq!(err.to_string(), "harness claude: api_key_env names $TUTTI_TEST_NO_SUCH_KEY, which is not set");
        let ghost = crate::cli::ClaudeHarness::new(
            "ghost",
            AgentConfig { binary: Some("/nonexistent/claude".into()), ..AgentConfig::default() },
        );
        let err = ghost.command(&job).unwrap_err().to_string();
        assert!(
            err.starts_with("harness ghost: cannot find `/nonexistent/claude`")
                && err.contains("npm i -g @anthropic-ai/claude-code"),
            "{err}"
        );
    }
}
