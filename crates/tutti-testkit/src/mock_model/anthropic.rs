//! Anthropic Messages (`POST /v1/messages`), as Claude Code and the Anthropic providers of pi and opencode
//! speak it: reading a request's tools and messages, and writing a Message or its SSE stream
//! (`message_start`, `content_block_start`/`_delta`/`_stop`, `message_delta` with usage, `message_stop`).

use serde_json::{Value, json};

use super::tools::Tool;
use super::wire::{Answer, Body, Conversation, Ctx, Event, content_text, halves};

pub(super) fn read(body: &Value) -> Conversation {
    let tools = body["tools"].as_array().into_iter().flatten();
    let messages = body["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    let is_tool_result = |message: &Value| blocks(message).any(|b| b["type"] == "tool_result");
    let tool_result = messages.last().filter(|m| m["role"] == "user" && is_tool_result(m)).map(|last| {
        let id = blocks(last).find(|b| b["type"] == "tool_result").and_then(|b| b["tool_use_id"].as_str());
        messages
            .iter()
            .flat_map(blocks)
            .find(|b| b["type"] == "tool_use" && b["id"].as_str() == id)
            .and_then(|b| b["name"].as_str().map(str::to_string))
    });
    let last_user_text = messages
        .iter()
        .rev()
        .filter(|m| m["role"] == "user" && !is_tool_result(m))
        .map(|m| content_text(&m["content"], &["text"]))
        .find(|text| !text.is_empty())
        .unwrap_or_default();
    Conversation {
        tools: tools.filter_map(|t| Some(Tool::function(t["name"].as_str()?, &t["input_schema"]))).collect(),
        last_user_text,
        tool_result,
        ..Conversation::default()
    }
}

fn blocks(message: &Value) -> impl Iterator<Item = &Value> {
    message["content"].as_array().into_iter().flatten()
}

pub(super) fn render(answer: &Answer, ctx: &Ctx) -> Body {
    let (block, stop_reason) = match answer {
        Answer::Call(call) => (
            json!({"type": "tool_use", "id": tool_use_id(ctx), "name": call.name, "input": call.input.json()}),
            "tool_use",
        ),
        Answer::Text(text) => (json!({"type": "text", "text": text}), "end_turn"),
    };
    let message = |content: Value, stop_reason: Value, output_tokens: u64| {
        json!({
            "id": format!("msg_mock{}", ctx.id), "type": "message", "role": "assistant", "model": ctx.model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": null,
            "usage": usage(ctx, output_tokens),
        })
    };
    let mut events = vec![
        Event::named("message_start", json!({"type": "message_start", "message": message(json!([]), Value::Null, 1)})),
        Event::named(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": start_of(&block)}),
        ),
        Event::named("ping", json!({"type": "ping"})),
    ];
    let (delta_type, field, whole) = match answer {
        Answer::Call(call) => ("input_json_delta", "partial_json", call.input.text()),
        Answer::Text(text) => ("text_delta", "text", text.clone()),
    };
    for piece in halves(&whole) {
        let delta = json!({"type": delta_type, field: piece});
        events.push(Event::named(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        ));
    }
    events.extend([
        Event::named("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        Event::named(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                   "usage": usage(ctx, ctx.usage.output)}),
        ),
        Event::named("message_stop", json!({"type": "message_stop"})),
    ]);
    Body::stream(ctx.mode, events, || message(json!([block]), json!(stop_reason), ctx.usage.output))
}

/// A block as `content_block_start` announces it: a tool call's input arrives later, as deltas.
fn start_of(block: &Value) -> Value {
    let mut start = block.clone();
    if block["type"] == "tool_use" {
        start["input"] = json!({});
    } else {
        start["text"] = json!("");
    }
    start
}

fn tool_use_id(ctx: &Ctx) -> String {
    format!("toolu_mock{}", ctx.id)
}

fn usage(ctx: &Ctx, output_tokens: u64) -> Value {
    json!({
        "input_tokens": ctx.usage.input,
        "cache_creation_input_tokens": ctx.usage.cache_write,
        "cache_read_input_tokens": ctx.usage.cache_read,
        "output_tokens": output_tokens,
    })
}

pub(super) fn error(status: u16, message: &str) -> Value {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}})
}
