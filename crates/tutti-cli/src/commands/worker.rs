//! `tutti worker` and `tutti workers`: distributed mode's executors. A worker runs, on this machine and with
//! this folder's harnesses, the attempts drivers offer to the PostgreSQL journal's work queue; `workers`
//! lists the ones that reach it. The queue and the worker loop are `tutti_journal::work` and
//! `tutti_harness::worker`.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use tutti_harness::worker::{Worker, WorkerEvent, WorkerOptions};
use tutti_journal::{Listen, PgWorkQueue, WorkQueue};

use super::{now_ms, utc};
use crate::args::WorkerArgs;
use crate::config::{Config, StoreLocation};
use crate::output::{self, EXIT_OK, UserError};

/// The PostgreSQL URL of the journal, or the error that says distributed mode needs one.
pub(crate) fn postgres_url<'c>(config: &'c Config, what: &str) -> Result<&'c str> {
    match &config.store {
        StoreLocation::Postgres(url) => Ok(url),
        StoreLocation::Sqlite(_) => Err(UserError::new(format!(
            "{what} needs the journal in PostgreSQL, which workers on other machines reach: pass \
             --store postgres://USER@HOST/DATABASE (or set TUTTI_STORE, or [store] url in tutti.toml)"
        ))
        .into()),
    }
}

pub(crate) fn worker(config: &Config, args: WorkerArgs) -> Result<i32> {
    let url = postgres_url(config, "tutti worker")?.to_string();
    if !(args.lease.is_finite() && args.lease >= 0.5) {
        return Err(UserError::new("--lease must be at least 0.5 seconds").into());
    }
    let harnesses = config.harnesses(None)?;
    let offered: Vec<String> =
        harnesses.names().filter(|n| !matches!(*n, "echo" | "external")).map(String::from).collect();
    let names = if args.harness.is_empty() { offered.clone() } else { args.harness.clone() };
    if let Some(unknown) = names.iter().find(|n| !offered.contains(n)) {
        return Err(UserError::new(format!(
            "--harness {unknown}: this folder has no such harness (it has {}; agent CLIs are set up in tutti.toml)",
            offered.join(", ")
        ))
        .into());
    }
    let platform = tutti_harness::LinuxPlatform;
    let host = tutti_engine::Platform::host_name(&platform);
    let pid = std::process::id();
    let mut env = super::run::agent_env(config);
    env.push(("TUTTI_STORE".into(), url.clone()));
    let id = args.id.unwrap_or_else(|| format!("{host}-{pid}"));
    // A task can tell where it ran.
    env.push(("TUTTI_WORKER".into(), id.clone()));
    let opts = WorkerOptions {
        url,
        id,
        host,
        pid,
        capacity: args.capacity,
        lease: Duration::from_secs_f64(args.lease),
        workdir: config.root.clone(),
        env,
    };
    let id = opts.id.clone();
    let shutdown = crate::signals::install();
    let mut log = |event: WorkerEvent| output::note(&describe(&id, &event));
    Worker::new(opts, harnesses, names).run(shutdown, &mut log)?;
    output::note(&format!("worker {id}: drained and stopped"));
    Ok(EXIT_OK)
}

fn describe(id: &str, event: &WorkerEvent) -> String {
    match event {
        WorkerEvent::Registered { harnesses } => format!("worker {id}: ready for {}", harnesses.join(", ")),
        WorkerEvent::Claimed { run, effect, harness, previous: None } => {
            format!("worker {id}: claimed {effect} of run {run} [{harness}]")
        }
        WorkerEvent::Claimed { run, effect, harness, previous: Some(p) } => {
            format!(
                "worker {id}: claimed {effect} of run {run} [{harness}], re-dispatched from {p} (its lease expired)"
            )
        }
        WorkerEvent::Completed { run, effect, ok } => {
            format!("worker {id}: {} {effect} of run {run}", if *ok { "done" } else { "failed" })
        }
        WorkerEvent::Refused { run, effect } => {
            format!("worker {id}: result of {effect} of run {run} refused: another worker holds its claim now")
        }
        WorkerEvent::Lost { run, effect } => {
            format!("worker {id}: stopped {effect} of run {run}: its claim was taken over or withdrawn")
        }
        WorkerEvent::Disconnected { error } => {
            format!("worker {id}: lost the journal ({error}); keeping what runs, connecting again every second")
        }
        WorkerEvent::Reconnected => format!("worker {id}: connected again"),
        WorkerEvent::Draining { running } => {
            format!("worker {id}: draining: claiming nothing new, finishing {running} running attempt(s)")
        }
    }
}

pub(crate) fn workers(config: &Config, json: bool) -> Result<i32> {
    let url = postgres_url(config, "tutti workers")?;
    let mut queue = PgWorkQueue::open(url, Listen::Offers)?;
    let workers = queue.workers()?;
    let now = now_ms();
    if json {
        for w in &workers {
            let mut line = serde_json::to_value(w)?;
            line["heartbeatAgoMs"] = json!(now - w.heartbeat_ms);
            output::json_line(&line);
        }
        return Ok(EXIT_OK);
    }
    if workers.is_empty() {
        output::note("no workers (start one with `tutti worker --store URL`)");
        return Ok(EXIT_OK);
    }
    output::data(&format!(
        "{:<24}  {:<16}  {:>8}  {:>7}  {:<19}  {:<9}  HARNESSES",
        "WORKER", "HOST", "CAPACITY", "RUNNING", "HEARTBEAT (UTC)", "STATE"
    ));
    for w in workers {
        let state = if w.draining {
            "draining"
        } else if now - w.heartbeat_ms > 60_000 {
            "silent"
        } else {
            "ready"
        };
        output::data(&format!(
            "{:<24}  {:<16}  {:>8}  {:>7}  {:<19}  {:<9}  {}",
            w.id,
            w.host,
            w.capacity,
            w.running,
            utc(w.heartbeat_ms),
            state,
            w.harnesses.join(",")
        ));
    }
    Ok(EXIT_OK)
}
