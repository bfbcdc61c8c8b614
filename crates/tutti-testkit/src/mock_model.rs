//! The scripted mock model server: a std-only HTTP/1.1 server on 127.0.0.1 that speaks the four model APIs
//! the agent CLIs use, picks each reply from the request's content by a [`Script`], and records every request.
//! It owns the server and the routing by path; the wire formats live in one submodule per API, the script in
//! `script.rs`, and the generic-tool mapping table in `tools.rs`.
//!
//! # Pointing a CLI at it
//!
//! Start it with a script, then give its [`MockModel::base_url`] (`http://127.0.0.1:PORT`, no path) to the CLI
//! the way a user points a CLI at a gateway: `base_url` under `[harness.NAME]` in the project's `tutti.toml`.
//! The adapters add the prefix each CLI expects (`/v1` for codex, pi's and opencode's OpenAI and Anthropic
//! providers, `/v1beta` for Google; nothing for claude's `ANTHROPIC_BASE_URL` and gemini's
//! `GOOGLE_GEMINI_BASE_URL`). The server matches paths by their ending, so any prefix works:
//!
//! | API | request |
//! |---|---|
//! | Anthropic Messages | `POST …/messages` (`?beta=true` ignored), `POST …/messages/count_tokens` |
//! | OpenAI Responses | `POST …/responses` |
//! | OpenAI Chat Completions | `POST …/chat/completions` |
//! | Gemini | `POST …/models/M:streamGenerateContent[?alt=sse]`, `…:generateContent`, `…:countTokens` |
//! | model listings | `GET …/models`, `GET …/models/M` (a harmless one-model answer) |
//!
//! Each API streams (SSE) when the request asks to (`"stream": true`, or Gemini's `streamGenerateContent`),
//! and answers one JSON object otherwise. Every answer carries the script's [`Usage`].
//!
//! # Choosing replies
//!
//! Replies are chosen from what is in the request, never from call order, because some CLIs make extra calls
//! (opencode's title generation, gemini's router): see [`Script`] for the rules and the defaults.
//!
//! # Generic tools
//!
//! A scripted [`Reply::tool`] may name a generic tool; the server maps it onto the tool the request offers for
//! it, per CLI as below. When several fit, the order of `tools::TABLE` (the one copy of this mapping) decides:
//! a file-writing tool, then `apply_patch`, then a shell.
//!
//! | CLI | `write_file {path, content}` | `shell {command}` |
//! |---|---|---|
//! | claude | `Write {file_path, content}` | `Bash {command}` |
//! | codex | `apply_patch` (custom tool, Add File patch), else `exec_command {cmd}` + `printf` | `exec_command {cmd}` |
//! | gemini | `write_file {file_path, content}` | `run_shell_command {command}` |
//! | pi | `write {path, content}` | `bash {command}` |
//! | opencode | `write {filePath, content}` | `bash {command, description}` |
//! | older codex | `shell {command: ["bash", "-lc", …]}` running `printf` | `shell {command: ["bash", "-lc", …]}` |
//!
//! The parameter names are read from the offered tool's JSON schema, so a renamed parameter still works as
//! long as it is one of the names above. A relative `path` becomes absolute when the request states the
//! working directory (`<cwd>…</cwd>`, "working directory: …"), since claude's and opencode's write tools want
//! absolute paths. Any other tool name is passed through with its arguments, matched exactly or as an MCP
//! tool's suffix (`mcp__echo__echo`, `mcp_echo_echo`, `echo_echo`, or codex's namespaced `echo`).

mod anthropic;
mod chat;
mod gemini;
mod http;
mod responses;
mod script;
mod tools;
mod wire;

#[cfg(test)]
mod tests;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

pub use script::{DEFAULT_TEXT, DONE_TEXT, Reply, Rule, Script, Usage, When};

use http::HttpRequest;
use wire::{Answer, Body, Conversation, Ctx, Mode};

/// How long a connection may take to send its request before the server gives up on it.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The model name answered when the request does not name one.
const MODEL: &str = "mock-model";

/// The wire API a request was detected as, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Anthropic Messages (`/v1/messages`).
    Anthropic,
    /// OpenAI Responses (`/v1/responses`).
    Responses,
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    ChatCompletions,
    /// Gemini `generateContent` / `streamGenerateContent` (`/v1beta/models/M:…`).
    Gemini,
}

/// One request the server received, as recorded for assertions.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub query: String,
    /// Every header, names lowercased, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The parsed JSON body (`Null` when there was none or it was not JSON).
    pub body: Value,
    /// `None` for model listings and unknown paths.
    pub api: Option<Api>,
    pub stream: bool,
    /// The names of the tools the request offered (codex namespaced tools as `namespace/name`).
    pub tools: Vec<String>,
    /// The text of the last user message that is not a tool result.
    pub last_user_text: String,
    /// Whether the last input item is a tool result.
    pub last_is_tool_result: bool,
    /// The tool whose result it is, when the request tells (found by call id, or Gemini's `functionResponse`).
    pub tool_result_of: Option<String>,
    /// What the server answered, in words, for failure messages (`text "hi"`, `tool Write {…}`, `error 429`).
    pub reply: String,
}

impl Request {
    /// A header's value; `name` is case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether `needle` occurs in any string of the body (messages, system prompt, tool results, ...).
    pub fn contains(&self, needle: &str) -> bool {
        wire::strings(&self.body).any(|s| s.contains(needle))
    }
}

/// The running server. Dropping it stops the server and closes any held connection.
pub struct MockModel {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// Held connections: how many are waiting, and a generation bumped by each release.
#[derive(Default)]
struct Holds {
    waiting: usize,
    generation: u64,
}

struct Shared {
    script: Script,
    requests: Mutex<Vec<Request>>,
    holds: Mutex<Holds>,
    released: Condvar,
    stopping: AtomicBool,
    next_id: AtomicU64,
}

impl MockModel {
    /// Bind 127.0.0.1 on a random port and serve `script` on background threads until dropped.
    pub fn start(script: Script) -> MockModel {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the mock model server");
        let addr = listener.local_addr().expect("the mock model server's address");
        let shared = Arc::new(Shared {
            script,
            requests: Mutex::default(),
            holds: Mutex::default(),
            released: Condvar::new(),
            stopping: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
        });
        let accept = std::thread::Builder::new()
            .name("mock-model-accept".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || accept_loop(&listener, &shared)
            })
            .expect("spawn the mock model server");
        MockModel { addr, shared, accept: Some(accept) }
    }

    /// `http://127.0.0.1:PORT`, without a path.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.requests).clone()
    }

    /// How many connections are being held open by a [`Reply::hold`] right now.
    pub fn held(&self) -> usize {
        lock(&self.shared.holds).waiting
    }

    /// Let every connection held right now finish its reply.
    pub fn release_held(&self) {
        lock(&self.shared.holds).generation += 1;
        self.shared.released.notify_all();
    }
}

impl Drop for MockModel {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Taking the lock orders the flag before any holder's next check, so none misses the wake-up.
        drop(lock(&self.shared.holds));
        self.shared.released.notify_all();
        // Unblock accept(); the loop sees the flag and ends.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the requests from the test's own failure message.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let shared = Arc::clone(shared);
        let _ = std::thread::Builder::new().name("mock-model-conn".into()).spawn(move || serve(stream, &shared));
    }
}

/// One connection, one request (every response says `Connection: close`).
fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else { return };
    let Ok(request) = http::read_request(&mut BufReader::new(stream), &mut writer) else { return };
    let (record, reply) = answer(&request, shared);
    lock(&shared.requests).push(record);
    let _ = send(&mut writer, reply, shared);
}

/// What to send back: a status and body, possibly held after its head.
struct Outgoing {
    status: u16,
    body: Body,
    hold: bool,
}

fn answer(request: &HttpRequest, shared: &Shared) -> (Request, Outgoing) {
    let body: Value = if request.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&request.body).unwrap_or(Value::Null)
    };
    let mut record = Request {
        method: request.method.clone(),
        path: request.path.clone(),
        query: request.query.clone(),
        headers: request.headers.clone(),
        body,
        api: None,
        stream: false,
        tools: Vec::new(),
        last_user_text: String::new(),
        last_is_tool_result: false,
        tool_result_of: None,
        reply: String::new(),
    };
    let out = match route(&request.method, &request.path) {
        Route::Model(api) => model_turn(api, request, &mut record, shared),
        Route::CountTokens(api) => {
            record.api = Some(api);
            let n = shared.script.usage().prompt_total();
            let body = if api == Api::Gemini { json!({"totalTokens": n}) } else { json!({"input_tokens": n}) };
            Outgoing { status: 200, body: Body::Json(body), hold: false }
        }
        Route::Models => Outgoing { status: 200, body: Body::Json(model_list()), hold: false },
        Route::OneModel(name) => Outgoing { status: 200, body: Body::Json(model_entry(&name)), hold: false },
        Route::Unknown => {
            let body =
                json!({"error": {"message": format!("mock: no such endpoint {} {}", request.method, request.path)}});
            Outgoing { status: 404, body: Body::Json(body), hold: false }
        }
    };
    if record.reply.is_empty() {
        record.reply = format!("status {}", out.status);
    }
    (record, out)
}

fn model_turn(api: Api, request: &HttpRequest, record: &mut Request, shared: &Shared) -> Outgoing {
    record.api = Some(api);
    if let Some(encoding) = request.header("content-encoding").filter(|e| !e.eq_ignore_ascii_case("identity")) {
        let message = format!("mock: compressed request bodies ({encoding}) are not supported");
        record.reply = message.clone();
        return Outgoing { status: 415, body: Body::Json(error_body(api, 415, &message)), hold: false };
    }
    let conversation = read(api, &record.body);
    let mode = mode(api, request, &record.body);
    record.stream = mode != Mode::Json;
    record.tools = conversation.tools.iter().map(tools::Tool::label).collect();
    record.last_user_text = conversation.last_user_text.clone();
    record.last_is_tool_result = conversation.tool_result.is_some();
    record.tool_result_of = conversation.tool_result.clone().flatten();

    let (hold, answer) = shared.script.answer(api, &conversation);
    let said = match &answer {
        Ok(answer) => answer.to_string(),
        Err(failure) => format!("error {}: {}", failure.status, failure.message),
    };
    record.reply = if hold { format!("hold, then {said}") } else { said };
    let ctx = Ctx {
        id: shared.next_id.fetch_add(1, Ordering::Relaxed),
        model: model_name(api, &request.path, &record.body),
        created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        usage: shared.script.usage(),
        mode,
    };
    match answer {
        Ok(answer) => Outgoing { status: 200, body: render(api, &answer, &ctx), hold },
        Err(failure) => Outgoing {
            status: failure.status,
            body: Body::Json(error_body(api, failure.status, &failure.message)),
            hold,
        },
    }
}

fn send(writer: &mut TcpStream, out: Outgoing, shared: &Shared) -> std::io::Result<()> {
    match out.body {
        Body::Json(value) => {
            if out.hold && !wait_for_release(shared) {
                return Ok(());
            }
            http::write_json(writer, out.status, &value)
        }
        Body::Sse(events) => {
            http::write_sse_head(writer)?;
            let mut events = events.into_iter();
            if out.hold {
                // The stream's first event, so the client knows the turn has started, then nothing until released.
                if let Some(first) = events.next() {
                    http::write_event(writer, &first)?;
                }
                if !wait_for_release(shared) {
                    return Ok(());
                }
            }
            for event in events {
                http::write_event(writer, &event)?;
            }
            http::write_sse_end(writer)?;
            writer.flush()
        }
    }
}

/// Block until [`MockModel::release_held`] (then `true`) or the server stops (then `false`).
fn wait_for_release(shared: &Shared) -> bool {
    let mut holds = lock(&shared.holds);
    let generation = holds.generation;
    holds.waiting += 1;
    while holds.generation == generation && !shared.stopping.load(Ordering::SeqCst) {
        holds = shared.released.wait(holds).unwrap_or_else(|poisoned| poisoned.into_inner());
    }
    holds.waiting -= 1;
    !shared.stopping.load(Ordering::SeqCst)
}

enum Route {
    Model(Api),
    CountTokens(Api),
    Models,
    OneModel(String),
    Unknown,
}

fn route(method: &str, path: &str) -> Route {
    let path = path.trim_end_matches('/');
    if method == "GET" {
        return match path.rsplit_once("/models/") {
            _ if path.ends_with("/models") => Route::Models,
            Some((_, name)) => Route::OneModel(name.to_string()),
            None => Route::Unknown,
        };
    }
    if method != "POST" {
        return Route::Unknown;
    }
    if path.ends_with("/messages/count_tokens") {
        Route::CountTokens(Api::Anthropic)
    } else if path.ends_with("/messages") {
        Route::Model(Api::Anthropic)
    } else if path.ends_with("/responses") {
        Route::Model(Api::Responses)
    } else if path.ends_with("/chat/completions") {
        Route::Model(Api::ChatCompletions)
    } else if path.ends_with(":countTokens") {
        Route::CountTokens(Api::Gemini)
    } else if path.ends_with(":generateContent") || path.ends_with(":streamGenerateContent") {
        Route::Model(Api::Gemini)
    } else {
        Route::Unknown
    }
}

fn mode(api: Api, request: &HttpRequest, body: &Value) -> Mode {
    match api {
        Api::Gemini if request.path.ends_with(":streamGenerateContent") => {
            if request.query.split('&').any(|pair| pair == "alt=sse") { Mode::Sse } else { Mode::JsonArray }
        }
        Api::Gemini => Mode::Json,
        _ if body["stream"] == true => Mode::Sse,
        _ => Mode::Json,
    }
}

fn model_name(api: Api, path: &str, body: &Value) -> String {
    let named = match api {
        Api::Gemini => path.rsplit_once("/models/").and_then(|(_, rest)| rest.split(':').next()),
        _ => body["model"].as_str(),
    };
    named.filter(|name| !name.is_empty()).unwrap_or(MODEL).to_string()
}

fn read(api: Api, body: &Value) -> Conversation {
    let mut conversation = match api {
        Api::Anthropic => anthropic::read(body),
        Api::Responses => responses::read(body),
        Api::ChatCompletions => chat::read(body),
        Api::Gemini => gemini::read(body),
    };
    conversation.cwd = tools::find_cwd(body);
    conversation
}

fn render(api: Api, answer: &Answer, ctx: &Ctx) -> Body {
    match api {
        Api::Anthropic => anthropic::render(answer, ctx),
        Api::Responses => responses::render(answer, ctx),
        Api::ChatCompletions => chat::render(answer, ctx),
        Api::Gemini => gemini::render(answer, ctx),
    }
}

fn error_body(api: Api, status: u16, message: &str) -> Value {
    match api {
        Api::Anthropic => anthropic::error(status, message),
        Api::Responses | Api::ChatCompletions => chat::error(status, message),
        Api::Gemini => gemini::error(status, message),
    }
}

/// One listing that each client reads its own way: OpenAI and Anthropic read `data`, Gemini reads `models`.
fn model_list() -> Value {
    json!({
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "type": "model", "created": 0, "created_at": "1970-01-01T00:00:00Z",
                  "owned_by": "mock", "display_name": "Mock Model"}],
        "has_more": false, "first_id": MODEL, "last_id": MODEL,
        "models": [model_entry(MODEL)],
    })
}

fn model_entry(name: &str) -> Value {
    let name = name.trim_start_matches("models/");
    json!({
        "id": name, "object": "model", "type": "model", "created": 0, "owned_by": "mock", "display_name": name,
        "name": format!("models/{name}"), "displayName": name, "inputTokenLimit": 1_000_000, "outputTokenLimit": 65_536,
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
    })
}
