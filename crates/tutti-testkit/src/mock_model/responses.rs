//! OpenAI Responses (`POST /v1/responses`), as codex and the OpenAI providers of pi and opencode speak it:
//! reading a request's tools (function, custom, codex's MCP namespaces) and input items, and writing a
//! Response or its SSE stream (`response.created` … `response.output_item.done`, `response.completed` with
//! usage). Its error body is Chat Completions' (`chat.rs`).

use serde_json::{Value, json};

use super::tools::Tool;
use super::wire::{Answer, Body, Call, Conversation, Ctx, Event, Input, content_text, halves};

pub(super) fn read(body: &Value) -> Conversation {
    let items = body["input"].as_array().map(Vec::as_slice).unwrap_or_default();
    let tool_result = items.last().filter(|item| is_tool_output(item)).map(|last| {
        let call_id = last["call_id"].as_str();
        items
            .iter()
            .find(|item| item["call_id"].as_str() == call_id && !is_tool_output(item))
            .and_then(|call| call["name"].as_str().map(str::to_string))
    });
    let last_user_text = match &body["input"] {
        Value::String(text) => text.clone(),
        _ => items
            .iter()
            .rev()
            .filter(|item| item["role"] == "user" && item.get("type").is_none_or(|t| t == "message"))
            .map(|item| content_text(&item["content"], &["input_text", "text"]))
            .find(|text| !text.is_empty())
            .unwrap_or_default(),
    };
    let format = &body["text"]["format"];
    Conversation {
        tools: body["tools"].as_array().into_iter().flatten().flat_map(tools).collect(),
        last_user_text,
        tool_result,
        response_schema: (format["type"] == "json_schema").then(|| format["schema"].clone()),
        ..Conversation::default()
    }
}

fn is_tool_output(item: &Value) -> bool {
    item["type"].as_str().is_some_and(|t| t.ends_with("_call_output"))
}

/// The tools one entry of `tools` offers: a function, a custom tool, or a namespace of functions.
fn tools(entry: &Value) -> Vec<Tool> {
    let name = entry["name"].as_str().unwrap_or_default();
    match entry["type"].as_str() {
        Some("function") => vec![Tool::function(name, &entry["parameters"])],
        Some("custom") => vec![Tool { name: name.into(), custom: true, ..Tool::default() }],
        Some("namespace") => entry["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(tools)
            .map(|tool| Tool { namespace: Some(name.into()), ..tool })
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn render(answer: &Answer, ctx: &Ctx) -> Body {
    let (item, mut middle) = match answer {
        Answer::Text(text) => message(text, ctx),
        Answer::Call(call) => tool_call(call, ctx),
    };
    let mut events = vec![
        ("response.created", json!({"response": response(ctx, "in_progress", json!([]), Value::Null)})),
        ("response.in_progress", json!({"response": response(ctx, "in_progress", json!([]), Value::Null)})),
        ("response.output_item.added", json!({"output_index": 0, "item": in_progress(&item)})),
    ];
    events.append(&mut middle);
    events.push(("response.output_item.done", json!({"output_index": 0, "item": item})));
    let done = response(ctx, "completed", json!([item]), usage(ctx));
    events.push(("response.completed", json!({ "response": done })));
    let events = events
        .into_iter()
        .enumerate()
        .map(|(n, (kind, mut data))| {
            data["type"] = json!(kind);
            data["sequence_number"] = json!(n);
            Event::named(kind, data)
        })
        .collect();
    Body::stream(ctx.mode, events, || done)
}

type Events = Vec<(&'static str, Value)>;

/// A finished assistant message item, and the events that stream its text.
fn message(text: &str, ctx: &Ctx) -> (Value, Events) {
    let id = format!("msg_mock{}", ctx.id);
    let at = |key: &str, value: Value| json!({"item_id": id, "output_index": 0, "content_index": 0, key: value});
    let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
    let mut events = vec![("response.content_part.added", at("part", part("")))];
    for piece in halves(text) {
        events.push(("response.output_text.delta", at("delta", json!(piece))));
    }
    events.push(("response.output_text.done", at("text", json!(text))));
    events.push(("response.content_part.done", at("part", part(text))));
    let item = json!({"id": id, "type": "message", "status": "completed", "role": "assistant",
                      "content": [part(text)]});
    (item, events)
}

/// A finished function or custom tool call item, and the events that stream its arguments.
fn tool_call(call: &Call, ctx: &Ctx) -> (Value, Events) {
    let (kind, prefix, field, delta, done) = match call.input {
        Input::Json(_) => (
            "function_call",
            "fc",
            "arguments",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
        ),
        Input::Custom(_) => (
            "custom_tool_call",
            "ctc",
            "input",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.done",
        ),
    };
    let id = format!("{prefix}_mock{}", ctx.id);
    let text = call.input.text();
    let mut item = json!({"id": id, "type": kind, "status": "completed", "call_id": format!("call_mock{}", ctx.id),
                          "name": call.name, field: text});
    if let Some(namespace) = &call.namespace {
        item["namespace"] = json!(namespace);
    }
    let mut events: Events = halves(&text)
        .into_iter()
        .map(|piece| (delta, json!({"item_id": id, "output_index": 0, "delta": piece})))
        .collect();
    events.push((done, json!({"item_id": id, "output_index": 0, field: text})));
    (item, events)
}

/// An item as `response.output_item.added` announces it: in progress, its content still to come.
fn in_progress(item: &Value) -> Value {
    let mut item = item.clone();
    item["status"] = json!("in_progress");
    for (field, empty) in [("content", json!([])), ("arguments", json!("")), ("input", json!(""))] {
        if item.get(field).is_some() {
            item[field] = empty;
        }
    }
    item
}

fn response(ctx: &Ctx, status: &str, output: Value, usage: Value) -> Value {
    json!({
        "id": format!("resp_mock{}", ctx.id), "object": "response", "created_at": ctx.created, "status": status,
        "error": null, "incomplete_details": null, "model": ctx.model, "output": output,
        "parallel_tool_calls": true, "usage": usage,
    })
}

fn usage(ctx: &Ctx) -> Value {
    let u = ctx.usage;
    json!({
        "input_tokens": u.prompt_total(),
        "input_tokens_details": {"cached_tokens": u.cache_read},
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.prompt_total() + u.output,
    })
}
