//! The `gemini` harness: runs Gemini CLI headlessly for `agent` tasks (`gemini --prompt=… -o stream-json`),
//! in a private home whose `.gemini/settings.json` tutti writes (API-key auth, telemetry and updates off),
//! pointed at a gateway by `GOOGLE_GEMINI_BASE_URL`, and reads the session id, final answer, usage and errors
//! from its event stream. Running the process and building the outcome are `agent.rs`'s; the facts about the
//! CLI come from `harness-clis.md`.

use std::fs;
use std::process::Command;

use serde_json::{Value, json};
use tutti_engine::harness::Error as StartError;
use tutti_journal::Usage;

use crate::agent::{self, McpServer, Transcript, count};
use crate::cli::{Cli, Gemini, SessionFilesAt, Setup};

/// The model passed when `model` is not set: without `-m` Gemini CLI first makes a routing call to pick one.
const DEFAULT_MODEL: &str = "gemini-2.5-flash";

/// Gemini CLI (`@google/gemini-cli`).
///
/// Command line: `gemini -o stream-json --approval-mode yolo -m MODEL [--resume SESSION] ARGS...
/// --prompt=PROMPT`, in the project directory, with stdin from `/dev/null`. Environment: `HOME` in
/// `.tutti/harness-home/NAME` with a `.gemini/settings.json` selecting API-key auth (a base URL alone selects
/// a gateway auth that headless mode refuses), `GEMINI_CLI_NO_RELAUNCH=true` (a relaunched gemini ignores
/// SIGTERM), `GEMINI_CLI_TRUST_WORKSPACE=true`, and with `base_url` set, `GOOGLE_GEMINI_BASE_URL` (a root URL
/// as it is: the CLI adds `/v1beta`) and `GEMINI_API_KEY`.
impl Cli for Gemini {
    const PROGRAM: &'static str = "gemini";
    const PACKAGE: &'static str = "@google/gemini-cli";
    /// 257 MB measured.
    const MEMORY_MB: u64 = 260;
    /// Chats: `.gemini/tmp/<project>/chats/session-<time>-<first 8 of the id>.jsonl`, a new file per resume.
    const SESSIONS: Option<SessionFilesAt> = Some((".gemini/tmp", chat_file));

    fn command(&self, turn: &Setup<'_>) -> Result<Command, StartError> {
        let (config, job, home) = (turn.config, turn.job, &turn.home);
        let key = agent::api_key(turn.name, config, "GEMINI_API_KEY")?;
        let settings = serde_json::to_string_pretty(&settings(agent::tutti_mcp(job).as_ref())).unwrap_or_default();
        fs::create_dir_all(home.join(".gemini"))
            .and_then(|()| agent::write_atomically(&home.join(".gemini/settings.json"), &settings))
            .map_err(|e| turn.home_error(e))?;

        let mut command = Command::new(&turn.binary);
        command.args(["-o", "stream-json", "--approval-mode", "yolo", "-m"]);
        command.arg(config.model.as_deref().unwrap_or(DEFAULT_MODEL));
        if let Some(session) = &job.session {
            command.arg("--resume").arg(session);
        }
        // `--prompt=` keeps a prompt that starts with `-` from being read as an option.
        command.args(&config.args).arg(format!("--prompt={}", agent::prompt(job)));

        command.envs(agent::home_env(home));
        for (var, value) in [
            ("GEMINI_CLI_NO_RELAUNCH", "true"),
            ("GEMINI_CLI_TRUST_WORKSPACE", "true"),
            ("GEMINI_TELEMETRY_ENABLED", "false"),
        ] {
            command.env(var, value);
        }
        agent::gateway_env(&mut command, config, key, "GOOGLE_GEMINI_BASE_URL", "GEMINI_API_KEY");
        agent::finish_env(&mut command, job, config, &[]);
        Ok(command)
    }

    fn parse(stdout: &str) -> Transcript {
        parse(stdout)
    }
}

fn chat_file(name: &str, id: &str) -> bool {
    name.starts_with("session-") && id.get(..8).is_some_and(|short| name.contains(short))
}

/// `~/.gemini/settings.json`, rewritten before every turn, with tutti's messaging bridge under `mcpServers`
/// (tools `mcp_tutti_send`, ...). Every turn of the harness reads this one file, so the bridge's `TUTTI_*`
/// variables are written as `$VAR`, which Gemini CLI expands from each turn's own environment.
fn settings(mcp: Option<&McpServer>) -> Value {
    let mut settings = json!({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": false},
        "telemetry": {"enabled": false},
        "general": {"disableAutoUpdate": true, "disableUpdateNag": true},
    });
    if let Some(server) = mcp {
        let env: serde_json::Map<String, Value> =
            server.env.iter().map(|(k, _)| (k.clone(), Value::from(format!("${k}")))).collect();
        settings["mcpServers"] = json!({ agent::MCP_NAME: {
            "command": server.command, "args": server.args, "env": env,
        }});
    }
    settings
}
/// Read a `stream-json` transcript: `init` has the session id; assistant `message` deltas after the last tool
/// call make the answer; `result` has `status` (`error` with `error.message`) and `stats` for the whole
/// invocation. An `error` event of severity `error` is the error when no successful `result` follows.
fn parse(stdout: &str) -> Transcript {
    let mut transcript = Transcript::default();
    let mut answer = String::new();
    let mut last_error = None;
    let mut succeeded = false;
    let mut model = None;
    for event in agent::events(stdout) {
        match event["type"].as_str().unwrap_or("") {
            "init" => {
                transcript.session = event["session_id"].as_str().map(String::from);
                model = event["model"].as_str().map(String::from);
            }
            "message" if event["role"] == "assistant" => answer.push_str(event["content"].as_str().unwrap_or("")),
            // Text before a tool call is narration; the answer is what the model says after the last one.
            "tool_use" | "tool_result" => answer.clear(),
            "error" if event["severity"] == "error" => last_error = event["message"].as_str().map(String::from),
            "result" => {
                transcript.usage = Some(Usage { model: model.clone(), ..usage(&event["stats"]) });
                if event["status"] == "success" {
                    succeeded = true;
                } else {
                    let message = event["error"]["message"].as_str().unwrap_or("the turn failed");
                    transcript.error = Some(message.to_string());
                }
            }
            _ => {}
        }
    }
    if !succeeded && transcript.error.is_none() {
        transcript.error = last_error;
    }
    transcript.answer = (succeeded || !answer.is_empty()).then_some(answer);
    transcript
}

/// Gemini's stats: `input_tokens` is the whole prompt, `cached` its cached part, `input` the rest. The Gemini
/// API reports no cache writes and no cost.
fn usage(stats: &Value) -> Usage {
    let cached = count(stats, "cached");
    Usage {
        input_tokens: count(stats, "input_tokens").saturating_sub(cached),
        output_tokens: count(stats, "output_tokens"),
        cache_read_tokens: cached,
        cache_write_tokens: 0,
        cost_usd: None,
        model: None,
        priced: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentConfig;
    use crate::testutil::job;
    use std::ffi::OsStr;

    /// A stream as Gemini CLI 0.61.0 printed it for a write_file call against the mock (timestamps dropped).
    const STREAM: &str = r#"{"type":"init","session_id":"b50f7a6a","model":"gemini-2.5-flash"}
{"type":"message","role":"user","content":"Create hello.txt please"}
{"type":"message","role":"assistant","content":"Sure.","delta":true}
{"type":"tool_use","tool_name":"write_file","tool_id":"write_file_1","parameters":{"content":"hi\n","file_path":"hello.txt"}}
{"type":"tool_result","tool_id":"write_file_1","status":"success"}
{"type":"message","role":"assistant","content":"do","delta":true}
{"type":"message","role":"assistant","content":"ne","delta":true}
{"type":"result","status":"success","stats":{"total_tokens":52,"input_tokens":38,"output_tokens":14,"cached":10,"input":28,"duration_ms":423,"tool_calls":1}}
"#;

    #[test]
    fn a_transcript_gives_answer_session_and_usage() {
        let transcript = parse(STREAM);
        assert_eq!(transcript.session.as_deref(), Some("b50f7a6a"));
        assert_eq!((transcript.answer.as_deref(), transcript.error.as_deref()), (Some("done"), None));
        let usage = Usage {
            input_tokens: 28,
            output_tokens: 14,
            cache_read_tokens: 10,
            model: Some("gemini-2.5-flash".into()),
            ..Usage::default()
        };
        assert_eq!(transcript.usage, Some(usage));
    }

    #[test]
    fn an_error_result_and_an_error_event_are_errors() {
        let failed = r#"{"type":"init","session_id":"s"}
{"type":"result","status":"error","error":{"type":"FatalAuthenticationError","message":"Invalid auth method selected."},"stats":{}}"#;
        assert_eq!(parse(failed).error.as_deref(), Some("Invalid auth method selected."));
        let killed = "{\"type\":\"init\",\"session_id\":\"s\"}\n{\"type\":\"error\",\"severity\":\"error\",\"message\":\"quota\"}\n";
        assert_eq!((parse(killed).error.as_deref(), parse(killed).answer), (Some("quota"), None));
        let warned = format!("{{\"type\":\"error\",\"severity\":\"error\",\"message\":\"retrying\"}}\n{STREAM}");
        assert_eq!(parse(&warned).error, None, "a successful result wins");
    }

    fn harness(dir: &std::path::Path, config: AgentConfig) -> crate::cli::GeminiHarness {
        crate::testutil::fake_cli(dir, config)
    }

    #[test]
    fn the_command_always_names_a_model_and_resumes_and_points_at_the_gateway() {
        let dir = tempfile::tempdir().unwrap();
        let config = AgentConfig { base_url: Some("http://127.0.0.1:9999/".into()), ..AgentConfig::default() };
        let mut job = job("agent", json!({"agent": {"prompt": "-x: do it"}}), json!({}), dir.path());
        job.session = Some("abc".into());
        let command = harness(dir.path(), config).command(&job).unwrap();
        let args: Vec<&OsStr> = command.get_args().collect();
        let expected = [
            "-o",
            "stream-json",
            "--approval-mode",
            "yolo",
            "-m",
            DEFAULT_MODEL,
            "--resume",
            "abc",
            "--prompt=-x: do it",
        ];
        assert_eq!(args, expected.map(OsStr::new));
        let env = |name: &str| command.get_envs().find(|(k, _)| *k == name).and_then(|(_, v)| v);
        assert_eq!(env("GOOGLE_GEMINI_BASE_URL"), Some(OsStr::new("http://127.0.0.1:9999")));
        assert_eq!(env("GEMINI_CLI_NO_RELAUNCH"), Some(OsStr::new("true")));
        let home = dir.path().join(".tutti/harness-home/gemini");
        assert_eq!(env("HOME"), Some(home.as_os_str()));
        let settings: Value =
            serde_json::from_str(&fs::read_to_string(home.join(".gemini/settings.json")).unwrap()).unwrap();
        assert_eq!(settings["security"]["auth"]["selectedType"], "gemini-api-key");
    }
}
