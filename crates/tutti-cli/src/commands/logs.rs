//! `tutti logs RUN [EFFECT|GROUP/MEMBER] [--follow] [--raw] [--json]`: what the agents did, read from the
//! journal. For each attempt: the prompt it was given, each tool call and line of narration (from its CLI's event
//! stream, or its progress notes while it runs), the answer or the error, and its usage. `--raw` prints the event
//! stream as the CLI wrote it; `--follow` keeps printing a running turn's progress until the run ends.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};
use tutti_journal::{Blobs, EffectId, Event, Outcome, Payload, Record, Store};

use crate::commands::{find_run, open_store};
use crate::config::Config;
use crate::output::{self, EXIT_OK, UserError};

/// One attempt of one effect, as the journal tells it.
#[derive(Default)]
pub(crate) struct Attempt {
    effect: String,
    attempt: u32,
    harness: String,
    title: Option<String>,
    prompt: String,
    /// Notes from the stream (or progress while it ran), in order.
    notes: Vec<String>,
    raw: Option<String>,
    stderr: String,
    answer: Option<Value>,
    error: Option<String>,
    usage: Option<Value>,
}

/// Whether `effect` is what the user asked for: an effect id, a member (`GROUP/MEMBER`), or everything.
fn wanted(effect: &EffectId, target: Option<&str>) -> bool {
    match target {
        None => true,
        Some(t) => effect.as_str() == t || effect.member().is_some_and(|(g, m)| format!("{g}/{m}") == t),
    }
}

fn load(store: &dyn Blobs, payload: &Payload) -> Value {
    store.load(payload).unwrap_or(Value::Null)
}

pub(crate) fn attempts(store: &dyn Store, records: &[Record], target: Option<&str>) -> Vec<Attempt> {
    let mut tasks: BTreeMap<String, (Option<String>, Value)> = BTreeMap::new();
    let mut out: Vec<Attempt> = Vec::new();
    let find = |out: &mut Vec<Attempt>, effect: &str, attempt: Option<u32>| -> Option<usize> {
        out.iter().rposition(|a| a.effect == effect && attempt.is_none_or(|n| a.attempt == n))
    };
    for r in records {
        match &r.event {
            Event::EffectRequested { effect, title, task, .. } if wanted(effect, target) => {
                tasks.insert(effect.to_string(), (title.clone(), load(store, task)));
            }
            Event::EffectStarted { effect, attempt, harness, .. } if wanted(effect, target) => {
                let (title, task) = tasks.get(effect.as_str()).cloned().unwrap_or_default();
                let prompt = if task.is_null() { String::new() } else { tutti_harness::render_prompt(&task) };
                let (effect, attempt, harness) = (effect.to_string(), *attempt, harness.clone());
                out.push(Attempt { effect, attempt, harness, title, prompt, ..Attempt::default() });
            }
            Event::EffectProgress { effect, message } => {
                if let Some(i) = find(&mut out, effect, None) {
                    out[i].notes.push(message.clone());
                }
            }
            Event::EffectTranscript { effect, attempt, stdout, stderr, .. } => {
                if let Some(i) = find(&mut out, effect, Some(*attempt)) {
                    let text = load(store, stdout).as_str().unwrap_or_default().to_string();
                    // The whole stream replaces the capped progress notes.
                    let notes: Vec<String> = text
                        .lines()
                        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                        .flat_map(|e| tutti_harness::agent::progress_of(&e))
                        .collect();
                    if !notes.is_empty() {
                        out[i].notes = notes;
                    }
                    out[i].raw = Some(text);
                    out[i].stderr = stderr.clone();
                }
            }
            Event::EffectUsage { effect, attempt, usage, .. } => {
                if let Some(i) = find(&mut out, effect, Some(*attempt)) {
                    out[i].usage = serde_json::to_value(usage).ok();
                }
            }
            Event::EffectResolved { effect, attempt, outcome } => {
                if let Some(i) = find(&mut out, effect, Some(*attempt)) {
                    match outcome {
                        Outcome::Ok { value } => out[i].answer = Some(load(store, value)),
                        Outcome::Error { error } => out[i].error = Some(format!("{}: {}", error.name, error.message)),
                    }
                }
            }
            Event::EffectCancelled { effect, reason } => {
                if let Some(i) = find(&mut out, effect, None).filter(|&i| out[i].answer.is_none()) {
                    out[i].error = Some(format!("cancelled: {reason}"));
                }
            }
            _ => {}
        }
    }
    out
}

pub(crate) fn render(a: &Attempt) -> String {
    let title = a.title.as_deref().map(|t| format!(" \"{}\"", output::escape_controls(t))).unwrap_or_default();
    let mut text = format!("== {}{title}, attempt {} on {}", a.effect, a.attempt, a.harness);
    if !a.prompt.is_empty() {
        text.push_str("\nprompt:");
        for line in a.prompt.trim_end().lines() {
            text.push_str(&format!("\n  {}", output::escape_controls(line)));
        }
    }
    for note in &a.notes {
        text.push_str(&format!("\n{}", output::escape_controls(note)));
    }
    if let Some(answer) = &a.answer {
        let shown = answer.get("text").and_then(Value::as_str).map(String::from).unwrap_or_else(|| answer.to_string());
        text.push_str(&format!("\nanswer: {}", output::escape_controls(&shown)));
    }
    if let Some(error) = &a.error {
        text.push_str(&format!("\nfailed: {}", output::escape_controls(error)));
        if !a.stderr.trim().is_empty() {
            let tail: Vec<&str> = a.stderr.trim_end().lines().rev().take(5).collect();
            for line in tail.into_iter().rev() {
                text.push_str(&format!("\n  stderr: {}", output::escape_controls(line)));
            }
        }
    }
    if let Some(u) = &a.usage {
        let n = |k: &str| u[k].as_u64().unwrap_or(0);
        text.push_str(&format!("\nusage: {} in / {} out tokens", n("input_tokens"), n("output_tokens")));
        if let Some(usd) = u["cost_usd"].as_f64() {
            text.push_str(&format!(", ${usd:.4}"));
        }
    }
    text
}

/// `tutti logs`.
pub(crate) fn logs(
    config: &Config,
    run: &str,
    target: Option<&str>,
    raw: bool,
    json: bool,
    follow: bool,
) -> Result<i32> {
    let store = open_store(config)?;
    let id = find_run(store.as_ref(), run)?;
    let records = store.read(&id, 0)?;
    let found = attempts(store.as_ref(), &records, target);
    if found.is_empty() && !follow {
        let what = target.map_or("no effect of it".to_string(), |t| format!("no attempt of {t}"));
        return Err(UserError::new(format!(
            "run {id}: {what} has started yet (`tutti status {id}` lists its effects; a member is GROUP/MEMBER)"
        ))
        .into());
    }
    if json {
        let list: Vec<Value> = found
            .iter()
            .map(|a| {
                json!({ "effect": a.effect, "attempt": a.attempt, "harness": a.harness, "title": a.title,
                        "prompt": a.prompt, "notes": a.notes, "answer": a.answer, "error": a.error, "usage": a.usage,
                        "stderr": a.stderr, "stdout": if raw { json!(a.raw) } else { Value::Null } })
            })
            .collect();
        output::json(&Value::Array(list));
        return Ok(EXIT_OK);
    }
    for a in &found {
        if raw {
            output::data(&format!("== {} attempt {} on {}", a.effect, a.attempt, a.harness));
            output::data(
                a.raw.as_deref().unwrap_or("(no transcript: the attempt is running, or its harness keeps none)"),
            );
        } else {
            output::data(&render(a));
        }
    }
    if !follow {
        return Ok(EXIT_OK);
    }
    // Print what comes next of the wanted effects, as it is journaled.
    let mut after = records.last().map_or(0, |r| r.seq);
    loop {
        for r in store.read(&id, after)? {
            after = r.seq;
            let line = match &r.event {
                Event::EffectStarted { effect, attempt, harness, .. } if wanted(effect, target) => {
                    format!("== {effect}, attempt {attempt} on {harness}")
                }
                Event::EffectProgress { effect, message } if wanted(effect, target) => format!("{effect}: {message}"),
                Event::EffectResolved { effect, outcome, .. } if wanted(effect, target) => match outcome {
                    Outcome::Ok { value } => format!("{effect}: answer: {}", load(store.as_ref(), value)),
                    Outcome::Error { error } => format!("{effect}: failed: {}: {}", error.name, error.message),
                },
                _ => continue,
            };
            output::data(&output::escape_controls(&line));
        }
        let ended = store.run(&id)?.is_none_or(|s| s.status.is_terminal());
        if ended || crate::commands::live_driver(store.as_ref(), &id)?.is_none() {
            return Ok(EXIT_OK);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
