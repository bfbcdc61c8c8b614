//! The API-neutral middle shared by the four API modules: what a request asks (`Conversation`, read from the
//! request), what the mock answers (`Answer`, chosen by the script), and the body an API renders it into.

use std::fmt;

use serde_json::Value;

use super::script::Usage;
use super::tools::Tool;

/// What the script looks at in a request, whatever its API.
#[derive(Debug, Default)]
pub(super) struct Conversation {
    pub(super) tools: Vec<Tool>,
    /// The text of the last user message that is not a tool result.
    pub(super) last_user_text: String,
    /// `Some` when the last input item is a tool result; inside, the tool's name when the request tells it.
    pub(super) tool_result: Option<Option<String>>,
    /// The JSON schema the answer must fit, when the request asks for structured output.
    pub(super) response_schema: Option<Value>,
    /// The agent's working directory, when the prompt states it.
    pub(super) cwd: Option<String>,
}

/// The reply to render, after the script chose it and generic tool names were mapped.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Answer {
    Text(String),
    Call(Call),
}

/// A scripted HTTP error, answered with the API's error body instead of an [`Answer`].
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Failure {
    pub(super) status: u16,
    pub(super) message: String,
}

/// A call of one offered tool.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Call {
    pub(super) name: String,
    /// Codex groups MCP tools under a namespace and wants it back on the call.
    pub(super) namespace: Option<String>,
    pub(super) input: Input,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Input {
    /// Arguments of a function tool.
    Json(Value),
    /// The free text of an OpenAI Responses custom tool (codex's `apply_patch`).
    Custom(String),
}

impl Input {
    /// The arguments as a JSON value; a custom tool's text becomes `{"input": text}`.
    pub(super) fn json(&self) -> Value {
        match self {
            Input::Json(value) => value.clone(),
            Input::Custom(text) => serde_json::json!({ "input": text }),
        }
    }

    /// What streams as the call's argument deltas: JSON text, or a custom tool's raw text.
    pub(super) fn text(&self) -> String {
        match self {
            Input::Json(value) => value.to_string(),
            Input::Custom(text) => text.clone(),
        }
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Text(text) => write!(f, "text {text:?}"),
            Answer::Call(call) => {
                let namespace = call.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default();
                write!(f, "tool {namespace}{} {}", call.name, call.input.text())
            }
        }
    }
}

/// How the client asked to be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// One JSON object.
    Json,
    /// Server-sent events.
    Sse,
    /// Gemini's `streamGenerateContent` without `alt=sse`: a JSON array of the stream's chunks.
    JsonArray,
}

/// What an API module needs besides the answer.
pub(super) struct Ctx {
    /// Unique per response, for message, call and response ids.
    pub(super) id: u64,
    pub(super) model: String,
    /// Unix seconds.
    pub(super) created: u64,
    pub(super) usage: Usage,
    pub(super) mode: Mode,
}

pub(super) enum Body {
    Json(Value),
    Sse(Vec<Event>),
}

impl Body {
    /// The stream's events, or, for `Mode::Json` / `Mode::JsonArray`, what a non-SSE client gets instead.
    pub(super) fn stream(mode: Mode, events: Vec<Event>, whole: impl FnOnce() -> Value) -> Body {
        match mode {
            Mode::Sse => Body::Sse(events),
            Mode::JsonArray => Body::Json(Value::Array(events.into_iter().map(|e| e.data).collect())),
            Mode::Json => Body::Json(whole()),
        }
    }
}

/// One server-sent event: an optional `event:` name and its `data:`.
pub(super) struct Event {
    pub(super) name: Option<&'static str>,
    pub(super) data: Value,
}

impl Event {
    pub(super) fn named(name: &'static str, data: Value) -> Event {
        Event { name: Some(name), data }
    }

    pub(super) fn data(data: Value) -> Event {
        Event { name: None, data }
    }
}

impl fmt::Display for Event {
    /// The wire form; a string `data` is written raw (Chat Completions' `[DONE]`), anything else as JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.name {
            writeln!(f, "event: {name}")?;
        }
        match &self.data {
            Value::String(raw) => write!(f, "data: {raw}\n\n"),
            data => write!(f, "data: {data}\n\n"),
        }
    }
}

/// `text` in two deltas (split at a char boundary near the middle), so clients must concatenate; short text
/// stays one piece.
pub(super) fn halves(text: &str) -> Vec<&str> {
    let Some((middle, _)) = text.char_indices().nth(text.chars().count() / 2) else { return vec![text] };
    if middle == 0 { vec![text] } else { vec![&text[..middle], &text[middle..]] }
}

/// Every string in a JSON value, depth first.
pub(super) fn strings(value: &Value) -> impl Iterator<Item = &str> {
    let mut found = Vec::new();
    collect_strings(value, &mut found);
    found.into_iter()
}

fn collect_strings<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => found.push(s),
        Value::Array(items) => items.iter().for_each(|item| collect_strings(item, found)),
        Value::Object(map) => map.values().for_each(|item| collect_strings(item, found)),
        _ => {}
    }
}

/// The text of a message content that is either a string or a list of parts with a `text` field, joined by
/// newlines; parts of other kinds (images, tool results) are skipped.
pub(super) fn content_text(content: &Value, text_types: &[&str]) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|part| part.get("type").and_then(Value::as_str).is_none_or(|t| text_types.contains(&t)))
            .filter_map(|part| part["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}
