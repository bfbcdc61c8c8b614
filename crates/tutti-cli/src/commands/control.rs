//! Commands that act on a run from outside its driver: `tutti approve`, `tutti post`, `tutti cancel`. They
//! queue a command that the run's driver journals; with no driver attached, the next `tutti resume` does.
//! They are for people: one from inside an effect's process tree is refused (`caller.rs`), and each one
//! carries who gave it, which the driver journals as `control_applied`.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};
use tutti_journal::{Command, CommandQueue, ErrorInfo, Event, NewEvent, Outcome, Payload, Store};

use crate::caller;
use crate::commands::inspect::{effects, now_ms};
use crate::commands::{find_run, open_store};
use crate::config::Config;
use crate::output::{self, EXIT_FAILED, EXIT_OK, UserError};

/// The effect must exist and still wait for its result, with no answer queued for it yet; the caller must be
/// a person, not an agent inside one of the run's effects.
fn pending_effect(store: &dyn Store, run: &str, effect: &str, what: &str) -> Result<String> {
    let summary = store.run(&run.to_string())?.ok_or_else(|| UserError::new(format!("run {run} not found")))?;
    if summary.status.is_terminal() {
        return Err(UserError::new(format!("run {run} is already {}", summary.status.as_str())).into());
    }
    let records = store.read(&run.to_string(), 0)?;
    caller::refuse_inside_effect(store, run, &records, what)?;
    let all = effects(&records);
    let Some((_, view)) = all.iter().find(|(id, _)| id == effect) else {
        return Err(UserError::new(format!("run {run} has no effect {effect} (see `tutti status {run}`)")).into());
    };
    if matches!(view.state, "ok" | "error" | "cancelled") {
        return Err(UserError::new(format!("effect {effect} of run {run} is already resolved ({})", view.state)).into());
    }
    if let Some(first) = queued_answer(store, run, effect)? {
        return Err(UserError::new(format!(
            "effect {effect} of run {run} already has an answer waiting for its driver: {first}; a second one is refused"
        ))
        .into());
    }
    Ok(view.kind.clone())
}

/// The answer already queued for `effect`, described for a person, if there is one.
fn queued_answer(store: &dyn CommandQueue, run: &str, effect: &str) -> Result<Option<String>> {
    let first = store.queued_commands(&run.to_string())?.into_iter().find_map(|c| match c {
        Command::Resolve { effect: e, outcome, by } if e == effect => Some((outcome, by)),
        _ => None,
    });
    Ok(first.map(|(outcome, by)| {
        let what = match &outcome {
            Outcome::Ok { value: Payload::Inline(v) } => match v.get("approved").and_then(Value::as_bool) {
                Some(true) => "an approval".to_string(),
                Some(false) => "a rejection".to_string(),
                None => format!("the value {v}"),
            },
            Outcome::Ok { .. } => "a value".to_string(),
            Outcome::Error { error } => format!("the error {}: {}", error.name, error.message),
        };
        match by {
            Some(by) => format!("{what} from {}@{} (pid {})", by.user, by.host, by.pid),
            None => what,
        }
    }))
}

fn queue(store: &mut dyn Store, run: &str, command: &Command, what: &str) -> Result<i32> {
    store.post_command(&run.to_string(), command)?;
    if crate::commands::live_driver(store, run)?.is_some() {
        output::note(&format!("{what}; the run's driver picks it up"));
    } else {
        output::note(&format!("{what}; no driver is attached: `tutti resume {run}` continues the run"));
    }
    Ok(EXIT_OK)
}

pub(crate) fn approve(config: &Config, run: &str, effect: &str, reject: bool, response: Option<String>) -> Result<i32> {
    let mut store = open_store(config)?;
    let run = find_run(store.as_ref(), run)?;
    let command = approval(store.as_ref(), &run, effect, reject, response, caller::actor())?;
    let what = if reject { "rejection queued" } else { "approval queued" };
    queue(store.as_mut(), &run, &command, what)
}

/// The command that answers breakpoint `effect` of `run`, after the checks of [`pending_effect`]: the one path
/// for `tutti approve` and the dashboard's buttons.
pub(crate) fn approval(
    store: &dyn Store,
    run: &str,
    effect: &str,
    reject: bool,
    response: Option<String>,
    by: tutti_journal::Actor,
) -> Result<Command> {
    let kind = pending_effect(store, run, effect, "approve")?;
    if kind != "breakpoint" {
        return Err(
            UserError::new(format!("effect {effect} is a {kind} task, not a breakpoint (use `tutti post`)")).into()
        );
    }
    let mut value = json!({ "approved": !reject });
    if let Some(r) = response {
        value["response"] = Value::String(r);
    }
    let outcome = Outcome::Ok { value: Payload::Inline(value) };
    Ok(Command::Resolve { effect: effect.into(), outcome, by: Some(by) })
}

pub(crate) fn post(
    config: &Config,
    run: &str,
    effect: &str,
    value: Option<String>,
    error: Option<String>,
) -> Result<i32> {
    let mut store = open_store(config)?;
    let run = find_run(store.as_ref(), run)?;
    pending_effect(store.as_ref(), &run, effect, "post")?;
    let outcome = match (value, error) {
        (Some(v), _) => {
            let v: Value =
                serde_json::from_str(&v).map_err(|e| UserError::new(format!("--value is not valid JSON: {e}")))?;
            Outcome::Ok { value: Payload::Inline(v) }
        }
        (None, Some(e)) => {
            let error: ErrorInfo = serde_json::from_str(&e).map_err(|err| {
                UserError::new(format!("--error must be JSON like {{\"name\": \"...\", \"message\": \"...\"}}: {err}"))
            })?;
            Outcome::Error { error }
        }
        (None, None) => return Err(UserError::new("give --value JSON or --error JSON").into()),
    };
    let command = Command::Resolve { effect: effect.into(), outcome, by: Some(caller::actor()) };
    queue(store.as_mut(), &run, &command, "result queued")
}

pub(crate) fn cancel(config: &Config, run: &str, reason: &str) -> Result<i32> {
    let mut store = open_store(config)?;
    let run = find_run(store.as_ref(), run)?;
    let summary = store.run(&run)?.ok_or_else(|| UserError::new(format!("run {run} not found")))?;
    if summary.status.is_terminal() {
        return Err(UserError::new(format!("run {run} is already {}", summary.status.as_str())).into());
    }
    caller::refuse_inside_effect(store.as_ref(), &run, &store.read(&run, 0)?, "cancel")?;
    if crate::commands::live_driver(store.as_ref(), &run)?.is_none() {
        return cancel_detached(store.as_mut(), &run, reason);
    }
    store.post_command(&run, &Command::Cancel { reason: reason.to_string(), by: Some(caller::actor()) })?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if store.run(&run)?.is_some_and(|s| s.status.is_terminal()) {
            output::note(&format!("run {run} cancelled"));
            return Ok(EXIT_OK);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    output::note(&format!("cancellation queued, but the driver of run {run} has not confirmed it yet"));
    Ok(EXIT_FAILED)
}

/// No driver holds the run: take its lease and journal the cancellation ourselves.
fn cancel_detached(store: &mut dyn Store, run: &str, reason: &str) -> Result<i32> {
    use tutti_engine::Platform;
    let me = tutti_harness::LinuxPlatform.lease_holder();
    let run_id = run.to_string();
    if let tutti_journal::LeaseOutcome::Busy { .. } =
        store.acquire_lease(&run_id, &me, now_ms(), 10_000, &|h| tutti_harness::LinuxPlatform.holder_is_gone(h))?
    {
        return Err(UserError::new(format!("run {run} was just taken by a driver; try again")).into());
    }
    let records = store.read(&run_id, 0)?;
    let ts_ms = now_ms();
    let mut batch: Vec<NewEvent> = effects(&records)
        .into_iter()
        .filter(|(_, v)| matches!(v.state, "requested" | "running"))
        .map(|(effect, _)| NewEvent { ts_ms, event: Event::EffectCancelled { effect, reason: reason.to_string() } })
        .collect();
    let control = Event::ControlApplied { action: "cancel".into(), effect: None, by: caller::actor() };
    batch.insert(0, NewEvent { ts_ms, event: control });
    batch.push(NewEvent { ts_ms, event: Event::RunCancelled { reason: reason.to_string() } });
    store.append(&[(run_id.clone(), batch)])?;
    store.release_lease(&run_id, &me)?;
    output::note(&format!("run {run} cancelled"));
    Ok(EXIT_OK)
}
