//! The `opencode` harness: runs opencode headlessly for `agent` tasks (`opencode run --format json`, the
//! prompt on stdin), with its configuration passed inline in `OPENCODE_CONFIG_CONTENT` (a `tutti` provider for
//! a gateway, updates and sharing off), and reads the session id, final answer, usage, cost and errors from
//! its event stream. Running the process and building the outcome are `agent.rs`'s; the facts about the CLI
//! come from `harness-clis.md`.

use std::process::Command;

use serde_json::{Value, json};
use tutti_engine::harness::Error as StartError;
use tutti_engine::{Harness, Job, Reporter, Running};
use tutti_journal::Usage;

use crate::agent::{self, AgentConfig, McpServer, Transcript, Turn, count};

/// The CLI's name on `PATH`, and its npm package.
const PROGRAM: &str = "opencode";
const PACKAGE: &str = "opencode-ai";

/// The provider tutti defines for `base_url`.
const PROVIDER: &str = "tutti";

/// The API key when a gateway is configured without `api_key_env`; local model servers ignore it.
const PLACEHOLDER_KEY: &str = "tutti-no-key";

/// opencode (`opencode-ai`) as a harness.
///
/// Command line: `opencode run --format json [-m tutti/MODEL | -m MODEL] [-s SESSION] ARGS...`, in the project
/// directory, with the prompt written to stdin and stdin closed (a prompt argument reaches the model quoted,
/// and opencode waits for EOF on an open pipe). Environment: `HOME` and the XDG folders in
/// `.tutti/harness-home/NAME` (opencode keeps its sessions in `~/.local/share/opencode/opencode.db`),
/// models.dev fetching, auto-update and LSP downloads off, and `OPENCODE_CONFIG_CONTENT`: with `base_url`, a
/// `tutti` provider (`@ai-sdk/openai-compatible`, Chat Completions) at the root URL plus `/v1`, serving
/// `model`.
#[derive(Clone, Debug)]
pub struct OpencodeHarness {
    name: String,
    config: AgentConfig,
}

agent::cli_constructors!(OpencodeHarness);

impl OpencodeHarness {
    fn command(&self, job: &Job) -> Result<Command, StartError> {
        let (binary, home) = agent::cli_and_home(&self.name, PROGRAM, PACKAGE, &self.config, job)?;
        agent::api_key(&self.name, &self.config, "")?;
        let model = match (&self.config.base_url, &self.config.model) {
            (Some(_), Some(model)) => Some(format!("{PROVIDER}/{model}")),
            (Some(_), None) => {
                return Err(StartError::Invalid(format!(
                    "harness {}: `base_url` needs `model`: opencode asks a gateway for a model by name",
                    self.name
                )));
            }
            (None, model) => model.clone(),
        };
        let mut command = Command::new(binary);
        command.args(["run", "--format", "json"]);
        if let Some(model) = model {
            command.arg("-m").arg(model);
        }
        if let Some(session) = &job.session {
            command.arg("-s").arg(session);
        }
        command.args(&self.config.args);
        let config = self.config_json(agent::tutti_mcp(job).as_ref());
        command.envs(agent::home_env(&home)).env("OPENCODE_CONFIG_CONTENT", config.to_string());
        for var in ["OPENCODE_DISABLE_MODELS_FETCH", "OPENCODE_DISABLE_AUTOUPDATE", "OPENCODE_DISABLE_LSP_DOWNLOAD"] {
            command.env(var, "1");
        }
        // With a gateway, the key is `api_key_env` alone; talking to providers directly, their usual keys.
        let keys = if self.config.base_url.is_some() { &[][..] } else { agent::PROVIDER_KEYS };
        agent::finish_env(&mut command, job, &self.config, keys);
        Ok(command)
    }

    /// The configuration in `OPENCODE_CONFIG_CONTENT`: the `tutti` provider when `base_url` is set, and
    /// tutti's messaging bridge as the local MCP server `tutti` (tools `tutti_send`, ...).
    fn config_json(&self, mcp: Option<&McpServer>) -> Value {
        let mut config = json!({ "autoupdate": false, "share": "disabled" });
        if let Some(server) = mcp {
            let mut command = vec![server.command.to_string_lossy().into_owned()];
            command.extend(server.args.iter().cloned());
            let env: serde_json::Map<String, Value> =
                server.env.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
            config["mcp"] = json!({ agent::MCP_NAME: { "type": "local", "command": command, "environment": env } });
        }
        if let (Some(base), Some(model)) = (&self.config.base_url, &self.config.model) {
            let key =
                self.config.api_key_env.as_ref().map_or(PLACEHOLDER_KEY.to_string(), |var| format!("{{env:{var}}}"));
            config["provider"] = json!({ PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "tutti",
                "options": { "baseURL": agent::api_url(base, "/v1"), "apiKey": key },
                "models": { model: { "name": model } },
            }});
        }
        config
    }
}

impl Harness for OpencodeHarness {
    agent::cli_harness_basics!();

    fn capabilities(&self) -> Vec<String> {
        agent::capabilities(&self.config)
    }

    /// Peak RSS of one turn (500–720 MB measured; docs/harnesses.md): without `max_parallel`, the number of
    /// turns at once follows the available memory.
    fn memory_per_attempt_mb(&self) -> Option<u64> {
        Some(720)
    }

    fn start(&self, job: Job, reporter: Reporter) -> Result<Box<dyn Running>, StartError> {
        let turn =
            Turn::new(&self.name, &self.config, &job, self.command(&job)?, Box::new(parse)).prompt_on_stdin(&job);
        Ok(Box::new(agent::start(turn, reporter)?))
    }
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

    fn harness(dir: &std::path::Path, config: AgentConfig) -> OpencodeHarness {
        std::fs::write(dir.join("opencode"), "").unwrap();
        std::fs::set_permissions(dir.join("opencode"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        OpencodeHarness::new("opencode", AgentConfig { binary: Some(dir.join("opencode")), ..config })
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
