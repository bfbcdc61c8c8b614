//! Reading an agent CLI's event stream while its turn runs: progress notes (tool calls, narration, retries) for
//! the dispatcher, and the watch on whether the CLI is in touch with its model at all.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tutti_engine::Reporter;

use crate::process::Stop;

/// Whether a turn's CLI is in touch with its model: the time it first reported an error or retry with no
/// contact since, the last such error, and whether the watchdog gave the turn up.
#[derive(Default)]
pub(super) struct Contact {
    pub(super) failing_since: Option<std::time::Instant>,
    pub(super) last_error: String,
    pub(super) gave_up: bool,
}

/// Stop the turn (as timed out, marked given up) once its CLI has failed to reach the model for `limit`.
pub(super) fn watch_contact(stopper: crate::process::Stopper, contact: Arc<Mutex<Contact>>, limit: Duration) {
    let _ = std::thread::Builder::new().name("tutti-contact".into()).spawn(move || {
        while !stopper.ended() {
            std::thread::sleep(Duration::from_millis(250));
            let mut state = contact.lock().unwrap_or_else(PoisonError::into_inner);
            if state.failing_since.is_some_and(|t| t.elapsed() >= limit) {
                state.gave_up = true;
                drop(state);
                stopper.stop(Stop::TimedOut);
                return;
            }
        }
    });
}

/// The most progress notes one turn reports; the dispatcher holds every attempt to the same cap.
const PROGRESS_CAP: usize = tutti_engine::harness::PROGRESS_CAP;

/// How often a turn's narration (assistant text) is reported at most; tool calls and errors always are.
const NARRATION_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// A line sink that turns a CLI's event stream into progress notes while the turn runs: each tool call (name and
/// its path or command), the model's narration (first line, at most every [`NARRATION_EVERY`]), and the errors
/// and retries the CLI reports. At most [`PROGRESS_CAP`] notes per turn.
pub(super) fn progress_sink(reporter: Reporter, contact: Arc<Mutex<Contact>>) -> crate::process::LineSink {
    let mut sent = 0usize;
    let mut last_narration: Option<std::time::Instant> = None;
    Box::new(move |line: &str| {
        if !line.trim_start().starts_with('{') {
            return;
        }
        let Ok(event) = serde_json::from_str::<Value>(line) else { return };
        let notes = progress_of(&event);
        {
            let mut state = contact.lock().unwrap_or_else(PoisonError::into_inner);
            match notes.iter().find_map(|n| n.strip_prefix("error: ")) {
                Some(error) => {
                    state.failing_since.get_or_insert_with(std::time::Instant::now);
                    state.last_error = error.to_string();
                }
                None if !notes.is_empty() || answered(&event) => state.failing_since = None,
                None => {}
            }
        }
        if sent >= PROGRESS_CAP {
            return;
        }
        for note in notes {
            if note.starts_with("says: ") {
                if last_narration.is_some_and(|t| t.elapsed() < NARRATION_EVERY) {
                    continue;
                }
                last_narration = Some(std::time::Instant::now());
            }
            if sent < PROGRESS_CAP {
                sent += 1;
                reporter.progress(note);
            }
        }
    })
}

/// Whether a stream event shows the model answered (the end of a turn or a step).
fn answered(event: &Value) -> bool {
    matches!(event["type"].as_str(), Some("result" | "turn.completed" | "message_end" | "step_finish"))
        || (event["type"] == "message" && event["role"] == "assistant")
}

/// What one event of a CLI's stream says happened, as short notes: `tool NAME ARG`, `says: FIRST LINE`,
/// `error: MESSAGE`. The five CLIs' stream formats (see `docs/harnesses.md`) are told apart by their event types.
pub fn progress_of(event: &Value) -> Vec<String> {
    let tool = |name: &str, input: &Value| format!("tool {name}{}", argument(input));
    let says =
        |text: &str| text.lines().map(str::trim).find(|l| !l.is_empty()).map(|l| format!("says: {}", cut(l, 120)));
    let kind = event["type"].as_str().unwrap_or("");
    match kind {
        // claude: {"type":"assistant","message":{"content":[{"type":"tool_use","name","input"} | {"type":"text"}]}}
        "assistant" => event["message"]["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|block| match block["type"].as_str() {
                Some("tool_use") => Some(tool(block["name"].as_str().unwrap_or("?"), &block["input"])),
                Some("text") => says(block["text"].as_str().unwrap_or("")),
                _ => None,
            })
            .collect(),
        // gemini: {"type":"tool_use","tool_name","parameters"}; opencode: {"type":"tool_use","part":{"tool","state":{"input"}}}
        "tool_use" => {
            let name = event["tool_name"].as_str().or(event["part"]["tool"].as_str()).unwrap_or("?");
            let input =
                if event["parameters"].is_null() { &event["part"]["state"]["input"] } else { &event["parameters"] };
            vec![tool(name, input)]
        }
        // pi: {"type":"tool_execution_start","toolName","args"}
        "tool_execution_start" => vec![tool(event["toolName"].as_str().unwrap_or("?"), &event["args"])],
        // codex: {"type":"item.started","item":{"type":"command_execution","command"} | file_change | mcp_tool_call}
        "item.started" | "item.completed" => {
            let item = &event["item"];
            match (kind, item["type"].as_str().unwrap_or("")) {
                ("item.started", "command_execution") => vec![tool("shell", &json!({ "command": item["command"] }))],
                ("item.started", "mcp_tool_call") => {
                    vec![tool(item["tool"].as_str().unwrap_or("?"), &item["arguments"])]
                }
                ("item.completed", "file_change") => {
                    let paths: Vec<&str> =
                        item["changes"].as_array().into_iter().flatten().filter_map(|c| c["path"].as_str()).collect();
                    vec![format!("tool apply_patch {}", cut(&paths.join(", "), 120))]
                }
                ("item.completed", "agent_message") => says(item["text"].as_str().unwrap_or("")).into_iter().collect(),
                _ => Vec::new(),
            }
        }
        // codex retries, gemini errors, opencode errors, claude retries
        "error" => {
            let message = event["message"].as_str().or(event["error"]["message"].as_str()).unwrap_or("error");
            vec![format!("error: {}", cut(message, 160))]
        }
        "system" if event["subtype"] == "api_retry" => vec!["error: retrying the model request".to_string()],
        _ => Vec::new(),
    }
}

/// The telling argument of a tool call: its path, command or pattern.
fn argument(input: &Value) -> String {
    let field =
        ["file_path", "filePath", "path", "command", "cmd", "pattern", "url", "query"].iter().find_map(
            |k| match &input[k] {
                Value::String(s) => Some(s.clone()),
                Value::Array(a) => Some(a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")),
                _ => None,
            },
        );
    field.map(|f| format!(" {}", cut(&f, 80))).unwrap_or_default()
}

fn cut(text: &str, max: usize) -> String {
    let flat = text.replace('\n', " ");
    if flat.chars().count() <= max { flat } else { format!("{}…", flat.chars().take(max).collect::<String>()) }
}
