//! `tutti iterate TARGET [--json]`: the external-driver loop, for an outer agent (Claude Code, a script) that
//! performs tasks itself. Each call starts a run of a process file, or replays a run's journal, and drives it
//! until it is blocked (every effect left waits for a posted result, a person or the clock), then lets go and
//! prints what waits: id, kind, task id, title, the rendered prompt, the output schema and the arguments.
//! `tutti post` / `tutti approve` queue the answers; the next `iterate` applies them and goes on.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use serde_json::{Value, json};
use tutti_engine::RunEnd;
use tutti_journal::{Blobs, Event, Record, RunStatus};

use crate::args::{DriveArgs, IterateArgs, ResumeArgs, RunArgs};
use crate::commands::inspect::effects;
use crate::commands::run::{self, Mode};
use crate::commands::{find_run, open_store};
use crate::config::Config;
use crate::output::{self, EXIT_FAILED, EXIT_OK, UserError};
use crate::signals;

pub(crate) fn iterate(config: &Config, args: IterateArgs) -> Result<i32> {
    let shutdown = signals::install();
    signals::after_interrupt(iterate_run(config, args, shutdown))
}

fn iterate_run(config: &Config, args: IterateArgs, shutdown: Arc<AtomicBool>) -> Result<i32> {
    let mode = Mode { until_blocked: true, no_exec: args.no_exec };
    let drive = DriveArgs { max_parallel: None, non_interactive: false, json: args.json };
    let existing = if config.is_project { find_run(open_store(config)?.as_ref(), &args.target).ok() } else { None };
    let (run_id, end, journal) = match existing {
        Some(run) => {
            if args.inputs.is_some() || args.harness.is_some() {
                return Err(UserError::new(format!(
                    "run {run} exists: --inputs and --harness only apply when iterate starts a run from a process file"
                ))
                .into());
            }
            run::proceed(config, ResumeArgs { run, accept_changes: false, drive }, shutdown.clone(), mode)?
        }
        None if Path::new(&args.target).is_file() => {
            let new = RunArgs {
                process: args.target.clone().into(),
                inputs: args.inputs,
                drive,
                harness: args.harness,
                simulate: None,
                remote: false,
                budget: Default::default(),
            };
            run::start(config, new, shutdown.clone(), mode)?
        }
        None => {
            return Err(UserError::new(format!(
                "{}: no such run and no such process file (iterate takes a run id, or a process file to start)",
                args.target
            ))
            .into());
        }
    };
    if end.interrupted && shutdown.load(Ordering::SeqCst) {
        output::note(&format!("{}: continue with `tutti iterate {run_id}`", signals::reason()));
        return Ok(signals::exit_code());
    }
    if !end.interrupted {
        run::after_run(config, &run_id, &end, journal);
    }
    // The run may just have made this folder a project.
    let store = crate::commands::open_or_create(config)?;
    let records = store.read(&run_id, 0)?;
    let report = report(store.as_ref(), &run_id, &end, &records)?;
    if args.json {
        output::json(&report);
    } else {
        output::data(&text(&report));
    }
    Ok(match end.status {
        RunStatus::Failed | RunStatus::Cancelled => EXIT_FAILED,
        _ => EXIT_OK,
    })
}

/// Where the run stands after this iteration, and what waits for the outer agent.
fn report(store: &dyn Blobs, run_id: &str, end: &RunEnd, records: &[Record]) -> Result<Value> {
    let status = if end.interrupted { "waiting" } else { end.status.as_str() };
    let mut pending = Vec::new();
    for (id, view) in effects(records).into_iter().filter(|(_, v)| matches!(v.state, "requested" | "running")) {
        let Some((task_id, args, task)) = records.iter().find_map(|r| match &r.event {
            Event::EffectRequested { effect, task_id, args, task, .. } if *effect == id => Some((task_id, args, task)),
            _ => None,
        }) else {
            continue;
        };
        let (task, args) = (store.load(task)?, store.load(args)?);
        // A breakpoint asks its question in its arguments; a task's prompt is in its description.
        let prompt = match view.kind.as_str() {
            "breakpoint" => args.get("question").and_then(Value::as_str).map_or_else(|| args.to_string(), String::from),
            _ => tutti_harness::render_prompt(&task),
        };
        let schema = tutti_engine::output_schema(&task);
        let answer = match view.kind.as_str() {
            "breakpoint" => format!("tutti approve {run_id} {id} [--reject]"),
            _ => format!("tutti post {run_id} {id} --value JSON"),
        };
        pending.push(json!({
            "effectId": id, "kind": view.kind, "taskId": task_id, "title": view.title,
            "prompt": prompt, "outputSchema": schema, "args": args,
            "task": task, "answerWith": answer,
        }));
    }
    Ok(json!({ "runId": run_id, "status": status, "pending": pending, "output": end.output, "error": end.error }))
}

fn text(report: &Value) -> String {
    let run = report["runId"].as_str().unwrap_or("");
    let mut out = format!("run {run}: {}", report["status"].as_str().unwrap_or(""));
    for p in report["pending"].as_array().into_iter().flatten() {
        let title = p["title"].as_str().map(|t| format!(" \"{t}\"")).unwrap_or_default();
        out.push_str(&format!(
            "\n\n== {} [{}]{title}",
            p["effectId"].as_str().unwrap_or(""),
            p["kind"].as_str().unwrap_or("")
        ));
        for line in p["prompt"].as_str().unwrap_or("").trim_end().lines() {
            out.push_str(&format!("\n  {}", output::escape_controls(line)));
        }
        if !p["outputSchema"].is_null() {
            out.push_str(&format!("\n  output schema: {}", p["outputSchema"]));
        }
        out.push_str(&format!("\n  answer with: {}", p["answerWith"].as_str().unwrap_or("")));
    }
    if report["status"] == "waiting" {
        out.push_str(&format!("\n\nthen: tutti iterate {run}"));
    } else if !report["output"].is_null() {
        out.push_str(&format!("\noutput: {}", report["output"]));
    } else if !report["error"].is_null() {
        out.push_str(&format!(
            "\nerror: {}: {}",
            report["error"]["name"].as_str().unwrap_or(""),
            report["error"]["message"].as_str().unwrap_or("")
        ));
    }
    out
}
