//! The `opencode` harness: runs opencode headlessly for `agent` tasks (`opencode run --format json`, the
//! prompt on stdin), with its configuration passed inline in `OPENCODE_CONFIG_CONTENT` (a `tutti` provider for
//! a gateway, updates and sharing off), and reads the session id, final answer, usage, cost and errors from
//! its event stream. Running the process and building the outcome are `agent.rs`'s; the facts about the CLI
//! come from `harness-clis.md`.

use std::process::Command;

use serde_json::{Value, json};
use tutti_engine::harness::Error as StartError;
use tutti_journal::Usage;

use crate::agent::PROVIDER;
use crate::agent::{self, AgentConfig, McpServer, Transcript, count};
use crate::cli::{Cli, Opencode, Setup};

/// opencode (`opencode-ai`).
///
/// Command line: `opencode run --format json [-m tutti/MODEL | -m MODEL] [-s SESSION] ARGS...`, in the project
/// directory, with the prompt written to stdin and stdin closed (a prompt argument reaches the model quoted,
/// and opencode waits for EOF on an open pipe). Environment: `HOME` and the XDG folders in
/// `.tutti/harness-home/NAME` (opencode keeps its sessions in `~/.local/share/opencode/opencode.db`),
/// models.dev fetching, auto-update and LSP downloads off, and `OPENCODE_CONFIG_CONTENT`: with `base_url`, a
/// `tutti` provider (`@ai-sdk/openai-compatible`, Chat Completions) at the root URL plus `/v1`, serving
/// `model`.
impl Cli for Opencode {
    const PROGRAM: &'static str = "opencode";
    const PACKAGE: &'static str = "opencode-ai";
    /// 500–720 MB measured.
    const MEMORY_MB: u64 = 720;
    const PROMPT_ON_STDIN: bool = true;

    fn command(&self, turn: &Setup<'_>) -> Result<Command, StartError> {
        let (config, job, home) = (turn.config, turn.job, &turn.home);
        agent::api_key(turn.name, config, "")?;
        let model = agent::provider_model(turn, "opencode")?;
        let mut command = Command::new(&turn.binary);
        command.args(["run", "--format", "json"]);
        if let Some(model) = model {
            command.arg("-m").arg(model);
        }
        if let Some(session) = &job.session {
            command.arg("-s").arg(session);
        }
        command.args(&config.args);
        let content = config_json(config, agent::tutti_mcp(job).as_ref());
        command.envs(agent::home_env(home)).env("OPENCODE_CONFIG_CONTENT", content.to_string());
        for var in ["OPENCODE_DISABLE_MODELS_FETCH", "OPENCODE_DISABLE_AUTOUPDATE", "OPENCODE_DISABLE_LSP_DOWNLOAD"] {
            command.env(var, "1");
        }
        agent::finish_env(&mut command, job, config, agent::direct_keys(config));
        Ok(command)
    }

    fn parse(stdout: &str) -> Transcript {
        parse(stdout)
    }
}

/// The configuration in `OPENCODE_CONFIG_CONTENT`: the `tutti` provider when `base_url` is set, and
/// tutti's messaging bridge as the local MCP server `tutti` (tools `tutti_send`, ...).
fn config_json(config: &AgentConfig, mcp: Option<&McpServer>) -> Value {
    let mut content = json!({ "autoupdate": false, "share": "disabled" });
    if let Some(server) = mcp {
        let mut command = vec![server.command.to_string_lossy().into_owned()];
        command.extend(server.args.iter().cloned());
        let env: serde_json::Map<String, Value> =
            server.env.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
        content["mcp"] = json!({ agent::MCP_NAME: { "type": "local", "command": command, "environment": env } });
    }
    if let (Some(base), Some(model)) = (&config.base_url, &config.model) {
        let key =
            config.api_key_env.as_ref().map_or(agent::PLACEHOLDER_KEY.to_string(), |var| format!("{{env:{var}}}"));
        content["provider"] = json!({ PROVIDER: {
            "npm": "@ai-sdk/openai-compatible",
            "name": "tutti",
            "options": { "baseURL": agent::api_url(base, "/v1"), "apiKey": key },
            "models": { model: { "name": model } },
        }});
    }
    content
}

/// Read a `--format json` transcript: every line has `sessionID`; `text` parts after the last tool call make
/// the answer; each `step_finish` adds its `tokens` and `cost`; an `error` event is the error.
fn parse(stdout: &str) -> Transcript {
    let mut transcript = Transcript::default();
    let mut answer: Option<String> = None;
    let mut total: Option<Usage> = None;
    for event in agent::events(stdout) {
        if let Some(id) = event["sessionID"].as_str() {
            transcript.session = Some(id.to_string());
        }
        let part = &event["part"];
        match event["type"].as_str().unwrap_or("") {
            "text" => answer.get_or_insert_default().push_str(part["text"].as_str().unwrap_or("")),
            "tool_use" => answer = None,
            "step_finish" => add(total.get_or_insert_with(Usage::default), part),
            "error" => {
                let error = &event["error"];
                let message = error["data"]["message"].as_str().or(error["message"].as_str());
                let name = error["name"].as_str().unwrap_or("error");
                transcript.error = Some(message.map_or(name.to_string(), |m| format!("{name}: {m}")));
            }
            _ => {}
        }
    }
    transcript.answer = answer;
    transcript.usage = total;
    transcript
}

/// One step's `tokens{input, output, reasoning, cache{read, write}}` and `cost`: `input` is the uncached
/// prompt.
fn add(total: &mut Usage, part: &Value) {
    let tokens = &part["tokens"];
    total.input_tokens += count(tokens, "input");
    total.output_tokens += count(tokens, "output");
    total.cache_read_tokens += count(&tokens["cache"], "read");
    total.cache_write_tokens += count(&tokens["cache"], "write");
    if let Some(usd) = part["cost"].as_f64().filter(|usd| *usd > 0.0) {
        total.cost_usd = Some(total.cost_usd.unwrap_or(0.0) + usd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentConfig;
    use crate::testutil::job;
    use std::ffi::OsStr;

    /// A stream as opencode 1.18.33 printed it for a write call against the mock (ids and times shortened).
    const STREAM: &str = r#"{"type":"step_start","sessionID":"ses_1","part":{"type":"step-start"}}
{"type":"text","sessionID":"ses_1","part":{"type":"text","text":"Writing it."}}
{"type":"tool_use","sessionID":"ses_1","part":{"type":"tool","tool":"write","callID":"call_mock8","state":{"status":"completed","input":{"content":"hi\n","filePath":"/w/hello.txt"},"output":"Wrote file successfully."}}}
{"type":"step_finish","sessionID":"ses_1","part":{"reason":"tool-calls","type":"step-finish","tokens":{"total":26,"input":14,"output":7,"reasoning":0,"cache":{"write":0,"read":5}},"cost":0}}
{"type":"step_start","sessionID":"ses_1","part":{"type":"step-start"}}
{"type":"text","sessionID":"ses_1","part":{"type":"text","text":"done"}}
{"type":"step_finish","sessionID":"ses_1","part":{"reason":"stop","type":"step-finish","tokens":{"total":26,"input":14,"output":7,"reasoning":0,"cache":{"write":0,"read":5}},"cost":0.25}}
"#;

    #[test]
    fn a_transcript_gives_answer_session_usage_and_cost() {
        let transcript = parse(STREAM);
        assert_eq!(transcript.session.as_deref(), Some("ses_1"));
        assert_eq!((transcript.answer.as_deref(), transcript.error.as_deref()), (Some("done"), None));
        let usage = Usage {
            input_tokens: 28,
            output_tokens: 14,
            cache_read_tokens: 10,
            cache_write_tokens: 0,
            cost_usd: Some(0.25),
            ..Usage::default()
        };
        assert_eq!(transcript.usage, Some(usage));
    }

    #[test]
    fn an_error_event_is_the_error() {
        let stream = r#"{"type":"error","sessionID":"ses_2","error":{"name":"APIError","data":{"message":"Cannot connect to API","isRetryable":true}}}"#;
        let transcript = parse(stream);
        assert_eq!(transcript.error.as_deref(), Some("APIError: Cannot connect to API"));
        assert_eq!((transcript.session.as_deref(), transcript.answer), (Some("ses_2"), None));
    }

    fn harness(dir: &std::path::Path, config: AgentConfig) -> crate::cli::OpencodeHarness {
        crate::testutil::fake_cli(dir, config)
    }

    #[test]
    fn a_gateway_becomes_a_provider_in_the_inline_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = AgentConfig {
            base_url: Some("http://127.0.0.1:9999".into()),
            model: Some("m".into()),
            api_key_env: Some("PATH".into()),
            ..AgentConfig::default()
        };
        let mut job = job("agent", json!({"agent": {"prompt": "hi"}}), json!({}), dir.path());
        job.session = Some("ses_1".into());
        let command = harness(dir.path(), config).command(&job).unwrap();
        let args: Vec<&OsStr> = command.get_args().collect();
        assert_eq!(args, ["run", "--format", "json", "-m", "tutti/m", "-s", "ses_1"].map(OsStr::new));
        let content = command.get_envs().find(|(k, _)| *k == "OPENCODE_CONFIG_CONTENT").and_then(|(_, v)| v);
        let config: Value = serde_json::from_str(content.unwrap().to_str().unwrap()).unwrap();
        let options = &config["provider"]["tutti"]["options"];
        assert_eq!(options, &json!({"baseURL": "http://127.0.0.1:9999/v1", "apiKey": "{env:PATH}"}));
        assert_eq!(config["autoupdate"], false);
    }
}
