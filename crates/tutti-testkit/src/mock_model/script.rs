//! The mock model's script: rules that choose a reply from what a request contains (never from call order),
//! the defaults when no rule matches, and the usage numbers every response carries. Mapping generic tool
//! names onto offered tools is `tools.rs`'s job.

use serde_json::{Map, Value};

use super::Api;
use super::tools;
use super::wire::{Answer, Conversation, Failure};

/// The default reply to a request no rule matches (and that does not follow a tool result).
pub const DEFAULT_TEXT: &str = "hello from mock";

/// The default reply to a request whose last item is a tool result: a final answer, ending the agent's turn.
pub const DONE_TEXT: &str = "done";

/// What the mock answers, as a list of rules tried in order; the first whose [`When`] matches the request
/// gives the reply. Rules look only at the request, so the same request always gets the same reply, whatever
/// came before it. When no rule matches:
///
/// - a request that asks for structured output (Gemini `responseJsonSchema`/`responseSchema`, Responses
///   `text.format` `json_schema`, Chat `response_format` `json_schema`) gets the smallest JSON that fits the
///   schema: gemini's router call is answered this way;
/// - a request whose last item is a tool result gets [`DONE_TEXT`];
/// - anything else (title generation, a plain prompt) gets [`DEFAULT_TEXT`].
#[derive(Debug, Clone, Default)]
pub struct Script {
    rules: Vec<Rule>,
    usage: Usage,
}

/// One rule: a condition and the reply it gives. Made by [`When::reply`].
#[derive(Debug, Clone)]
pub struct Rule {
    when: When,
    reply: Reply,
}

/// The condition of a [`Rule`]; every part that is set must hold. Start with [`When::request`].
#[derive(Debug, Clone, Default)]
pub struct When {
    api: Option<Api>,
    offers_tools: Option<bool>,
    after_tool_result: Option<bool>,
    after_tool: Option<String>,
    user_says: Option<String>,
}

/// A scripted reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A text answer.
    Text(String),
    /// A call of a tool the request offers: a generic name (`write_file`, `shell`) mapped onto the offered
    /// tools, or an offered tool's own name (see the table in the module docs).
    Tool { name: String, args: Value },
    /// An HTTP error status, with a body shaped as the API's error.
    Error { status: u16, message: String },
    /// Send the head of the reply (the status line and the stream's first event: `message_start`,
    /// `response.created`, the role chunk, or for Gemini, which has no head event, the first chunk of the
    /// reply; nothing for a non-streaming request), then hold the connection
    /// open until [`MockModel::release_held`](super::MockModel::release_held) (then the rest follows) or the
    /// server is dropped (then the connection closes mid-stream).
    Hold(Box<Reply>),
}

/// The token counts in every response. `input` is the uncached part of the prompt; APIs that report one prompt
/// total (OpenAI, Gemini) report `input + cache_read + cache_write` with `cache_read` as the cached part, and
/// Anthropic reports the three separately as `input_tokens`, `cache_read_input_tokens`,
/// `cache_creation_input_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

impl Default for Usage {
    /// Distinct small numbers, so a test can tell which field an adapter read.
    fn default() -> Self {
        Usage { input: 11, output: 7, cache_read: 5, cache_write: 3 }
    }
}

impl Usage {
    /// The whole prompt: uncached, cache reads and cache writes.
    pub fn prompt_total(&self) -> u64 {
        self.input + self.cache_read + self.cache_write
    }
}

impl Script {
    /// A script with no rules: every request gets a default reply.
    pub fn new() -> Script {
        Script::default()
    }

    /// Add a rule after the existing ones.
    pub fn rule(mut self, rule: Rule) -> Script {
        self.rules.push(rule);
        self
    }

    /// Use these token counts instead of [`Usage::default`].
    pub fn with_usage(mut self, usage: Usage) -> Script {
        self.usage = usage;
        self
    }

    pub(super) fn usage(&self) -> Usage {
        self.usage
    }

    /// The reply to `conversation` (an answer with generic tools mapped, or an HTTP error), and whether to
    /// hold it.
    pub(super) fn answer(&self, api: Api, conversation: &Conversation) -> (bool, Result<Answer, Failure>) {
        match self.rules.iter().find(|rule| rule.when.matches(api, conversation)) {
            Some(rule) => resolve(&rule.reply, conversation),
            None => (false, Ok(Answer::Text(default_text(conversation)))),
        }
    }
}

impl When {
    /// Any request; narrow it with the methods below.
    pub fn request() -> When {
        When::default()
    }

    /// Only requests of this API.
    pub fn api(mut self, api: Api) -> When {
        self.api = Some(api);
        self
    }

    /// Only requests that offer tools (`true`) or offer none (`false`).
    pub fn offers_tools(mut self, yes: bool) -> When {
        self.offers_tools = Some(yes);
        self
    }

    /// Only requests whose last input item is a tool result (`true`) or is not (`false`).
    pub fn after_tool_result(mut self, yes: bool) -> When {
        self.after_tool_result = Some(yes);
        self
    }

    /// Only requests whose last input item is the result of this tool: its own name, a generic name that maps
    /// to it, or an MCP tool's bare name.
    pub fn after_tool(mut self, name: impl Into<String>) -> When {
        self.after_tool_result = Some(true);
        self.after_tool = Some(name.into());
        self
    }

    /// Only requests whose last user text (the last user message that is not a tool result) contains `text`.
    pub fn user_says(mut self, text: impl Into<String>) -> When {
        self.user_says = Some(text.into());
        self
    }

    /// The rule giving `reply` when this matches. A tool-call reply also requires, unless set explicitly, that
    /// the request offers tools and does not end in a tool result: so an auxiliary call without tools never
    /// gets a call, and the agent's next request (carrying the call's result) gets the next rule instead of
    /// calling the tool again forever.
    pub fn reply(mut self, reply: Reply) -> Rule {
        if reply.calls_a_tool() {
            self.offers_tools.get_or_insert(true);
            self.after_tool_result.get_or_insert(false);
        }
        Rule { when: self, reply }
    }

    fn matches(&self, api: Api, conversation: &Conversation) -> bool {
        let called = conversation.tool_result.as_ref();
        let offers_tools = !conversation.tools.is_empty();
        self.api.is_none_or(|wanted| wanted == api)
            && self.offers_tools.is_none_or(|yes| yes == offers_tools)
            && self.after_tool_result.is_none_or(|yes| yes == called.is_some())
            && self.after_tool.as_deref().is_none_or(|name| {
                called.and_then(Option::as_deref).is_some_and(|called| tools::is_called_as(name, called))
            })
            && self.user_says.as_deref().is_none_or(|text| conversation.last_user_text.contains(text))
    }
}

impl Reply {
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::Text(text.into())
    }

    /// A call of `name` with `args` (a JSON object).
    pub fn tool(name: impl Into<String>, args: Value) -> Reply {
        Reply::Tool { name: name.into(), args }
    }

    /// An HTTP error with this status.
    pub fn error(status: u16) -> Reply {
        Reply::Error { status, message: format!("mock error {status}") }
    }

    /// Hold the connection after the head of `then`, until released or dropped.
    pub fn hold(then: Reply) -> Reply {
        Reply::Hold(Box::new(then))
    }

    fn calls_a_tool(&self) -> bool {
        match self {
            Reply::Tool { .. } => true,
            Reply::Hold(then) => then.calls_a_tool(),
            _ => false,
        }
    }
}

fn resolve(reply: &Reply, conversation: &Conversation) -> (bool, Result<Answer, Failure>) {
    let answer = match reply {
        Reply::Text(text) => Answer::Text(text.clone()),
        // A tool the request does not offer becomes a text saying so, which a test's assertion will show.
        Reply::Tool { name, args } => tools::call(name, args, conversation).map_or_else(Answer::Text, Answer::Call),
        Reply::Error { status, message } => return (false, Err(Failure { status: *status, message: message.clone() })),
        Reply::Hold(then) => return (true, resolve(then, conversation).1),
    };
    (false, Ok(answer))
}

fn default_text(conversation: &Conversation) -> String {
    if let Some(schema) = &conversation.response_schema {
        smallest_fit(schema).to_string()
    } else if conversation.tool_result.is_some() {
        DONE_TEXT.to_string()
    } else {
        DEFAULT_TEXT.to_string()
    }
}

/// A small JSON value that fits `schema`: `const` or the first `enum` value, the first `anyOf`/`oneOf` branch,
/// every property of an object, `minItems` items of an array, `"mock"` for a string, `minimum` (or 1) for a
/// number. Gemini's OpenAPI-style upper-case types (`OBJECT`) are read too.
pub(super) fn smallest_fit(schema: &Value) -> Value {
    if let Some(value) = schema.get("const").or_else(|| schema.get("enum").and_then(|e| e.get(0))) {
        return value.clone();
    }
    if let Some(first) = ["anyOf", "oneOf", "allOf"].iter().find_map(|k| schema.get(*k).and_then(|b| b.get(0))) {
        return smallest_fit(first);
    }
    let kind = match &schema["type"] {
        Value::String(kind) => kind.to_ascii_lowercase(),
        Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).find(|k| *k != "null").unwrap_or("null").into(),
        _ if schema.get("properties").is_some() => "object".into(),
        _ => String::new(),
    };
    match kind.as_str() {
        "object" => {
            let properties = schema["properties"].as_object().into_iter().flatten();
            Value::Object(
                properties.map(|(name, property)| (name.clone(), smallest_fit(property))).collect::<Map<_, _>>(),
            )
        }
        "array" => {
            let count = schema["minItems"].as_u64().unwrap_or(0) as usize;
            Value::Array(vec![smallest_fit(&schema["items"]); count])
        }
        "string" => Value::from("mock"),
        "integer" => Value::from(schema["minimum"].as_i64().unwrap_or(1)),
        "number" => Value::from(schema["minimum"].as_f64().unwrap_or(1.0)),
        "boolean" => Value::Bool(false),
        _ => Value::Null,
    }
}
