//! The `pi` harness: runs the pi coding agent headlessly for `agent` tasks (`pi -p --mode json`, the prompt on
//! stdin), with its own `PI_CODING_AGENT_DIR` whose `models.json` tutti writes (a `tutti` provider for a
//! gateway), and reads the session id, final answer, usage, cost and errors from its event stream. pi exits 0
//! when the API fails, so the error is read from the events only. Running the process and building the
//! outcome are `agent.rs`'s; the facts about the CLI come from `harness-clis.md`.

use std::fs;
use std::process::Command;

use serde_json::{Value, json};
use tutti_engine::harness::Error as StartError;
use tutti_journal::Usage;

use crate::agent::PROVIDER;
use crate::agent::{self, AgentConfig, Transcript, count};
use crate::cli::{Cli, Pi, SessionFilesAt, Setup};

/// What pi can do unless its table lists `capabilities`: read, bash, edit and write, and sessions; no web
/// tool and no MCP.
const CAPABILITIES: &[&str] = &["edit", "shell", "resume", "structured-output"];

/// The pi coding agent (`@mariozechner/pi-coding-agent`).
///
/// Command line: `pi -p --mode json [--model tutti/MODEL | --model MODEL] [--session SESSION] ARGS...`, in the
/// project directory, with the prompt written to stdin and stdin closed (pi waits for EOF on an open pipe,
/// and refuses a prompt argument that starts with `-`). Environment: `HOME` and `PI_CODING_AGENT_DIR` in
/// `.tutti/harness-home/NAME`, `PI_OFFLINE=1`, `PI_TELEMETRY=0`. With `base_url`, `models.json` there has a
/// `tutti` provider speaking Chat Completions at the root URL plus `/v1`, serving `model`.
impl Cli for Pi {
    const PROGRAM: &'static str = "pi";
    const PACKAGE: &'static str = "@mariozechner/pi-coding-agent";
    /// 175–186 MB measured.
    const MEMORY_MB: u64 = 190;
    /// pi has no web tool: its default capabilities leave out `web`.
    const CAPABILITIES: &'static [&'static str] = CAPABILITIES;
    const PROMPT_ON_STDIN: bool = true;
    /// Sessions: `.pi/agent/sessions/--<cwd>--/<time>_<session>.jsonl`.
    const SESSIONS: Option<SessionFilesAt> = Some((".pi/agent/sessions", session_file));

    fn command(&self, turn: &Setup<'_>) -> Result<Command, StartError> {
        let (config, job, home) = (turn.config, turn.job, &turn.home);
        agent::api_key(turn.name, config, "")?;
        let model = agent::provider_model(turn, "pi")?;
        let dir = home.join(".pi/agent");
        let models = serde_json::to_string_pretty(&models_json(config)).unwrap_or_default();
        fs::create_dir_all(&dir)
            .and_then(|()| agent::write_atomically(&dir.join("models.json"), &models))
            .map_err(|e| turn.home_error(e))?;

        let mut command = Command::new(&turn.binary);
        command.args(["-p", "--mode", "json"]);
        if let Some(model) = model {
            command.arg("--model").arg(model);
        }
        if let Some(session) = &job.session {
            command.arg("--session").arg(session);
        }
        command.args(&config.args);
        command.envs(agent::home_env(home)).env("PI_CODING_AGENT_DIR", &dir);
        command.env("PI_OFFLINE", "1").env("PI_TELEMETRY", "0");
        agent::finish_env(&mut command, job, config, agent::direct_keys(config));
        Ok(command)
    }

    fn parse(stdout: &str) -> Transcript {
        parse(stdout)
    }
}

fn session_file(name: &str, id: &str) -> bool {
    name.ends_with(&format!("_{id}.jsonl"))
}

/// `models.json`, rewritten before every turn: the `tutti` provider when `base_url` is set.
fn models_json(config: &AgentConfig) -> Value {
    let (Some(base), Some(model)) = (&config.base_url, &config.model) else {
        return json!({ "providers": {} });
    };
    let key = config.api_key_env.as_deref().unwrap_or(agent::PLACEHOLDER_KEY);
    json!({ "providers": { PROVIDER: {
        "baseUrl": agent::api_url(base, "/v1"),
        "api": "openai-completions",
        "apiKey": key,
        // Many gateways and local servers reject the `developer` role and `reasoning_effort`.
        "compat": { "supportsDeveloperRole": false, "supportsReasoningEffort": false },
        "models": [{ "id": model }],
    }}})
}

/// Read a `--mode json` transcript: `session` has the id; each assistant `message_end` adds its `usage`, and
/// the last one decides: its text is the answer, or, with `stopReason` `error` or `aborted`, its
/// `errorMessage` is the error (pi still exits 0).
fn parse(stdout: &str) -> Transcript {
    let mut transcript = Transcript::default();
    let mut total: Option<Usage> = None;
    for event in agent::events(stdout) {
        match event["type"].as_str().unwrap_or("") {
            "session" => transcript.session = event["id"].as_str().map(String::from),
            "message_end" if event["message"]["role"] == "assistant" => {
                let message = &event["message"];
                let total = total.get_or_insert_with(Usage::default);
                add(total, &message["usage"]);
                if total.model.is_none() {
                    total.model = message["model"].as_str().map(String::from);
                }
                let stop = message["stopReason"].as_str().unwrap_or("");
                if stop == "error" || stop == "aborted" {
                    let error = message["errorMessage"].as_str().unwrap_or("the model request failed");
                    transcript.error = Some(error.to_string());
                    transcript.answer = None;
                } else {
                    transcript.error = None;
                    transcript.answer = Some(text(message));
                }
            }
            _ => {}
        }
    }
    transcript.usage = total;
    transcript
}

/// The text parts of a message, joined.
fn text(message: &Value) -> String {
    let parts = message["content"].as_array().into_iter().flatten();
    parts.filter(|p| p["type"] == "text").filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("")
}

/// pi's usage of one message: `input` is the uncached prompt; the cost is from `models.json` prices.
fn add(total: &mut Usage, u: &Value) {
    total.input_tokens += count(u, "input");
    total.output_tokens += count(u, "output");
    total.cache_read_tokens += count(u, "cacheRead");
    total.cache_write_tokens += count(u, "cacheWrite");
    if let Some(usd) = u["cost"]["total"].as_f64().filter(|usd| *usd > 0.0) {
        total.cost_usd = Some(total.cost_usd.unwrap_or(0.0) + usd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentConfig;
    use crate::testutil::job;
    use std::ffi::OsStr;
    use tutti_engine::Harness;

    fn assistant(content: Value, stop: &str, extra: Value) -> String {
        let usage = json!({"input":14,"output":7,"cacheRead":5,"cacheWrite":0,"totalTokens":26,"cost":{"total":0.5}});
        let mut message = json!({"role": "assistant", "content": content, "usage": usage, "stopReason": stop});
        message.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"type": "message_end", "message": message}).to_string()
    }

    #[test]
    fn a_transcript_gives_answer_session_and_summed_usage() {
        let stream = [
            r#"{"type":"session","version":3,"id":"01a2143f","cwd":"/w"}"#.to_string(),
            r#"{"type":"message_end","message":{"role":"user","content":[{"type":"text","text":"go"}]}}"#.into(),
            assistant(json!([{"type":"toolCall","name":"write","arguments":{}}]), "toolUse", json!({})),
            assistant(json!([{"type":"text","text":"done"}]), "stop", json!({})),
        ]
        .join("\n");
        let transcript = parse(&stream);
        assert_eq!(transcript.session.as_deref(), Some("01a2143f"));
        assert_eq!((transcript.answer.as_deref(), transcript.error.as_deref()), (Some("done"), None));
        let usage = Usage {
            input_tokens: 28,
            output_tokens: 14,
            cache_read_tokens: 10,
            cache_write_tokens: 0,
            cost_usd: Some(1.0),
            ..Usage::default()
        };
        assert_eq!(transcript.usage, Some(usage));
    }

    #[test]
    fn a_failed_last_message_is_an_error_though_pi_exits_0() {
        let failed = assistant(json!([]), "error", json!({"errorMessage": "Connection error."}));
        let stream = format!(
            "{{\"type\":\"session\",\"id\":\"s\"}}\n{failed}\n{{\"type\":\"auto_retry_end\",\"success\":false}}"
        );
        assert_eq!((parse(&stream).error.as_deref(), parse(&stream).answer), (Some("Connection error."), None));
        let recovered = format!("{stream}\n{}", assistant(json!([{"type":"text","text":"ok"}]), "stop", json!({})));
        assert_eq!((parse(&recovered).error, parse(&recovered).answer.as_deref()), (None, Some("ok")));
    }

    fn harness(dir: &std::path::Path, config: AgentConfig) -> crate::cli::PiHarness {
        crate::testutil::fake_cli(dir, config)
    }

    #[test]
    fn a_gateway_becomes_a_provider_in_models_json() {
        let dir = tempfile::tempdir().unwrap();
        let config = AgentConfig {
            base_url: Some("http://127.0.0.1:9999".into()),
            model: Some("m".into()),
            ..AgentConfig::default()
        };
        let mut job = job("agent", json!({"agent": {"prompt": "hi"}}), json!({}), dir.path());
        job.session = Some("abc".into());
        let command = harness(dir.path(), config).command(&job).unwrap();
        let args: Vec<&OsStr> = command.get_args().collect();
        assert_eq!(args, ["-p", "--mode", "json", "--model", "tutti/m", "--session", "abc"].map(OsStr::new));
        let models = dir.path().join(".tutti/harness-home/pi/.pi/agent/models.json");
        let models: Value = serde_json::from_str(&fs::read_to_string(models).unwrap()).unwrap();
        let provider = &models["providers"]["tutti"];
        assert_eq!(
            (provider["baseUrl"].as_str(), provider["apiKey"].as_str()),
            (Some("http://127.0.0.1:9999/v1"), Some(agent::PLACEHOLDER_KEY))
        );
        assert_eq!(provider["models"], json!([{"id": "m"}]));
    }

    #[test]
    fn pi_has_no_web_capability_unless_configured() {
        assert_eq!(crate::cli::PiHarness::new("pi", AgentConfig::default()).capabilities(), CAPABILITIES);
        let listed = AgentConfig { capabilities: vec!["web".into()], ..AgentConfig::default() };
        assert_eq!(crate::cli::PiHarness::new("pi", listed).capabilities(), ["web"]);
    }

    #[test]
    fn a_gateway_without_a_model_cannot_start() {
        let dir = tempfile::tempdir().unwrap();
        let config = AgentConfig { base_url: Some("http://127.0.0.1:9999".into()), ..AgentConfig::default() };
        let job = job("agent", json!({}), json!({}), dir.path());
        let err = harness(dir.path(), config).command(&job).unwrap_err().to_string();
        assert!(err.starts_with("harness pi: `base_url` needs `model`"), "{err}");
    }
}
