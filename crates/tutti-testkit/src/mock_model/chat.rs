//! OpenAI Chat Completions (`POST /v1/chat/completions`), as pi's and opencode's OpenAI-compatible providers
//! speak it: reading a request's tools and messages, and writing a `chat.completion` or its stream of
//! `chat.completion.chunk`s (content or `tool_calls` deltas, a finish chunk, a usage chunk, `data: [DONE]`).
//! Also the OpenAI error body, shared with the Responses API.

use serde_json::{Value, json};

use super::tools::Tool;
use super::wire::{Answer, Body, Conversation, Ctx, Event, content_text, halves};

pub(super) fn read(body: &Value) -> Conversation {
    let messages = body["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    let tool_result = messages.last().filter(|m| m["role"] == "tool").map(|last| {
        let id = last["tool_call_id"].as_str();
        messages
            .iter()
            .flat_map(|m| m["tool_calls"].as_array().into_iter().flatten())
            .find(|call| call["id"].as_str() == id)
            .and_then(|call| call["function"]["name"].as_str().map(str::to_string))
    });
    let last_user_text = messages
        .iter()
        .rev()
        .filter(|m| m["role"] == "user")
        .map(|m| content_text(&m["content"], &["text"]))
        .find(|text| !text.is_empty())
        .unwrap_or_default();
    let tools = body["tools"].as_array().into_iter().flatten().filter(|t| t["type"] == "function");
    let format = &body["response_format"];
    Conversation {
        tools: tools
            .filter_map(|t| Some(Tool::function(t["function"]["name"].as_str()?, &t["function"]["parameters"])))
            .collect(),
        last_user_text,
        tool_result,
        response_schema: (format["type"] == "json_schema").then(|| format["json_schema"]["schema"].clone()),
        ..Conversation::default()
    }
}

pub(super) fn render(answer: &Answer, ctx: &Ctx) -> Body {
    let chunk = |delta: Value, finish_reason: Value| {
        json!({
            "id": completion_id(ctx), "object": "chat.completion.chunk", "created": ctx.created, "model": ctx.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        })
    };
    let call_id = format!("call_mock{}", ctx.id);
    let (mut events, finish_reason) = match answer {
        Answer::Text(text) => {
            let first = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
            let pieces = halves(text).into_iter().map(|piece| chunk(json!({"content": piece}), Value::Null));
            (std::iter::once(first).chain(pieces).collect::<Vec<_>>(), "stop")
        }
        Answer::Call(call) => {
            let function = json!({"name": call.name, "arguments": ""});
            let head = json!({"index": 0, "id": call_id, "type": "function", "function": function});
            let first = chunk(json!({"role": "assistant", "content": null, "tool_calls": [head]}), Value::Null);
            let text = call.input.text();
            let pieces = halves(&text).into_iter().map(|piece| {
                chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}), Value::Null)
            });
            (std::iter::once(first).chain(pieces).collect(), "tool_calls")
        }
    };
    events.push(chunk(json!({}), json!(finish_reason)));
    // OpenAI sends this only for `stream_options.include_usage`; it is harmless otherwise and lets every
    // client report usage.
    let mut usage_chunk = chunk(json!({}), Value::Null);
    usage_chunk["choices"] = json!([]);
    usage_chunk["usage"] = usage(ctx);
    events.push(usage_chunk);
    events.push(json!("[DONE]"));
    let whole = || {
        let message = match answer {
            Answer::Text(text) => json!({"role": "assistant", "content": text}),
            Answer::Call(call) => json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": call.name, "arguments": call.input.text()}}]}),
        };
        json!({
            "id": completion_id(ctx), "object": "chat.completion", "created": ctx.created, "model": ctx.model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
            "usage": usage(ctx),
        })
    };
    Body::stream(ctx.mode, events.into_iter().map(Event::data).collect(), whole)
}

fn completion_id(ctx: &Ctx) -> String {
    format!("chatcmpl-mock{}", ctx.id)
}

fn usage(ctx: &Ctx) -> Value {
    let u = ctx.usage;
    json!({
        "prompt_tokens": u.prompt_total(),
        "completion_tokens": u.output,
        "total_tokens": u.prompt_total() + u.output,
        "prompt_tokens_details": {"cached_tokens": u.cache_read},
        "completion_tokens_details": {"reasoning_tokens": 0},
    })
}

/// OpenAI's error body, for both OpenAI APIs.
pub(super) fn error(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        401 => ("invalid_request_error", json!("invalid_api_key")),
        429 => ("requests", json!("rate_limit_exceeded")),
        500.. => ("server_error", Value::Null),
        _ => ("invalid_request_error", Value::Null),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}
