//! Read-only commands: `tutti status`, `tutti ls`, `tutti events`. A run's state is derived from its events.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};
use tutti_engine::budget::Scope;
use tutti_journal::{Blobs, EffectId, Event, Outcome, Payload, Record, RunStatus, RunSummary, Usage};

use crate::commands::{find_run, open_store};
use crate::config::Config;
use crate::output::{self, EXIT_OK, UserError};

/// The state of one effect, as the journal tells it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct EffectView {
    pub(crate) kind: String,
    pub(crate) title: Option<String>,
    /// requested | running | ok | error | cancelled
    pub(crate) state: &'static str,
    /// The harness of its last started attempt, and when that attempt started.
    pub(crate) harness: Option<String>,
    pub(crate) started_ms: Option<i64>,
    /// The worker that claimed its attempt last (distributed mode).
    pub(crate) worker: Option<String>,
}

/// Every effect of a run by id, in request order.
pub(crate) fn effects(records: &[Record]) -> Vec<(EffectId, EffectView)> {
    let mut order = Vec::new();
    let mut views: BTreeMap<EffectId, EffectView> = BTreeMap::new();
    for r in records {
        match &r.event {
            Event::EffectRequested { effect, kind, title, .. } => {
                order.push(effect.clone());
                views.insert(
                    effect.clone(),
                    EffectView {
                        kind: kind.clone(),
                        title: title.clone(),
                        state: "requested",
                        harness: None,
                        started_ms: None,
                        worker: None,
                    },
                );
            }
            Event::EffectStarted { effect, harness, .. } => {
                set(&mut views, effect, "running");
                if let Some(v) = views.get_mut(effect.as_str()) {
                    (v.harness, v.started_ms) = (Some(harness.clone()), Some(r.ts_ms));
                }
            }
            Event::EffectClaimed { effect, worker, .. } => {
                if let Some(v) = views.get_mut(effect.as_str()) {
                    v.worker = Some(worker.clone());
                }
            }
            Event::EffectRedispatched { effect, .. } => set(&mut views, effect, "requested"),
            Event::EffectRetrying { effect, .. } => set(&mut views, effect, "retrying"),
            Event::EffectResolved { effect, outcome: Outcome::Ok { .. }, .. } => set(&mut views, effect, "ok"),
            Event::EffectResolved { effect, outcome: Outcome::Error { .. }, .. } => set(&mut views, effect, "error"),
            Event::EffectCancelled { effect, .. } => set(&mut views, effect, "cancelled"),
            // Superseded effects count again only once requested again.
            Event::ChangesAccepted { superseded, .. } => {
                for effect in superseded {
                    views.remove(effect);
                }
            }
            _ => {}
        }
    }
    order.into_iter().filter_map(|id| views.remove(&id).map(|v| (id, v))).collect()
}

fn set(views: &mut BTreeMap<EffectId, EffectView>, effect: &str, state: &'static str) {
    if let Some(v) = views.get_mut(effect) {
        v.state = state;
    }
}

/// The run the user named (an id or a unique prefix), else the latest one.
pub(crate) fn run_or_latest(store: &dyn tutti_journal::EventLog, run: Option<&str>) -> Result<String> {
    match run {
        Some(r) => find_run(store, r),
        None => Ok(store
            .runs()?
            .pop()
            .map(|r| r.id)
            .ok_or_else(|| UserError::new("no runs yet (start one with `tutti run`)"))?),
    }
}

pub(crate) fn status(config: &Config, run: Option<&str>, json: bool) -> Result<i32> {
    let store = open_store(config)?;
    let id = run_or_latest(store.as_ref(), run)?;
    let summary = store.run(&id)?.ok_or_else(|| UserError::new(format!("run {id} not found")))?;
    let records = store.read(&id, 0)?;
    let live = crate::commands::live_driver(store.as_ref(), &id)?;
    let report = status_json(store.as_ref(), &summary, &records, live.is_some())?;
    if json {
        output::json(&report);
    } else {
        output::data(&status_text(&report));
    }
    Ok(EXIT_OK)
}

pub(crate) fn status_json(store: &dyn Blobs, s: &RunSummary, records: &[Record], live: bool) -> Result<Value> {
    let effects = effects(records);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, v) in &effects {
        *counts.entry(v.state).or_default() += 1;
    }
    let waiting: Vec<Value> = effects
        .iter()
        .filter(|(_, v)| v.kind == "breakpoint" && v.state == "requested")
        .map(|(id, v)| json!({ "effect": id, "title": v.title }))
        .collect();
    let now = crate::commands::now_ms();
    let shown = shown_status(s, live);
    let running: Vec<Value> = effects
        .iter()
        .filter(|(_, v)| v.state == "running")
        .map(|(id, v)| {
            // Nothing runs in an interrupted run: no clock ticks for what its driver left in flight.
            let elapsed = v.started_ms.filter(|_| shown != "interrupted").map(|t| (now - t).max(0));
            let member = id.member().map(|(g, m)| format!("{g}/{m}"));
            json!({ "effect": id, "kind": v.kind, "title": v.title, "harness": v.harness, "member": member,
                    "worker": v.worker, "elapsedMs": elapsed })
        })
        .collect();
    // Distributed mode: how many effects each worker ran (or runs), by its last claim.
    let mut workers: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, v) in &effects {
        if let Some(w) = &v.worker {
            *workers.entry(w.as_str()).or_default() += 1;
        }
    }
    // Nothing runs in an interrupted run: what the journal has running was stopped with its driver.
    if shown == "interrupted"
        && let Some(n) = counts.remove("running")
    {
        counts.insert("stopped", n);
    }
    let (mut output, mut error) = (Value::Null, Value::Null);
    for r in records.iter().rev() {
        match &r.event {
            Event::RunCompleted { output: o } => output = store.load(o)?,
            Event::RunFailed { error: e } => error = serde_json::to_value(e)?,
            _ => continue,
        }
        break;
    }
    let usage = usage_json(records);
    let simulated = records.first().is_some_and(|r| is_simulated(&r.event));
    // A budget's clock stops with its run.
    let budget_now = if s.status.is_terminal() { s.updated_ms } else { now };
    let budgets = tutti_engine::budget::Ledger::of_loading(records, store).to_json(budget_now);
    Ok(json!({
        "simulated": simulated,
        "usage": usage,
        "budgets": budgets,
        "runId": s.id, "status": shown, "process": s.process, "createdMs": s.created_ms,
        "updatedMs": s.updated_ms, "events": s.events, "driverLive": live, "effects": counts,
        "running": running, "waiting": waiting, "workers": workers, "queued": queued(store, records, &effects, s)?,
        "output": output, "error": error,
        "resume": (shown == "interrupted").then(|| format!("tutti resume {}", s.id)),
    }))
}

/// Effects waiting to start, highest priority first, each with why it waits: for a slot (the run's
/// `max_parallel` or its harness's limit), or for the end of a retry's backoff.
fn queued(store: &dyn Blobs, records: &[Record], effects: &[(EffectId, EffectView)], s: &RunSummary) -> Result<Value> {
    let options = records.first().and_then(|r| match &r.event {
        Event::RunCreated { options, .. } => Some(options),
        _ => None,
    });
    let max = options.and_then(|o| o.get("maxParallel")).and_then(Value::as_u64);
    let no_exec = options.and_then(|o| o.get("noExec")) == Some(&Value::Bool(true));
    // Harnesses whose effects wait for a result posted from outside (`tutti iterate` and `tutti post`).
    let external = |h: &str| h == "external" || (no_exec && matches!(h, "shell" | "node"));
    let waiting: Vec<&(EffectId, EffectView)> =
        effects.iter().filter(|(_, v)| matches!(v.state, "requested" | "retrying") && v.kind != "breakpoint").collect();
    let is_waiting: std::collections::BTreeSet<&EffectId> = waiting.iter().map(|(id, _)| id).collect();
    // One pass over the journal: each waiting effect's task (for its priority) and latest retry wake time.
    let mut tasks = BTreeMap::new();
    let mut wakes = BTreeMap::new();
    let mut routed = BTreeMap::new();
    for r in records {
        match &r.event {
            Event::EffectRequested { effect, task, .. } if is_waiting.contains(effect) => {
                tasks.insert(effect, task);
            }
            Event::EffectRetrying { effect, wake_ms, .. } if is_waiting.contains(effect) => {
                wakes.insert(effect, *wake_ms);
            }
            Event::EffectRouted { effect, harness, .. } if is_waiting.contains(effect) => {
                routed.insert(effect, harness.as_str());
            }
            _ => {}
        }
    }
    let mut list = Vec::new();
    for (id, v) in waiting {
        let task = tasks.get(&id).map(|t| store.load(t)).transpose()?.unwrap_or(Value::Null);
        let priority = task.get("priority").and_then(Value::as_i64).unwrap_or(0);
        let wake = wakes.get(&id).copied();
        let why = match (v.state, wake) {
            ("retrying", Some(ms)) => format!("retrying: its backoff ends at {} UTC", utc(ms)),
            _ if routed.get(&id).is_some_and(|h| external(h)) => {
                format!("waits for its result from outside: `tutti post {} {id} --value JSON`", s.id)
            }
            _ if s.status != RunStatus::Running => "its run is not running".to_string(),
            _ => match max {
                Some(n) => format!("waiting for a free slot (the run's {n}, or its harness's limit)"),
                None => "waiting for a free slot".to_string(),
            },
        };
        list.push(json!({ "effect": id, "kind": v.kind, "title": v.title, "priority": priority, "why": why }));
    }
    list.sort_by_key(|q| std::cmp::Reverse(q["priority"].as_i64().unwrap_or(0)));
    Ok(Value::Array(list))
}

/// What a run's state is, honestly: a run the journal calls running but that no live driver holds (Ctrl-C, kill
/// -9, a closed laptop) is `interrupted`, and `tutti resume` continues it.
pub(crate) fn shown_status(s: &RunSummary, live: bool) -> &'static str {
    match s.status {
        RunStatus::Running if !live => "interrupted",
        other => other.as_str(),
    }
}

/// Whether a run was started with `--simulate` (its `run_created` options say so).
pub(crate) fn is_simulated(created: &Event) -> bool {
    matches!(created, Event::RunCreated { options, .. } if options.get("simulate").is_some_and(|s| !s.is_null()))
}

/// [`shown_status`] of a run, asking the lease whether a driver holds it.
pub(crate) fn status_of(store: &dyn tutti_journal::Leases, s: &RunSummary) -> Result<&'static str> {
    let live = s.status == RunStatus::Running && crate::commands::live_driver(store, &s.id)?.is_some();
    Ok(shown_status(s, live))
}

/// Usage totals of a run: over all, per harness and per effect.
fn usage_json(records: &[Record]) -> Value {
    let mut total = Usage::default();
    let mut by_harness: BTreeMap<String, Usage> = BTreeMap::new();
    let mut by_effect: BTreeMap<String, Usage> = BTreeMap::new();
    let mut unpriced: BTreeMap<String, u64> = BTreeMap::new();
    for r in records {
        if let Event::EffectUsage { effect, harness, usage, .. } = &r.event {
            total.add(usage);
            by_harness.entry(harness.clone()).or_default().add(usage);
            by_effect.entry(effect.to_string()).or_default().add(usage);
            if usage.cost_usd.is_none() && usage.tokens() > 0 {
                for key in ["", harness.as_str(), effect.as_str()] {
                    *unpriced.entry(key.to_string()).or_default() += usage.tokens();
                }
            }
        }
    }
    // Usage with no known price: its tokens, said apart, never counted as $0.
    let with_unpriced = |u: &Usage, key: &str| {
        let mut v = json!(u);
        if let Some(n) = unpriced.get(key) {
            v["unpriced_tokens"] = json!(n);
        }
        v
    };
    let by_harness: BTreeMap<&String, Value> = by_harness.iter().map(|(k, u)| (k, with_unpriced(u, k))).collect();
    let by_effect: BTreeMap<&String, Value> = by_effect.iter().map(|(k, u)| (k, with_unpriced(u, k))).collect();
    json!({ "total": with_unpriced(&total, ""), "byHarness": by_harness, "byEffect": by_effect })
}

fn usage_line(u: &Value) -> String {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let mut line = format!("{} in / {} out tokens", n("input_tokens"), n("output_tokens"));
    if n("cache_read_tokens") + n("cache_write_tokens") > 0 {
        line.push_str(&format!(", {} cache read, {} cache write", n("cache_read_tokens"), n("cache_write_tokens")));
    }
    match (u["cost_usd"].as_f64(), u["unpriced_tokens"].as_u64().unwrap_or(0)) {
        (Some(usd), 0) => line.push_str(&format!(", ${usd:.4}")),
        (Some(usd), n) => line.push_str(&format!(", ${usd:.4} + {n} tokens unpriced")),
        (None, n) if n > 0 => line.push_str(", unpriced"),
        (None, _) => {}
    }
    line
}

fn status_text(r: &Value) -> String {
    let mut out = format!(
        "run      {}\nstatus   {}{}{}\nprocess  {}\ncreated  {}\nupdated  {}\nevents   {}\neffects  {}",
        r["runId"].as_str().unwrap_or(""),
        r["status"].as_str().unwrap_or(""),
        if r["simulated"] == true { " (simulated: nothing was executed)" } else { "" },
        match (r["driverLive"] == true, r["resume"].as_str()) {
            (true, _) => " (a driver is attached)".to_string(),
            (false, Some(resume)) => format!(" (no driver holds it; resume with: {resume})"),
            _ => String::new(),
        },
        r["process"].as_str().unwrap_or(""),
        utc(r["createdMs"].as_i64().unwrap_or(0)),
        utc(r["updatedMs"].as_i64().unwrap_or(0)),
        r["events"],
        r["effects"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
    );
    if let Some(workers) = r["workers"].as_object().filter(|w| !w.is_empty()) {
        let shown: Vec<String> = workers.iter().map(|(w, n)| format!("{w} {n}")).collect();
        out.push_str(&format!("\nworkers  {} (effects by the worker that ran them)", shown.join(", ")));
    }
    for w in r["waiting"].as_array().into_iter().flatten() {
        let e = w["effect"].as_str().unwrap_or("");
        out.push_str(&format!("\nwaiting  {e} — `tutti approve {} {e}`", r["runId"].as_str().unwrap_or("")));
    }
    for q in r["queued"].as_array().into_iter().flatten() {
        let title = q["title"].as_str().map(|t| format!(" \"{}\"", output::escape_controls(t))).unwrap_or_default();
        let priority = q["priority"].as_i64().filter(|p| *p != 0).map(|p| format!(" priority {p}")).unwrap_or_default();
        out.push_str(&format!(
            "\nqueued   {}{title} [{}]{priority}: {}",
            q["effect"].as_str().unwrap_or(""),
            q["kind"].as_str().unwrap_or(""),
            q["why"].as_str().unwrap_or("")
        ));
    }
    let interrupted = r["status"] == "interrupted";
    for w in r["running"].as_array().into_iter().flatten() {
        let title = w["title"].as_str().map(|t| format!(" \"{}\"", output::escape_controls(t))).unwrap_or_default();
        let member = w["member"].as_str().map(|m| format!(" member {m}")).unwrap_or_default();
        let member = match w["worker"].as_str() {
            Some(worker) => format!("{member} worker {worker}"),
            None => member,
        };
        let elapsed = w["elapsedMs"].as_i64().map(|ms| format!(" for {:.1}s", ms as f64 / 1000.0)).unwrap_or_default();
        out.push_str(&format!(
            "\n{}  {}{title} [{} on {}{member}]{}",
            if interrupted { "stopped" } else { "running" },
            w["effect"].as_str().unwrap_or(""),
            w["kind"].as_str().unwrap_or(""),
            w["harness"].as_str().unwrap_or("?"),
            if interrupted {
                " (in flight when its driver stopped; it runs again on resume)".to_string()
            } else {
                elapsed
            },
        ));
    }
    if let Some(harnesses) = r["usage"]["byHarness"].as_object().filter(|h| !h.is_empty()) {
        out.push_str(&format!("\nusage    {}", usage_line(&r["usage"]["total"])));
        for (name, u) in harnesses {
            out.push_str(&format!("\n  {name:<14} {}", usage_line(u)));
        }
        for (effect, u) in r["usage"]["byEffect"].as_object().into_iter().flatten() {
            out.push_str(&format!("\n  {effect:<14} {}", usage_line(u)));
        }
    }
    for (i, b) in r["budgets"].as_array().into_iter().flatten().enumerate() {
        let label = if i == 0 { "budgets" } else { "" };
        out.push_str(&format!(
            "\n{label:<8} {:<22} {}",
            b["scope"].as_str().unwrap_or(""),
            tutti_engine::budget::describe(b)
        ));
    }
    if !r["output"].is_null() {
        out.push_str(&format!("\noutput   {}", r["output"]));
    }
    if !r["error"].is_null() {
        out.push_str(&format!(
            "\nerror    {}: {}",
            r["error"]["name"].as_str().unwrap_or(""),
            r["error"]["message"].as_str().unwrap_or("")
        ));
    }
    out
}

pub(crate) fn groups(config: &Config, run: Option<&str>, json: bool) -> Result<i32> {
    let store = open_store(config)?;
    let id = run_or_latest(store.as_ref(), run)?;
    let records = store.read(&id, 0)?;
    let summary = store.run(&id)?.ok_or_else(|| UserError::new(format!("run {id} not found")))?;
    let report = groups_report(&records, status_of(store.as_ref(), &summary)?);
    if json {
        output::json(&report);
        return Ok(EXIT_OK);
    }
    if report.as_array().is_none_or(|g| g.is_empty()) {
        output::note(&format!("run {id} has no groups"));
    }
    for g in report.as_array().into_iter().flatten() {
        let closed = if g["closed"] == true { " (closed)" } else { "" };
        output::data(&format!("group {}{closed}", g["group"].as_str().unwrap_or("")));
        if !g["budget"].is_null() {
            output::data(&format!("  budget           {}", tutti_engine::budget::describe(&g["budget"])));
        }
        for m in g["members"].as_array().into_iter().flatten() {
            output::data(&format!(
                "  {:<16} {:<14} {:<8} tasks {} (ok {}, error {}, cancelled {})",
                m["name"].as_str().unwrap_or(""),
                m["harness"].as_str().unwrap_or("-"),
                m["state"].as_str().unwrap_or(""),
                m["tasks"],
                m["ok"],
                m["error"],
                m["cancelled"],
            ));
            if !m["budget"].is_null() {
                output::data(&format!("    budget         {}", tutti_engine::budget::describe(&m["budget"])));
            }
        }
    }
    Ok(EXIT_OK)
}

/// [`groups_json`] for a run shown as `shown`: in an interrupted run no member is working.
pub(crate) fn groups_report(records: &[Record], shown: &str) -> Value {
    let mut report = groups_json(records);
    if shown == "interrupted" {
        for m in report.as_array_mut().into_iter().flatten().flat_map(|g| g["members"].as_array_mut()).flatten() {
            if m["state"] == "working" {
                m["state"] = json!("interrupted");
            }
        }
    }
    report
}

/// Groups and members as the journal tells them: member `M` of group `G` owns the effects `group:G/M/...`.
fn groups_json(records: &[Record]) -> Value {
    let mut groups: Vec<Value> = Vec::new();
    for r in records {
        match &r.event {
            Event::GroupOpened { group, members, persistent, .. } => {
                let members: Vec<Value> =
                    members.iter().map(|m| json!({ "name": m.name, "harness": m.harness, "session": null })).collect();
                groups.push(json!({ "group": group, "persistent": persistent, "closed": false, "members": members }));
            }
            Event::MemberBound { group, member, session, branch, .. } => {
                let g = groups.iter_mut().find(|g| g["group"] == *group.as_str());
                let m = g
                    .and_then(|g| g["members"].as_array_mut())
                    .and_then(|ms| ms.iter_mut().find(|m| m["name"] == *member.as_str()));
                if let Some(m) = m {
                    if !session.is_empty() {
                        m["session"] = json!(session);
                    }
                    if let Some(branch) = branch {
                        m["branch"] = json!(branch);
                    }
                }
            }
            Event::GroupClosed { group } => {
                if let Some(g) = groups.iter_mut().find(|g| g["group"] == *group.as_str()) {
                    g["closed"] = json!(true);
                }
            }
            _ => {}
        }
    }
    let all = effects(records);
    let ledger = tutti_engine::budget::Ledger::of(records);
    let now = match records.last() {
        Some(r) if r.event.terminal_status().is_some() => r.ts_ms,
        _ => now_ms(),
    };
    let budget = |scope: Scope| ledger.account(&scope).map(|a| a.to_json(&scope, now)).unwrap_or(Value::Null);
    for g in &mut groups {
        let name = g["group"].as_str().unwrap_or("").to_string();
        g["budget"] = budget(Scope::Group(name.clone()));
        for m in g["members"].as_array_mut().into_iter().flatten() {
            let prefix = format!("group:{name}/{}/", m["name"].as_str().unwrap_or(""));
            let mine: Vec<&EffectView> = all.iter().filter(|(id, _)| id.starts_with(&prefix)).map(|(_, v)| v).collect();
            let count = |state: &str| mine.iter().filter(|v| v.state == state).count();
            let busy = mine.iter().any(|v| matches!(v.state, "requested" | "running"));
            let mut usage = Usage::default();
            for r in records {
                if let Event::EffectUsage { effect, usage: u, .. } = &r.event
                    && effect.starts_with(&prefix)
                {
                    usage.add(u);
                }
            }
            m["usage"] = json!(usage);
            m["budget"] = budget(Scope::Member(format!("{name}/{}", m["name"].as_str().unwrap_or(""))));
            m["tasks"] = json!(mine.len());
            m["ok"] = json!(count("ok"));
            m["error"] = json!(count("error"));
            m["cancelled"] = json!(count("cancelled"));
            m["state"] = json!(if busy { "working" } else { "idle" });
        }
    }
    Value::Array(groups)
}

pub(crate) fn ls(config: &Config, json: bool) -> Result<i32> {
    let store = open_store(config)?;
    let runs = store.runs()?;
    if json {
        for r in &runs {
            let mut line = serde_json::to_value(r)?;
            let shown = status_of(store.as_ref(), r)?;
            line["status"] = json!(shown);
            line["simulated"] = json!(store.first_event(&r.id)?.is_some_and(|f| is_simulated(&f.event)));
            if shown == "interrupted" {
                line["resume"] = json!(format!("tutti resume {}", r.id));
            }
            output::json_line(&line);
        }
        return Ok(EXIT_OK);
    }
    if runs.is_empty() {
        output::note("no runs yet (start one with `tutti run PROCESS.js`)");
    } else {
        output::data(&format!("{:<26}  {:<11}  {:<19}  {:>7}  PROCESS", "RUN", "STATUS", "CREATED (UTC)", "EVENTS"));
    }
    let mut interrupted = Vec::new();
    for r in runs {
        let shown = status_of(store.as_ref(), &r)?;
        if shown == "interrupted" {
            interrupted.push(r.id.clone());
        }
        let simulated = store.first_event(&r.id)?.is_some_and(|f| is_simulated(&f.event));
        output::data(&format!(
            "{:<26}  {:<11}  {:<19}  {:>7}  {}{}",
            r.id,
            shown,
            utc(r.created_ms),
            r.events,
            r.process,
            if simulated { "  (simulated)" } else { "" }
        ));
    }
    for id in interrupted {
        output::note(&format!("run {id} is interrupted: resume with: tutti resume {id}"));
    }
    Ok(EXIT_OK)
}

pub(crate) fn events(config: &Config, run: Option<&str>, json: bool, follow: bool) -> Result<i32> {
    let store = open_store(config)?;
    let id = run_or_latest(store.as_ref(), run)?;
    let mut after = 0;
    let mut start = None;
    loop {
        for r in store.read(&id, after)? {
            after = r.seq;
            let t0 = *start.get_or_insert(r.ts_ms);
            if json {
                output::json_line(&serde_json::to_value(&r)?);
            } else {
                output::data(&event_line(&r, t0));
            }
        }
        let ended = store.run(&id)?.is_some_and(|s| s.status.is_terminal());
        if !follow || ended {
            return Ok(EXIT_OK);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn event_line(r: &Record, t0: i64) -> String {
    let detail = match &r.event {
        Event::EffectRequested { effect, kind, task_id, title, .. } => {
            format!("{effect} {kind} task={task_id}{}", title.as_ref().map(|t| format!(" \"{t}\"")).unwrap_or_default())
        }
        Event::EffectStarted { effect, attempt, harness, pid } => {
            format!(
                "{effect} attempt={attempt} harness={harness}{}",
                pid.map(|p| format!(" pid={p}")).unwrap_or_default()
            )
        }
        Event::EffectResolved { effect, outcome: Outcome::Ok { .. }, .. } => format!("{effect} ok"),
        Event::EffectResolved { effect, outcome: Outcome::Error { error }, .. } => {
            format!("{effect} error {}: {}", error.name, error.message)
        }
        Event::EffectRetrying { effect, attempt, retry, wake_ms, error } => format!(
            "{effect} attempt {attempt} failed ({}: {}); retry {retry} at {} UTC",
            error.name,
            error.message.lines().next().unwrap_or(""),
            utc(*wake_ms)
        ),
        Event::ChangesAccepted { effect, old_task_id, old_args, new_task_id, new_args, superseded } => {
            let task = match old_task_id == new_task_id {
                true => old_task_id.clone(),
                false => format!("{old_task_id} -> {new_task_id}"),
            };
            let again: Vec<&str> = superseded.iter().map(|e| e.as_str()).collect();
            format!(
                "{effect} task={task} args {} -> {}; runs again: {}",
                shown(old_args),
                shown(new_args),
                again.join(", ")
            )
        }
        other => {
            let mut v = serde_json::to_value(other).unwrap_or(Value::Null);
            if let Some(m) = v.as_object_mut() {
                m.remove("type");
            }
            v.to_string()
        }
    };
    format!("{:>6}  +{:>8.3}s  {:<20}  {detail}", r.seq, (r.ts_ms - t0) as f64 / 1000.0, r.event.kind())
}

/// A journaled value on one line, cut to a screen's width; a value kept out of line by its size.
fn shown(payload: &Payload) -> String {
    match payload {
        Payload::Inline(v) => {
            let text = v.to_string();
            match text.char_indices().nth(200) {
                Some((cut, _)) => format!("{}…", &text[..cut]),
                None => text,
            }
        }
        Payload::Blob { size, .. } => format!("({size} bytes, kept out of line)"),
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, from epoch milliseconds.
pub(crate) fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_795_000_000_000), "2026-11-18 11:06:40");
    }
}
