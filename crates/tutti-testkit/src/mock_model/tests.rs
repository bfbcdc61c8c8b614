//! Tests of the mock model server through its sockets, with a small std HTTP client: each API's stream and
//! JSON shapes, reply choice by content, hold and release, and the request record. The mapping table has its
//! own tests in `tools.rs`.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::{DEADLINE, try_wait_for, wait_for};

struct Response {
    status: u16,
    headers: String,
    /// The body after undoing chunked transfer encoding.
    body: String,
    /// Whether a chunked body ended with its terminating empty chunk.
    complete: bool,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The SSE events, as (`event:` name, parsed `data:`); `[DONE]` stays a string.
    fn events(&self) -> Vec<(Option<String>, Value)> {
        assert!(self.headers.contains("content-type: text/event-stream"), "{}", self.headers);
        self.body
            .split("\n\n")
            .filter(|block| !block.trim().is_empty())
            .map(|block| {
                let name = block.lines().find_map(|l| l.strip_prefix("event: ")).map(str::to_string);
                let data = block.lines().find_map(|l| l.strip_prefix("data: ")).expect("a data line");
                let data = if data == "[DONE]" { json!(data) } else { serde_json::from_str(data).expect("JSON data") };
                (name, data)
            })
            .collect()
    }
}

fn connect(model: &MockModel, method: &str, target: &str, body: &Value, headers: &[(&str, &str)]) -> TcpStream {
    let mut stream = TcpStream::connect(model.addr).expect("connect to the mock");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let body = if body.is_null() { String::new() } else { body.to_string() };
    let mut head = format!("{method} {target} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    stream.write_all(format!("{head}\r\n{body}").as_bytes()).unwrap();
    stream
}

fn read_response(mut stream: TcpStream) -> Response {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    parse(&String::from_utf8(raw).expect("UTF-8"))
}

fn parse(raw: &str) -> Response {
    let (headers, rest) = raw.split_once("\r\n\r\n").expect("a header block");
    let status = headers.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    if !headers.contains("transfer-encoding: chunked") {
        return Response { status, headers: headers.into(), body: rest.into(), complete: true };
    }
    let (mut body, mut rest, mut complete) = (String::new(), rest, false);
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size, 16).expect("a chunk size");
        if size == 0 {
            complete = true;
            break;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    Response { status, headers: headers.into(), body, complete }
}

fn post(model: &MockModel, target: &str, body: Value) -> Response {
    read_response(connect(model, "POST", target, &body, &[("content-type", "application/json")]))
}

fn names(events: &[(Option<String>, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_deref().unwrap_or("")).collect()
}

/// The concatenation of a field over the events that carry it.
fn joined(events: &[(Option<String>, Value)], pointer: &str) -> String {
    events.iter().filter_map(|(_, data)| data.pointer(pointer)?.as_str()).collect()
}

fn write_hello() -> Script {
    Script::new()
        .rule(
            When::request()
                .user_says("write hello")
                .reply(Reply::tool("write_file", json!({"path": "hello.txt", "content": "hi\n"}))),
        )
        .rule(When::request().after_tool("write_file").reply(Reply::text("wrote hello.txt")))
}

// ---- Anthropic Messages

fn claude_request(messages: Value) -> Value {
    json!({
        "model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": true,
        "system": [{"type": "text", "text": "You are Claude Code.\n<env>\nPrimary working directory: /work/tree\n"}],
        "tools": [
            {"name": "Bash", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}},
            {"name": "Write", "input_schema": {"type": "object", "properties": {"file_path": {}, "content": {}}}},
        ],
        "messages": messages,
    })
}

#[test]
fn anthropic_streams_text_in_the_real_event_order_with_usage() {
    let model = MockModel::start(Script::new());
    let events =
        post(&model, "/v1/messages?beta=true", claude_request(json!([{"role": "user", "content": "say hi"}]))).events();
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert!(events.iter().all(|(name, data)| data["type"] == json!(name)), "each event's type is its name");
    assert_eq!(joined(&events, "/delta/text"), DEFAULT_TEXT);
    let start = &events[0].1["message"];
    assert_eq!((start["role"].as_str(), start["model"].as_str()), (Some("assistant"), Some("claude-sonnet-4-5")));
    assert_eq!(start["usage"]["input_tokens"], 11);
    assert_eq!(start["usage"]["cache_read_input_tokens"], 5);
    assert_eq!(start["usage"]["cache_creation_input_tokens"], 3);
    assert_eq!(events[6].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(events[6].1["usage"]["output_tokens"], 7);
}

#[test]
fn anthropic_streams_a_write_call_then_answers_its_result() {
    let model = MockModel::start(write_hello());
    let ask = json!([{"role": "user", "content": [{"type": "text", "text": "please write hello"}]}]);
    let events = post(&model, "/v1/messages", claude_request(ask)).events();
    let block = &events[1].1["content_block"];
    assert_eq!(
        (block["type"].as_str(), block["name"].as_str(), &block["input"]),
        (Some("tool_use"), Some("Write"), &json!({}))
    );
    let input: Value =
        serde_json::from_str(&joined(&events, "/delta/partial_json")).expect("the input deltas make JSON");
    assert_eq!(input, json!({"file_path": "/work/tree/hello.txt", "content": "hi\n"}));
    assert_eq!(events[events.len() - 2].1["delta"]["stop_reason"], "tool_use");

    let id = block["id"].as_str().unwrap();
    let after = json!([
        {"role": "user", "content": [{"type": "text", "text": "please write hello"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "Write", "input": input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "ok"},
                                     {"type": "text", "text": "<system-reminder>x</system-reminder>"}]},
    ]);
    let events = post(&model, "/v1/messages", claude_request(after)).events();
    assert_eq!(joined(&events, "/delta/text"), "wrote hello.txt");
}

#[test]
fn anthropic_answers_a_plain_message_without_stream() {
    let model = MockModel::start(Script::new().rule(When::request().reply(Reply::text("whole"))));
    let mut request = claude_request(json!([{"role": "user", "content": "hi"}]));
    request["stream"] = json!(false);
    let response = post(&model, "/v1/messages", request);
    assert_eq!(response.status, 200);
    let message = response.json();
    assert_eq!((message["type"].as_str(), message["stop_reason"].as_str()), (Some("message"), Some("end_turn")));
    assert_eq!(message["content"], json!([{"type": "text", "text": "whole"}]));
    assert_eq!(
        (message["usage"]["input_tokens"].as_u64(), message["usage"]["output_tokens"].as_u64()),
        (Some(11), Some(7))
    );
}

// ---- OpenAI Responses

fn codex_request(tools: Value, input: Value) -> Value {
    json!({
        "model": "gpt-5.5", "instructions": "You are Codex.", "stream": true, "store": false, "tools": tools,
        "input": input,
    })
}

fn codex_prompt(text: &str) -> Value {
    json!([
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<env>\n  <cwd>/w</cwd>"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
    ])
}

#[test]
fn responses_streams_text_with_sequence_numbers_and_usage() {
    let model =
        MockModel::start(Script::new().with_usage(Usage { input: 100, output: 20, cache_read: 50, cache_write: 0 }));
    let events = post(&model, "/v1/responses", codex_request(json!([]), codex_prompt("say hi"))).events();
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    for (n, (name, data)) in events.iter().enumerate() {
        assert_eq!((&data["type"], data["sequence_number"].as_u64()), (&json!(name), Some(n as u64)));
    }
    assert_eq!(joined(&events, "/delta"), DEFAULT_TEXT);
    assert_eq!(events[8].1["item"]["content"][0]["text"], DEFAULT_TEXT);
    let completed = &events[9].1["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["output"][0]["type"], "message");
    let usage = &completed["usage"];
    assert_eq!(
        (usage["input_tokens"].as_u64(), usage["input_tokens_details"]["cached_tokens"].as_u64()),
        (Some(150), Some(50))
    );
    assert_eq!((usage["output_tokens"].as_u64(), usage["total_tokens"].as_u64()), (Some(20), Some(170)));
}

#[test]
fn responses_streams_function_and_custom_tool_calls() {
    let exec = json!({"type": "function", "name": "exec_command", "parameters": {"properties": {"cmd": {}}}});
    let model = MockModel::start(write_hello());
    let events = post(&model, "/v1/responses", codex_request(json!([exec]), codex_prompt("write hello"))).events();
    assert_eq!(events[2].1["item"]["type"], "function_call");
    assert_eq!(events[2].1["item"]["arguments"], "");
    let arguments: Value = serde_json::from_str(&joined(&events, "/delta")).expect("argument deltas make JSON");
    assert_eq!(arguments, json!({"cmd": "printf '%s' 'hi\n' > 'hello.txt'"}));
    let done = &events[events.len() - 2].1["item"];
    assert_eq!((done["name"].as_str(), done["status"].as_str()), (Some("exec_command"), Some("completed")));
    assert_eq!(done["arguments"].as_str().map(serde_json::from_str::<Value>).unwrap().unwrap(), arguments);
    assert!(names(&events).contains(&"response.function_call_arguments.done"));

    let patch = json!({"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}});
    let events =
        post(&model, "/v1/responses", codex_request(json!([exec, patch]), codex_prompt("write hello"))).events();
    let done = &events[events.len() - 2].1["item"];
    assert_eq!((done["type"].as_str(), done["name"].as_str()), (Some("custom_tool_call"), Some("apply_patch")));
    assert_eq!(done["input"], "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch\n");
    assert_eq!(joined(&events, "/delta"), done["input"].as_str().unwrap());

    // The call's output comes back as the last input item, found by call_id.
    let call_id = done["call_id"].as_str().unwrap();
    let mut input = codex_prompt("write hello");
    input
        .as_array_mut()
        .unwrap()
        .extend([done.clone(), json!({"type": "custom_tool_call_output", "call_id": call_id, "output": "ok"})]);
    let events = post(&model, "/v1/responses", codex_request(json!([exec, patch]), input)).events();
    assert_eq!(joined(&events, "/delta"), "wrote hello.txt");
}

#[test]
fn responses_answers_one_response_without_stream() {
    let model = MockModel::start(Script::new());
    let mut request = codex_request(json!([]), json!("just a string"));
    request["stream"] = json!(false);
    let response = post(&model, "/v1/responses", request).json();
    assert_eq!((response["object"].as_str(), response["status"].as_str()), (Some("response"), Some("completed")));
    assert_eq!(response["output"][0]["content"][0]["text"], DEFAULT_TEXT);
    assert_eq!(response["usage"]["output_tokens"], 7);
}

// ---- OpenAI Chat Completions

fn chat_request(messages: Value, tools: bool) -> Value {
    let write = json!({"type": "function", "function": {"name": "write", "parameters": {"type": "object",
        "properties": {"filePath": {"type": "string"}, "content": {"type": "string"}}}}});
    json!({"model": "mock-model", "stream": true, "stream_options": {"include_usage": true},
           "messages": messages, "tools": if tools { json!([write]) } else { json!([]) }})
}

/// An assistant's earlier call of opencode's `write`, id `c1`.
fn write_call() -> Value {
    json!({"id": "c1", "type": "function", "function": {"name": "write", "arguments": "{}"}})
}

#[test]
fn chat_streams_text_chunks_then_usage_then_done() {
    let model = MockModel::start(Script::new());
    let events =
        post(&model, "/v1/chat/completions", chat_request(json!([{"role": "user", "content": "hi"}]), false)).events();
    assert!(events.iter().all(|(name, _)| name.is_none()), "chat completions sends data lines only");
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks = &events[..events.len() - 1];
    assert!(chunks.iter().all(|(_, c)| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0].1["id"]));
    assert_eq!(chunks[0].1["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(joined(chunks, "/choices/0/delta/content"), DEFAULT_TEXT);
    let finish = &chunks[chunks.len() - 2].1["choices"][0];
    assert_eq!((finish["finish_reason"].as_str(), &finish["delta"]), (Some("stop"), &json!({})));
    let usage = &chunks[chunks.len() - 1].1;
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        (usage["usage"]["prompt_tokens"].as_u64(), usage["usage"]["completion_tokens"].as_u64()),
        (Some(19), Some(7))
    );
    assert_eq!(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
}

#[test]
fn chat_streams_tool_call_deltas() {
    let model = MockModel::start(write_hello());
    let ask =
        json!([{"role": "system", "content": "Working directory: /proj"}, {"role": "user", "content": "write hello"}]);
    let events = post(&model, "/v1/chat/completions", chat_request(ask, true)).events();
    let head = &events[0].1["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!((head["index"].as_u64(), head["type"].as_str()), (Some(0), Some("function")));
    assert_eq!(head["function"]["name"], "write");
    let arguments: Value =
        serde_json::from_str(&joined(&events, "/choices/0/delta/tool_calls/0/function/arguments")).unwrap();
    assert_eq!(arguments, json!({"filePath": "/proj/hello.txt", "content": "hi\n"}));
    assert!(events.iter().any(|(_, c)| c["choices"][0]["finish_reason"] == "tool_calls"));

    let non_streaming = {
        let mut request = chat_request(json!([{"role": "user", "content": "write hello"}]), true);
        request["stream"] = json!(false);
        post(&model, "/v1/chat/completions", request).json()
    };
    let choice = &non_streaming["choices"][0];
    assert_eq!(
        (choice["finish_reason"].as_str(), choice["message"]["tool_calls"][0]["function"]["name"].as_str()),
        (Some("tool_calls"), Some("write"))
    );
    assert_eq!(non_streaming["usage"]["total_tokens"], 26);
}

// ---- Gemini

fn gemini_request(contents: Value) -> Value {
    json!({
        "contents": contents,
        "systemInstruction": {"parts": [{"text": "You are Gemini CLI."}]},
        "tools": [{"functionDeclarations": [
            {"name": "write_file", "parametersJsonSchema": {"properties": {"file_path": {}, "content": {}}}},
            {"name": "run_shell_command", "parametersJsonSchema": {"type": "object", "properties": {"command": {}}}},
        ]}],
    })
}

#[test]
fn gemini_streams_text_and_calls_as_sse_chunks() {
    let model = MockModel::start(write_hello());
    let target = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    let events = post(&model, target, gemini_request(json!([{"role": "user", "parts": [{"text": "hi"}]}]))).events();
    assert_eq!(events.len(), 2, "the text comes in two chunks");
    assert_eq!(joined(&events, "/candidates/0/content/parts/0/text"), DEFAULT_TEXT);
    assert_eq!(events[0].1["candidates"][0].get("finishReason"), None);
    assert_eq!(events[1].1["candidates"][0]["finishReason"], "STOP");
    assert_eq!(events[1].1["modelVersion"], "gemini-2.5-flash");
    let usage = &events[1].1["usageMetadata"];
    assert_eq!(
        (usage["promptTokenCount"].as_u64(), usage["candidatesTokenCount"].as_u64(), usage["totalTokenCount"].as_u64()),
        (Some(19), Some(7), Some(26))
    );

    let events =
        post(&model, target, gemini_request(json!([{"role": "user", "parts": [{"text": "write hello"}]}]))).events();
    let call = &events[0].1["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(call, &json!({"name": "write_file", "args": {"file_path": "hello.txt", "content": "hi\n"}}));

    let after = json!([
        {"role": "user", "parts": [{"text": "write hello"}]},
        {"role": "model", "parts": [{"functionCall": call}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "write_file", "response": {"output": "ok"}}}]},
    ]);
    let events = post(&model, target, gemini_request(after)).events();
    assert_eq!(joined(&events, "/candidates/0/content/parts/0/text"), "wrote hello.txt");
}

#[test]
fn gemini_answers_generate_content_and_a_stream_without_sse_as_json() {
    let model = MockModel::start(Script::new());
    let ask = gemini_request(json!([{"parts": [{"text": "hi"}]}]));
    let whole = post(&model, "/v1beta/models/m:generateContent", ask.clone()).json();
    assert_eq!(whole["candidates"][0]["content"]["parts"][0]["text"], DEFAULT_TEXT);
    assert_eq!(whole["usageMetadata"]["cachedContentTokenCount"], 5);
    let array = post(&model, "/v1beta/models/m:streamGenerateContent", ask).json();
    let text: String = array
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, DEFAULT_TEXT);
}

#[test]
fn gemini_router_call_gets_the_smallest_json_that_fits_its_schema() {
    let model = MockModel::start(Script::new());
    let schema = json!({"type": "object", "required": ["complexity_reasoning", "complexity_score"], "properties": {
        "complexity_reasoning": {"type": "string"},
        "complexity_score": {"type": "integer", "minimum": 1, "maximum": 100}}});
    let router = json!({"contents": [{"role": "user", "parts": [{"text": "classify"}]}],
                        "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": schema}});
    let answer = post(&model, "/v1beta/models/gemini-3.5-flash-lite:generateContent", router).json();
    let text = answer["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap();
    let fit: Value = serde_json::from_str(text).expect("the reply is JSON");
    assert_eq!(fit, json!({"complexity_reasoning": "mock", "complexity_score": 1}));
}

// ---- errors and other endpoints

#[test]
fn an_error_reply_has_the_status_and_each_apis_error_shape() {
    let model = MockModel::start(Script::new().rule(When::request().user_says("fail").reply(Reply::error(429))));
    let anthropic = post(&model, "/v1/messages", claude_request(json!([{"role": "user", "content": "fail"}])));
    assert_eq!((anthropic.status, anthropic.json()["error"]["type"].as_str()), (429, Some("rate_limit_error")));
    let openai = post(&model, "/v1/responses", codex_request(json!([]), codex_prompt("fail")));
    assert_eq!((openai.status, openai.json()["error"]["code"].as_str()), (429, Some("rate_limit_exceeded")));
    let gemini = post(
        &model,
        "/v1beta/models/m:streamGenerateContent?alt=sse",
        gemini_request(json!([{"parts": [{"text": "fail"}]}])),
    );
    assert_eq!((gemini.status, gemini.json()["error"]["status"].as_str()), (429, Some("RESOURCE_EXHAUSTED")));
}

#[test]
fn model_listings_are_answered_and_unknown_paths_are_not_found() {
    let model = MockModel::start(Script::new());
    let list = read_response(connect(&model, "GET", "/v1/models", &Value::Null, &[]));
    assert_eq!((list.status, list.json()["data"][0]["id"].as_str()), (200, Some("mock-model")));
    let one = read_response(connect(&model, "GET", "/v1beta/models/gemini-2.5-flash", &Value::Null, &[]));
    assert_eq!(one.json()["name"], "models/gemini-2.5-flash");
    assert_eq!(post(&model, "/v1/embeddings", json!({})).status, 404);
    assert_eq!(post(&model, "/v1/messages/count_tokens", json!({})).json()["input_tokens"], 19);
}

// ---- choosing by content

#[test]
fn replies_depend_on_content_not_on_call_order() {
    let title = chat_request(json!([{"role": "user", "content": "Generate a title for: \"write hello\""}]), false);
    let main = chat_request(json!([{"role": "user", "content": "write hello"}]), true);
    let after = chat_request(
        json!([
            {"role": "user", "content": "write hello"},
            {"role": "assistant", "content": null, "tool_calls": [write_call()]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ]),
        true,
    );
    let replies = |order: [&Value; 3]| {
        let model = MockModel::start(write_hello());
        for request in order {
            post(&model, "/v1/chat/completions", request.clone());
        }
        let mut replies: Vec<(String, String)> =
            model.requests().into_iter().map(|r| (r.body.to_string(), r.reply)).collect();
        replies.sort();
        replies
    };
    let forward = replies([&title, &main, &after]);
    assert_eq!(forward, replies([&after, &main, &title]));
    let reply_to = |request: &Value| {
        let body = request.to_string();
        forward.iter().find(|(sent, _)| *sent == body).map(|(_, reply)| reply.clone()).unwrap()
    };
    assert_eq!(reply_to(&title), format!("text {DEFAULT_TEXT:?}"), "the title call has no tools, so no tool call");
    assert!(reply_to(&main).starts_with("tool write "), "{}", reply_to(&main));
    assert_eq!(reply_to(&after), "text \"wrote hello.txt\"");
}

#[test]
fn rules_can_be_narrowed_by_api_and_defaults_follow_tool_results() {
    let script = Script::new()
        .rule(When::request().api(Api::Gemini).reply(Reply::text("only gemini")))
        .rule(When::request().offers_tools(false).user_says("bare").reply(Reply::text("no tools here")));
    let model = MockModel::start(script);
    let gemini = post(&model, "/v1beta/models/m:generateContent", gemini_request(json!([{"parts": [{"text": "x"}]}])));
    assert_eq!(gemini.json()["candidates"][0]["content"]["parts"][0]["text"], "only gemini");
    let bare = post(&model, "/v1/chat/completions", chat_request(json!([{"role": "user", "content": "bare"}]), false));
    assert_eq!(joined(&bare.events(), "/choices/0/delta/content"), "no tools here");
    let with_tools =
        post(&model, "/v1/chat/completions", chat_request(json!([{"role": "user", "content": "bare"}]), true));
    assert_eq!(joined(&with_tools.events(), "/choices/0/delta/content"), DEFAULT_TEXT);
    let after = json!([{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "z", "content": "ok"}]);
    let after = post(&model, "/v1/chat/completions", chat_request(after, true));
    assert_eq!(joined(&after.events(), "/choices/0/delta/content"), DONE_TEXT);
}

// ---- hold and release

/// Read from `stream` into `buffer` until it contains `needle`.
fn read_until(stream: &mut TcpStream, buffer: &mut Vec<u8>, needle: &str) {
    let mut chunk = [0; 4096];
    while !String::from_utf8_lossy(buffer).contains(needle) {
        let n = stream.read(&mut chunk).expect("read from the mock");
        assert!(n > 0, "the connection closed before {needle:?}: {}", String::from_utf8_lossy(buffer));
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn start_held() -> (MockModel, TcpStream, Vec<u8>) {
    let model = MockModel::start(
        Script::new().rule(When::request().user_says("hang").reply(Reply::hold(Reply::text("late answer")))),
    );
    let mut request = claude_request(json!([{"role": "user", "content": "hang"}]));
    request["tools"] = json!([]);
    let mut stream = connect(&model, "POST", "/v1/messages", &request, &[]);
    let mut head = Vec::new();
    // The end of the first event's chunk: its blank line, then the chunk's CRLF.
    read_until(&mut stream, &mut head, "\n\n\r\n");
    assert!(String::from_utf8_lossy(&head).contains("event: message_start"));
    wait_for(DEADLINE, "the mock to hold the connection", || model.held() == 1);
    (model, stream, head)
}

#[test]
fn a_held_stream_sends_its_head_then_waits_for_release() {
    let (model, mut stream, mut received) = start_held();
    assert!(!String::from_utf8_lossy(&received).contains("content_block_start"), "only the head is sent");
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let error = stream.read(&mut [0; 64]).expect_err("nothing more arrives while held");
    assert!(matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{error}");
    assert_eq!(model.requests().len(), 1, "a held request is already recorded");
    assert_eq!(model.requests()[0].reply, "hold, then text \"late answer\"");

    model.release_held();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.read_to_end(&mut received).unwrap();
    let response = parse(&String::from_utf8(received).unwrap());
    assert!(response.complete);
    let events = response.events();
    assert_eq!(joined(&events, "/delta/text"), "late answer");
    assert_eq!(names(&events).last(), Some(&"message_stop"));
    assert!(try_wait_for(DEADLINE, || model.held() == 0));
}

#[test]
fn a_held_json_reply_sends_nothing_until_release() {
    let model = MockModel::start(Script::new().rule(When::request().reply(Reply::hold(Reply::text("late")))));
    let ask = gemini_request(json!([{"parts": [{"text": "x"}]}]));
    let mut stream = connect(&model, "POST", "/v1beta/models/m:generateContent", &ask, &[]);
    wait_for(DEADLINE, "the mock to hold the connection", || model.held() == 1);
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let error = stream.read(&mut [0; 64]).expect_err("not even the status line arrives while held");
    assert!(matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{error}");

    model.release_held();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let answer = read_response(stream).json();
    assert_eq!(answer["candidates"][0]["content"]["parts"][0]["text"], "late");
}

#[test]
fn dropping_the_server_cuts_a_held_stream_short() {
    let (model, mut stream, mut received) = start_held();
    drop(model);
    stream.read_to_end(&mut received).expect("the connection closes");
    let response = parse(&String::from_utf8(received).unwrap());
    assert!(!response.complete, "the chunked stream has no end: {}", response.body);
    assert!(!response.body.contains("message_stop"));
}

// ---- the record

#[test]
fn every_request_is_recorded_with_what_was_asked_and_answered() {
    let model = MockModel::start(write_hello());
    let ask = claude_request(json!([{"role": "user", "content": [{"type": "text", "text": "write hello"}]}]));
    read_response(connect(
        &model,
        "POST",
        "/v1/messages?beta=true",
        &ask,
        &[("x-api-key", "sk-ant-mock"), ("Anthropic-Version", "2023-06-01")],
    ));
    let after = chat_request(
        json!([{"role": "user", "content": "write hello"},
               {"role": "assistant", "tool_calls": [write_call()]},
               {"role": "tool", "tool_call_id": "c1", "content": "ok"}]),
        true,
    );
    post(&model, "/v1/chat/completions", after);

    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(
        (first.method.as_str(), first.path.as_str(), first.query.as_str()),
        ("POST", "/v1/messages", "beta=true")
    );
    assert_eq!(
        (first.header("X-API-Key"), first.header("anthropic-version")),
        (Some("sk-ant-mock"), Some("2023-06-01"))
    );
    assert_eq!((first.api, first.stream), (Some(Api::Anthropic), true));
    assert_eq!(first.tools, ["Bash", "Write"]);
    assert_eq!((first.last_user_text.as_str(), first.last_is_tool_result), ("write hello", false));
    assert!(first.reply.starts_with("tool Write "), "{}", first.reply);
    assert!(first.contains("Primary working directory") && !first.contains("no such text"));
    assert_eq!(first.body["model"], "claude-sonnet-4-5");

    let second = &requests[1];
    assert_eq!(
        (second.api, second.last_is_tool_result, second.tool_result_of.as_deref()),
        (Some(Api::ChatCompletions), true, Some("write"))
    );
    assert_eq!(second.reply, "text \"wrote hello.txt\"");
}

#[test]
fn the_base_url_is_the_bound_address() {
    let model = MockModel::start(Script::new());
    let url = model.base_url();
    let port: u16 = url.strip_prefix("http://127.0.0.1:").and_then(|p| p.parse().ok()).expect("http://127.0.0.1:PORT");
    assert_eq!(port, model.addr.port());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
}
