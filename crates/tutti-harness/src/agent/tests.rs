//! Unit tests of what the agent-CLI adapters share: configuration, outcomes built from transcripts, prompts, JSON
//! in answers, and the environment a CLI gets.
use super::*;
use crate::testutil::job;

fn exited(code: i32, stdout: &str, stderr: &str) -> io::Result<Exit> {
    Ok(Exit { code: Some(code), signal: None, stdout: stdout.into(), stderr: stderr.into(), stopped: None })
}

fn answered(text: &str) -> Transcript {
    Transcript { session: Some("s-1".into()), answer: Some(text.into()), usage: None, error: None }
}

const HOUR: Duration = DEFAULT_TIMEOUT;

#[test]
fn a_root_url_gets_the_prefix_and_a_url_with_a_path_is_kept() {
    assert_eq!(api_url("http://127.0.0.1:8080", "/v1"), "http://127.0.0.1:8080/v1");
    assert_eq!(api_url("http://127.0.0.1:8080/", "/v1"), "http://127.0.0.1:8080/v1");
    assert_eq!(api_url("https://gw.example.com/openai/v1/", "/v1"), "https://gw.example.com/openai/v1");
    assert_eq!(api_url("http://localhost:4000", ""), "http://localhost:4000");
}

#[test]
fn an_answer_becomes_text() {
    let value = outcome("claude", exited(0, "", ""), &answered("hi"), None, HOUR).unwrap();
    assert_eq!(value, json!({"text": "hi"}));
}

#[test]
fn with_a_schema_the_json_in_the_answer_is_the_result() {
    let schema = json!({"type": "object"});
    let fenced = "Here it is:\n```json\n{\"n\": 3}\n```\n";
    let value = outcome("codex", exited(0, "", ""), &answered(fenced), Some(&schema), HOUR).unwrap();
    assert_eq!(value, json!({"n": 3}));
    let failure = outcome("codex", exited(0, "", ""), &answered("no idea"), Some(&schema), HOUR).unwrap_err();
    assert!(matches!(&failure, Failure::Output { raw, .. } if raw["answer"] == "no idea"), "{failure:?}");
    let error = failure.into_error();
    assert_eq!(error.name, "OutputError");
    assert_eq!(error.data, Some(json!({"answer": "no idea"})));
}

#[test]
fn json_is_found_in_fences_and_prose() {
    assert_eq!(json_in(" {\"a\": 1} "), Some(json!({"a": 1})));
    assert_eq!(json_in("```\n[1]\n```"), Some(json!([1])));
    assert_eq!(json_in("```json\n{\"a\": 1}\n```\nand\n```json\n{\"a\": 2}\n```"), Some(json!({"a": 2})));
    assert_eq!(json_in("The result:\n{\"ok\": true}"), Some(json!({"ok": true})));
    assert_eq!(json_in("I counted 42"), None);
}

#[test]
fn an_error_in_the_events_wins_over_exit_code_zero() {
    let transcript =
        Transcript { error: Some("API Error: 500".into()), session: Some("s".into()), ..Transcript::default() };
    let error = outcome("pi", exited(0, "", "warn"), &transcript, None, HOUR).unwrap_err().into_error();
    assert_eq!((error.name.as_str(), error.message.as_str()), ("AgentError", "harness pi: API Error: 500"));
    assert_eq!(error.data.unwrap()["session"], json!("s"));
}

#[test]
fn a_failed_exit_and_a_missing_answer_are_errors() {
    let error =
        outcome("claude", exited(2, "junk", "boom"), &Transcript::default(), None, HOUR).unwrap_err().into_error();
    assert_eq!((error.name.as_str(), error.message.as_str()), ("HarnessError", "harness claude exited with code 2"));
    assert_eq!(error.data.unwrap()["stderr"], json!("boom"));
    let error = outcome("claude", exited(0, "", ""), &Transcript::default(), None, HOUR).unwrap_err().into_error();
    assert_eq!((error.name.as_str(), error.message.as_str()), ("OutputError", "harness claude gave no final answer"));
}

#[test]
fn a_timeout_carries_the_last_error_the_events_reported() {
    let exit = Exit {
        code: None,
        signal: Some(libc::SIGTERM),
        stdout: String::new(),
        stderr: String::new(),
        stopped: Some(Stop::TimedOut),
    };
    let transcript = Transcript { error: Some("Reconnecting...".into()), ..Transcript::default() };
    let error = outcome("codex", Ok(exit), &transcript, None, Duration::from_millis(500)).unwrap_err().into_error();
    assert_eq!((error.name.as_str(), error.message.as_str()), ("TimeoutError", "harness codex timed out after 500 ms"));
    assert_eq!(error.data.unwrap()["lastError"], json!("Reconnecting..."));
}

#[test]
fn the_prompt_carries_messages_and_asks_for_json_when_there_is_a_schema() {
    let dir = tempfile::tempdir().unwrap();
    let mut job =
        job("agent", json!({"agent": {"prompt": "Count.", "outputSchema": {"type": "object"}}}), json!({}), dir.path());
    job.messages.push(tutti_engine::harness::Inbound { from: "coordinator".into(), body: json!("hurry") });
    let text = prompt(&job);
    assert!(
        text.starts_with(
            "Messages for you:\n- from coordinator: hurry\n\nCount.\n\nWhen you are done, answer with only a JSON value"
        ),
        "{text}"
    );
    assert!(text.ends_with("{\n  \"type\": \"object\"\n}\n"), "{text}");
}

#[test]
fn the_messaging_bridge_is_the_tutti_on_the_effects_path_with_its_variables() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut job = job("agent", json!({}), json!({}), dir.path());
    assert_eq!(tutti_mcp(&job), None, "outside `tutti run`");
    let tutti = dir.path().join("tutti");
    fs::write(&tutti, "").unwrap();
    fs::set_permissions(&tutti, fs::Permissions::from_mode(0o755)).unwrap();
    job.env = vec![
        ("PATH".into(), format!("/nonexistent:{}", dir.path().display())),
        ("TUTTI_HOME".into(), "/p".into()),
        ("TUTTI_MSG_TOKEN".into(), "tok".into()),
    ];
    let server = tutti_mcp(&job).unwrap();
    assert_eq!((server.command, server.args), (tutti, vec!["mcp".to_string()]));
    let names: Vec<&str> = server.env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["TUTTI_RUN_ID", "TUTTI_EFFECT_ID", "TUTTI_TASK_ID", "TUTTI_ATTEMPT", "TUTTI_HOME", "TUTTI_MSG_TOKEN"]
    );
}

#[test]
fn io_hints_are_in_the_prompt_and_outputs_ask_for_json() {
    let mut job = crate::testutil::job(
        "agent",
        json!({"agent": {"prompt": "Do it"}, "io": {"outputs": {"done": "boolean"}}}),
        json!(null),
        Path::new("/tmp"),
    );
    let text = prompt(&job);
    assert!(text.starts_with("Do it"), "{text}");
    assert!(text.contains("Inputs and outputs of this task:") && text.contains("shaped like these outputs"), "{text}");
    job.task = json!({"agent": {"prompt": "Do it", "outputSchema": {"type": "object"}}, "io": {"outputs": {"done": "boolean"}}});
    let text = prompt(&job);
    assert!(text.contains("matches this JSON Schema") && !text.contains("shaped like"), "{text}");
}

#[test]
fn config_refuses_unknown_fields() {
    let config: AgentConfig = serde_json::from_value(json!({"base_url": "http://x", "max_parallel": 2})).unwrap();
    assert_eq!((config.base_url.as_deref(), config.max_parallel), (Some("http://x"), Some(2)));
    let err = serde_json::from_value::<AgentConfig>(json!({"base-url": "http://x"})).unwrap_err();
    assert!(err.to_string().contains("base-url"), "{err}");
}

#[test]
fn progress_notes_come_from_each_clis_stream() {
    let claude = json!({"type": "assistant", "message": {"content": [
        {"type": "text", "text": "Let me write it.\nmore"},
        {"type": "tool_use", "name": "Write", "input": {"file_path": "/w/a.txt", "content": "x"}}]}});
    assert_eq!(progress_of(&claude), ["says: Let me write it.", "tool Write /w/a.txt"]);
    let gemini = json!({"type": "tool_use", "tool_name": "run_shell_command", "parameters": {"command": "ls -la"}});
    assert_eq!(progress_of(&gemini), ["tool run_shell_command ls -la"]);
    let opencode = json!({"type": "tool_use", "part": {"tool": "write", "state": {"input": {"filePath": "b.txt"}}}});
    assert_eq!(progress_of(&opencode), ["tool write b.txt"]);
    let pi = json!({"type": "tool_execution_start", "toolName": "bash", "args": {"command": "make"}});
    assert_eq!(progress_of(&pi), ["tool bash make"]);
    let codex = json!({"type": "item.started", "item": {"type": "command_execution", "command": "cargo test"}});
    assert_eq!(progress_of(&codex), ["tool shell cargo test"]);
    let retry = json!({"type": "error", "message": "Reconnecting... 2/5"});
    assert_eq!(progress_of(&retry), ["error: Reconnecting... 2/5"]);
    assert!(progress_of(&json!({"type": "turn.completed"})).is_empty());
}
