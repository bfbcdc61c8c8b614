//! Gemini (`POST /v1beta/models/M:streamGenerateContent?alt=sse` and `:generateContent`), as Gemini CLI and the
//! Google providers of pi and opencode speak it: reading a request's function declarations and contents, and
//! writing `GenerateContentResponse` chunks (`candidates[].content.parts` text or `functionCall`, a
//! `finishReason` on the last, `usageMetadata` on each).

use serde_json::{Value, json};

use super::tools::Tool;
use super::wire::{Answer, Body, Conversation, Ctx, Event, halves};

pub(super) fn read(body: &Value) -> Conversation {
    let contents = body["contents"].as_array().map(Vec::as_slice).unwrap_or_default();
    let is_response = |content: &Value| parts(content).any(|part| part.get("functionResponse").is_some());
    let tool_result = contents
        .last()
        .filter(|last| is_response(last))
        .map(|last| parts(last).find_map(|part| part["functionResponse"]["name"].as_str().map(str::to_string)));
    let last_user_text = contents
        .iter()
        .rev()
        .filter(|c| c.get("role").is_none_or(|role| role == "user") && !is_response(c))
        .map(|c| parts(c).filter_map(|part| part["text"].as_str()).collect::<Vec<_>>().join("\n"))
        .find(|text| !text.is_empty())
        .unwrap_or_default();
    let declarations = body["tools"].as_array().into_iter().flatten();
    let declarations = declarations.flat_map(|t| t["functionDeclarations"].as_array().into_iter().flatten());
    let tools = declarations.filter_map(|d| {
        let schema = if d["parameters"].is_object() { &d["parameters"] } else { &d["parametersJsonSchema"] };
        Some(Tool::function(d["name"].as_str()?, schema))
    });
    let config = &body["generationConfig"];
    let schema = [&config["responseJsonSchema"], &config["responseSchema"]].into_iter().find(|s| s.is_object());
    Conversation {
        tools: tools.collect(),
        last_user_text,
        tool_result,
        response_schema: schema.cloned(),
        ..Conversation::default()
    }
}

fn parts(content: &Value) -> impl Iterator<Item = &Value> {
    content["parts"].as_array().into_iter().flatten()
}

pub(super) fn render(answer: &Answer, ctx: &Ctx) -> Body {
    let chunk = |parts: Value, last: bool| {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if last {
            candidate["finishReason"] = json!("STOP");
        }
        json!({"candidates": [candidate], "usageMetadata": usage(ctx), "modelVersion": ctx.model,
               "responseId": format!("mock{}", ctx.id)})
    };
    let (chunks, whole) = match answer {
        Answer::Text(text) => {
            let pieces = halves(text);
            let count = pieces.len();
            let chunks =
                pieces.into_iter().enumerate().map(|(n, piece)| chunk(json!([{"text": piece}]), n + 1 == count));
            (chunks.collect(), chunk(json!([{"text": text}]), true))
        }
        Answer::Call(call) => {
            let whole = chunk(json!([{"functionCall": {"name": call.name, "args": call.input.json()}}]), true);
            (vec![whole.clone()], whole)
        }
    };
    Body::stream(ctx.mode, chunks.into_iter().map(Event::data).collect(), || whole)
}

fn usage(ctx: &Ctx) -> Value {
    let u = ctx.usage;
    json!({
        "promptTokenCount": u.prompt_total(),
        "candidatesTokenCount": u.output,
        "totalTokenCount": u.prompt_total() + u.output,
        "cachedContentTokenCount": u.cache_read,
    })
}

pub(super) fn error(status: u16, message: &str) -> Value {
    let kind = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    json!({"error": {"code": status, "message": message, "status": kind}})
}
