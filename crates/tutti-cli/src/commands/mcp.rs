//! `tutti mcp`: a Model Context Protocol server on stdio (JSON-RPC 2.0, one message per line) that gives an
//! agent inside a running effect the same bridge as `tutti msg`: tools `send`, `inbox` and `progress`.
//! Adapters register it with the agent CLIs that speak MCP; identity comes from the effect's environment.

use std::io::BufRead;

use anyhow::Result;
use serde_json::{Value, json};

use crate::commands::msg::{self, Caller};
use crate::commands::open_store;
use crate::config::Config;
use crate::output::{self, EXIT_OK};

const PROTOCOL: &str = "2025-03-26";

pub(crate) fn mcp(config: &Config) -> Result<i32> {
    let me = msg::caller()?;
    let mut store = open_store(config)?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Value>(&line) {
            Ok(request) => handle(store.as_mut(), &me, &request),
            Err(e) => Some(error(Value::Null, -32700, &format!("parse error: {e}"))),
        };
        if let Some(reply) = reply {
            output::json_line(&reply);
        }
    }
    Ok(EXIT_OK)
}

/// The reply to one JSON-RPC message (None for notifications).
fn handle(store: &mut dyn tutti_journal::Store, me: &Caller, request: &Value) -> Option<Value> {
    let id = request.get("id").cloned()?;
    let method = request["method"].as_str().unwrap_or("");
    let result = match method {
        "initialize" => {
            let version = request["params"]["protocolVersion"].as_str().unwrap_or(PROTOCOL);
            json!({
                "protocolVersion": version,
                "capabilities": { "tools": { "listChanged": false } },
                "serverInfo": { "name": "tutti", "version": env!("CARGO_PKG_VERSION") },
            })
        }
        "ping" => json!({}),
        "tools/list" => json!({ "tools": tools() }),
        "tools/call" => call(store, me, &request["params"]),
        _ => return Some(error(id, -32601, &format!("method not found: {method}"))),
    };
    Some(json!({ "jsonrpc": "2.0", "id": id, "result": result }))
}

fn tools() -> Value {
    json!([
        {
            "name": "send",
            "description": "Send a message to the run's coordinator or to another member (GROUP/MEMBER, GROUP/*).",
            "inputSchema": {
                "type": "object",
                "properties": { "to": { "type": "string", "description": "coordinator, GROUP/MEMBER or GROUP/*" },
                                "text": { "type": "string" } },
                "required": ["to", "text"],
            },
        },
        {
            "name": "inbox",
            "description": "The messages sent to you in this run, oldest first.",
            "inputSchema": { "type": "object", "properties": {} },
        },
        {
            "name": "progress",
            "description": "Report progress on your task to the orchestrator.",
            "inputSchema": { "type": "object", "properties": { "message": { "type": "string" } }, "required": ["message"] },
        },
    ])
}

/// Run one tool; failures are tool results with `isError`, as MCP wants, not protocol errors.
fn call(store: &mut dyn tutti_journal::Store, me: &Caller, params: &Value) -> Value {
    let args = &params["arguments"];
    let text = |key: &str| args[key].as_str().map(String::from);
    let outcome: Result<String> = match params["name"].as_str().unwrap_or("") {
        "send" => match (text("to"), text("text")) {
            (Some(to), Some(body)) => {
                msg::send(store, me, to.clone(), Value::String(body)).map(|()| format!("sent to {to}"))
            }
            _ => Err(anyhow::anyhow!("send needs `to` and `text`")),
        },
        "inbox" => msg::inbox(store, me).map(|m| Value::Array(m).to_string()),
        "progress" => match text("message") {
            Some(m) => msg::progress(store, me, m).map(|()| "noted".to_string()),
            None => Err(anyhow::anyhow!("progress needs `message`")),
        },
        other => Err(anyhow::anyhow!("unknown tool {other}")),
    };
    match outcome {
        Ok(text) => json!({ "content": [{ "type": "text", "text": text }], "isError": false }),
        Err(e) => json!({ "content": [{ "type": "text", "text": e.to_string() }], "isError": true }),
    }
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}
