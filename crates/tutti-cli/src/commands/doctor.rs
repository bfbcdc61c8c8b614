//! `tutti doctor`: which harnesses this project can use — each configured harness with its capabilities,
//! limits and availability, and each agent CLI tutti knows, found or not, with the command that fixes what
//! is missing — and the whole journal checked for damage (other commands skip that check while tutti's seal
//! on the journal holds).

use anyhow::Result;
use serde_json::{Value, json};

use crate::config::Config;
use crate::output::{self, EXIT_OK};

/// The agent CLIs tutti has adapters for: name, npm package at the version tested, API key variable.
const CLIS: &[(&str, &str, &str)] = &[
    ("claude", "@anthropic-ai/claude-code@2.1.332", "ANTHROPIC_API_KEY"),
    ("codex", "@openai/codex@0.169.0", "OPENAI_API_KEY"),
    ("gemini", "@google/gemini-cli@0.61.0", "GEMINI_API_KEY"),
    ("pi", "@mariozechner/pi-coding-agent@0.73.1", "ANTHROPIC_API_KEY"),
    ("opencode", "opencode-ai@1.18.33", "OPENAI_API_KEY"),
];

pub(crate) fn doctor(config: &Config, json: bool) -> Result<i32> {
    let harnesses = config.harnesses(None)?;
    let configured: Vec<Value> = harnesses
        .names()
        .filter_map(|name| harnesses.get(name))
        .map(|h| {
            let problem = h.availability().err();
            json!({
                "name": h.name(),
                "available": problem.is_none(),
                "problem": problem,
                "version": h.version(),
                "capabilities": h.capabilities(),
                "maxParallel": h.max_parallel(),
                "default": config.default_harness.as_deref() == Some(h.name()),
                "config": config.effective(h.name()),
            })
        })
        .collect();
    // Asking five CLIs for their versions takes seconds each: ask them all at once.
    let clis: Vec<Value> = std::thread::scope(|scope| {
        let asks: Vec<_> = CLIS
            .iter()
            .map(|(name, package, key)| {
                let gateway = config.has_gateway_for(name);
                scope.spawn(move || cli(name, package, key, gateway))
            })
            .collect();
        asks.into_iter().map(|a| a.join().unwrap_or(Value::Null)).collect()
    });
    // The price table usage without a reported cost is priced from (US dollars per million tokens).
    let prices: Vec<Value> = config
        .prices
        .iter()
        .map(|(model, p, source)| {
            json!({ "model": model, "input": p.input, "output": p.output, "cacheRead": p.cache_read,
                    "cacheWrite": p.cache_write, "source": source })
        })
        .collect();
    let journal = journal(config);
    let damaged = journal["damage"].is_string();
    let report = json!({ "root": config.root.display().to_string(), "harnesses": configured, "clis": clis,
                         "prices": prices, "journal": journal });
    if json {
        output::json(&report);
    } else {
        output::data(&text(&report));
    }
    Ok(if damaged { output::EXIT_USAGE } else { EXIT_OK })
}

/// The project's journal checked whole, whether or not it is sealed: where it is, its runs and events, and
/// the damage found (`null` when none), or `null` when the project has no journal yet.
fn journal(config: &Config) -> Value {
    let shown = config.store.shown();
    let checked = match &config.store {
        crate::config::StoreLocation::Sqlite(db) if !db.exists() => return Value::Null,
        at => super::reopen_at(at).and_then(|store| {
            store.verify()?;
            Ok(store.runs()?)
        }),
    };
    match checked {
        Ok(runs) => json!({ "path": shown, "runs": runs.len(), "events": runs.iter().map(|r| r.events).sum::<u64>(),
                            "damage": null }),
        Err(err) => json!({ "path": shown, "damage": format!("{err:#}") }),
    }
}

/// A known CLI as its adapter sees it with no configuration: installed or not, version, capabilities.
/// `gateway`: a harness of this project runs it against a `base_url`, so its provider key is not needed.
fn cli(name: &str, package: &str, key: &str, gateway: bool) -> Value {
    let adapter = crate::config::agent_harness(name, name, &tutti_harness::AgentConfig::default());
    let mut missing = Vec::new();
    let found = match adapter.availability() {
        Ok(()) => true,
        Err(why) => {
            missing.push(format!("{why} — install it: npm i -g {package} (or .ci/install-clis.sh for the pinned set)"));
            false
        }
    };
    if !gateway && std::env::var_os(key).is_none() {
        missing.push(format!("set {key}, or point the harness at a gateway with `base_url` in tutti.toml"));
    }
    json!({
        "name": name,
        "package": package,
        "found": found,
        "version": if found { adapter.version() } else { None },
        "capabilities": adapter.capabilities(),
        "memoryPerTurnMb": adapter.memory_per_attempt_mb(),
        "missing": missing,
    })
}

/// The configuration in effect of a configured harness, on one indented line ("" for built-ins).
fn config_line(config: &Value) -> String {
    let kind = config["kind"].as_str().unwrap_or("");
    let words = |v: &Value| v.as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(" ");
    let mut parts = Vec::new();
    match kind {
        "built-in" | "" => return String::new(),
        "command" => parts.push(format!("command: {}", words(&config["command"]))),
        _ => {
            parts.push(format!("{kind} at {}", config["binary"].as_str().unwrap_or("(not found)")));
            for (label, key) in [("base_url", "baseUrl"), ("model", "model")] {
                if let Some(v) = config[key].as_str() {
                    parts.push(format!("{label} {v}"));
                }
            }
            if let Some(var) = config["apiKeyEnv"]["name"].as_str() {
                let set = if config["apiKeyEnv"]["set"] == true { "set" } else { "NOT set" };
                parts.push(format!("key ${var} ({set})"));
            }
            if !words(&config["args"]).is_empty() {
                parts.push(format!("args: {}", words(&config["args"])));
            }
            if !words(&config["passEnv"]).is_empty() {
                parts.push(format!("passes {}", words(&config["passEnv"])));
            }
        }
    }
    format!("\n  {:<12}   {}", "", parts.join("; "))
}

fn text(report: &Value) -> String {
    let mut out = format!("project  {}\n\nharnesses", report["root"].as_str().unwrap_or(""));
    for h in report["harnesses"].as_array().into_iter().flatten() {
        let caps: Vec<&str> = h["capabilities"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let state = match h["problem"].as_str() {
            Some(p) => format!("unavailable: {p}"),
            None => "ok".to_string(),
        };
        out.push_str(&format!(
            "\n  {:<12} {state}{}{}{}",
            h["name"].as_str().unwrap_or(""),
            if h["default"] == true { ", default" } else { "" },
            if caps.is_empty() { String::new() } else { format!(", can: {}", caps.join(" ")) },
            h["maxParallel"].as_u64().map(|n| format!(", at most {n} at once")).unwrap_or_default(),
        ));
        out.push_str(&config_line(&h["config"]));
    }
    out.push_str("\n\nagent CLIs");
    for c in report["clis"].as_array().into_iter().flatten() {
        let found = match (c["found"].as_bool(), c["version"].as_str()) {
            (Some(true), Some(v)) => format!("found, {v}"),
            (Some(true), None) => "found".to_string(),
            _ => "not found".to_string(),
        };
        let caps: Vec<&str> = c["capabilities"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        out.push_str(&format!("\n  {:<12} {found}; can: {}", c["name"].as_str().unwrap_or(""), caps.join(" ")));
        for m in c["missing"].as_array().into_iter().flatten() {
            out.push_str(&format!("\n  {:<12}   - {}", "", m.as_str().unwrap_or("")));
        }
    }
    let journal = &report["journal"];
    if let Some(path) = journal["path"].as_str() {
        let state = match journal["damage"].as_str() {
            Some(damage) => format!("DAMAGED: {damage}"),
            None => format!("checked whole: {} runs, {} events, no damage", journal["runs"], journal["events"]),
        };
        out.push_str(&format!("\n\njournal\n  {path}: {state}"));
    }
    out.push_str("\n\nprices (US dollars per million tokens: input / output / cache read / cache write; used when a CLI reports no cost)");
    for p in report["prices"].as_array().into_iter().flatten() {
        let n = |k: &str| p[k].as_f64().unwrap_or(0.0);
        out.push_str(&format!(
            "\n  {:<18} {} / {} / {} / {}  ({})",
            p["model"].as_str().unwrap_or(""),
            n("input"),
            n("output"),
            n("cacheRead"),
            n("cacheWrite"),
            p["source"].as_str().unwrap_or("")
        ));
    }
    out
}
