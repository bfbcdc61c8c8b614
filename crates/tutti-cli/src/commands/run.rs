//! `tutti run` and `tutti resume`: load the process, take the run's lease, and drive it to its end.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tutti_engine::Harnesses;
use tutti_engine::driver::Faults;
use tutti_engine::{Changes, Driver, NewRun, Options, Platform, RunEnd};
use tutti_harness::external::External;
use tutti_harness::simulate::{Canned, Simulated};
use tutti_harness::worktree::{Isolating, Worktrees};
use tutti_harness::{LinuxPlatform, MergeHarness};
use tutti_journal::{Event, RunStatus};
use tutti_js::JsHost;

use crate::args::{DriveArgs, ResumeArgs, RunArgs};
use crate::commands::{display, find_run, open_for_driver, open_or_create, open_store, worktrees};
use crate::config::{Config, StoreLocation};
use crate::output::{self, EXIT_FAILED, EXIT_OK, EXIT_USAGE, UserError};
use crate::signals;

pub(crate) fn run(config: &Config, args: RunArgs) -> Result<i32> {
    // Installed before the process loads: its top-level code may be a loop that only Ctrl-C ends.
    let shutdown = signals::install();
    signals::after_interrupt(run_new(config, args, shutdown))
}

fn run_new(config: &Config, args: RunArgs, shutdown: Arc<AtomicBool>) -> Result<i32> {
    let json = args.drive.json;
    let (run_id, end, journal) = start(config, args, shutdown, Mode::default())?;
    let (merges, origin, budgets) = after_run(config, &run_id, &end, journal);
    Ok(report(&run_id, &end, &merges, origin, budgets, json))
}

/// How `tutti iterate` drives a run, beside what `run` and `resume` do.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Mode {
    /// Let go of the run as soon as only the outside can move it.
    pub(crate) until_blocked: bool,
    /// Shell and node tasks wait for a posted result too, instead of running.
    pub(crate) no_exec: bool,
}

/// Create a run of `args.process` and drive it until it ends (or, in `mode`, until it is blocked).
/// What driving a run leaves: its id, how it ended, and the journal's connection the writer used (for the
/// summary, without opening the journal again).
pub(crate) type Driven = (String, RunEnd, Option<Box<dyn tutti_journal::Store>>);

pub(crate) fn start(config: &Config, args: RunArgs, shutdown: Arc<AtomicBool>, mode: Mode) -> Result<Driven> {
    let harnesses = with_mode(config.harnesses(args.harness.as_deref())?, mode);
    let simulation = args.simulate.as_ref().map(|file| canned(file.as_deref())).transpose()?;
    let inputs = parse_inputs(args.inputs.as_deref())?;
    let path = std::fs::canonicalize(&args.process)
        .map_err(|e| UserError::new(format!("process file {}: {e}", args.process.display())))?;
    // A project's existing journal opens (and is checked) on the other core while the process loads. A new
    // one is created only once the process has loaded, so a broken process file leaves no `.tutti/` behind.
    let existing = matches!(&config.store, StoreLocation::Sqlite(db) if db.exists());
    let (mut host, (store, writer)) = if existing {
        let (host, opened) = std::thread::scope(|scope| {
            let opening = scope.spawn(|| open_for_driver(config, open_or_create));
            let host = JsHost::load_interruptible(&path, shutdown.clone());
            (host, opening.join())
        });
        let opened = opened.unwrap_or_else(|_| Err(anyhow::anyhow!("the thread opening the journal panicked")));
        match host {
            Ok(host) => (host, opened?),
            Err(e) => {
                // Close the journal as a run would (its log checkpointed and removed) before reporting.
                if let Ok((store, writer)) = opened {
                    drop(store);
                    drop(writer.shutdown());
                }
                return Err(e.into());
            }
        }
    } else {
        let host = JsHost::load_interruptible(&path, shutdown.clone())?;
        (host, open_for_driver(config, open_or_create)?)
    };
    let last = writer.clone();
    let run_id = ulid::Ulid::new().to_string();
    let secret = ulid::Ulid::new().to_string();
    let harnesses = if args.remote && simulation.is_none() { remote(config, harnesses, &run_id)? } else { harnesses };
    // Isolated tasks start from HEAD as it is now; the commit is journaled with the run. A simulated run
    // touches neither git nor the working tree.
    let (harnesses, git_base) = match &simulation {
        Some((_, canned)) => (simulated(harnesses, Arc::clone(canned)), None),
        None => {
            let git_base = Worktrees::base_of(&config.root);
            (isolating(harnesses, Worktrees::new(&config.root, &run_id, git_base.clone())), git_base)
        }
    };
    let mut opts = options(config, &run_id, &args.drive, config.root.clone(), secret.clone());
    opts.simulate = simulation.is_some();
    opts.until_blocked = mode.until_blocked;
    let new = NewRun {
        process: display(&path),
        inputs,
        code_hash: host.code_hash(),
        modules: host.modules().to_vec(),
        options: json!({
            "maxParallel": opts.max_parallel,
            "harness": args.harness.or_else(|| config.default_harness.clone()),
            "nonInteractive": opts.non_interactive,
            "workdir": display(&opts.workdir),
            "msgSecret": secret,
            "gitBase": git_base,
            "simulate": simulation.as_ref().map(|(file, _)| json!({ "file": file })),
            "noExec": mode.no_exec,
            "remote": args.remote,
            "budget": config.run_budgets(&args.budget.limits()),
        }),
    };
    let mut observer = output::observer(&new.process, if mode.until_blocked { "iterate" } else { "resume" });
    let driver = Driver::new(opts, writer, store, harnesses, &mut host, observer.as_mut(), shutdown);
    let end = driver.create(new);
    exit_without_freeing(host);
    // The live view goes before the end is reported: nothing stale stays on screen.
    drop(observer);
    // The driver has let go of its handle: join the writer, which leaves the journal in tutti.db.
    let journal = last.shutdown();
    Ok((run_id, end?, journal))
}

pub(crate) fn resume(config: &Config, args: ResumeArgs) -> Result<i32> {
    let shutdown = signals::install();
    signals::after_interrupt(resume_run(config, args, shutdown))
}

fn resume_run(config: &Config, args: ResumeArgs, shutdown: Arc<AtomicBool>) -> Result<i32> {
    let json = args.drive.json;
    let (run_id, end, journal) = proceed(config, args, shutdown, Mode::default())?;
    let (merges, origin, budgets) = after_run(config, &run_id, &end, journal);
    Ok(report(&run_id, &end, &merges, origin, budgets, json))
}

/// Replay a run's journal and drive it on, as it was started (its harness, options, simulation, `--no-exec`).
pub(crate) fn proceed(config: &Config, args: ResumeArgs, shutdown: Arc<AtomicBool>, mode: Mode) -> Result<Driven> {
    let (store, writer) = open_for_driver(config, open_store)?;
    let last = writer.clone();
    let run_id = find_run(store.as_ref(), &args.run)?;
    let created = store.read(&run_id, 0)?.into_iter().next().map(|r| r.event);
    let Some(Event::RunCreated { process, options: saved, .. }) = created else {
        anyhow::bail!("run {run_id} has no run_created event: its journal is damaged");
    };
    let mode = Mode { no_exec: mode.no_exec || saved.get("noExec") == Some(&Value::Bool(true)), ..mode };
    let harnesses = with_mode(config.harnesses(saved.get("harness").and_then(Value::as_str))?, mode);
    let harnesses = match saved.get("remote") {
        Some(Value::Bool(true)) => remote(config, harnesses, &run_id)?,
        _ => harnesses,
    };
    let simulation = match saved.get("simulate").filter(|s| !s.is_null()) {
        Some(s) => Some(canned(s.get("file").and_then(Value::as_str).map(std::path::Path::new))?),
        None => None,
    };
    let harnesses = match &simulation {
        Some((_, canned)) => simulated(harnesses, Arc::clone(canned)),
        None => {
            let git_base = saved.get("gitBase").and_then(Value::as_str).map(String::from);
            isolating(harnesses, Worktrees::new(&config.root, &run_id, git_base))
        }
    };
    let path = PathBuf::from(&process);
    let mut host = JsHost::load_interruptible(&path, shutdown.clone())
        .with_context(|| format!("cannot reload the process of run {run_id}"))?;
    let workdir = saved.get("workdir").and_then(Value::as_str).map(PathBuf::from).unwrap_or(config.root.clone());
    let mut drive = args.drive;
    drive.non_interactive |= saved.get("nonInteractive").and_then(Value::as_bool).unwrap_or(false);
    if drive.max_parallel.is_none() {
        drive.max_parallel = saved.get("maxParallel").and_then(Value::as_u64).map(|n| n as u32);
    }
    let secret = saved.get("msgSecret").and_then(Value::as_str).unwrap_or(&run_id).to_string();
    let mut opts = options(config, &run_id, &drive, workdir, secret);
    opts.simulate = simulation.is_some();
    opts.until_blocked = mode.until_blocked;
    let code_hash = host.code_hash();
    let mut observer = output::observer(&process, if mode.until_blocked { "iterate" } else { "resume" });
    let driver = Driver::new(opts, writer, store, harnesses, &mut host, observer.as_mut(), shutdown);
    let changes = if args.accept_changes { Changes::Accept } else { Changes::Refuse };
    let end = driver.resume(&code_hash, changes);
    exit_without_freeing(host);
    drop(observer);
    let journal = last.shutdown();
    Ok((run_id, end?, journal))
}

/// The process host is done, and the command's process exits soon after: its JavaScript heap dies with it.
/// Freeing it object by object (a collection over everything) would only delay the exit: 10 % of the
/// instructions of a one-task run, and far more after a long replay.
fn exit_without_freeing(host: JsHost) {
    std::mem::forget(host);
}

/// `--remote`: every harness that does outside work offers it to workers through the journal's work queue.
fn remote(config: &Config, mut harnesses: Harnesses, run_id: &str) -> Result<Harnesses> {
    let url = super::worker::postgres_url(config, "--remote")?;
    let executor = tutti_harness::remote::RemoteExecutor::start(url, run_id)?;
    harnesses.wrap(|inner| {
        if inner.is_pure() || inner.is_external() {
            inner
        } else {
            Arc::new(tutti_harness::remote::Remote::new(inner, Arc::clone(&executor)))
        }
    });
    Ok(harnesses)
}

/// `--no-exec`: the `shell` and `node` harnesses wait for posted results instead of running anything.
fn with_mode(mut harnesses: Harnesses, mode: Mode) -> Harnesses {
    if mode.no_exec {
        harnesses.add(Arc::new(External::new("shell")));
        harnesses.add(Arc::new(External::new("node")));
    }
    harnesses
}

/// `--simulate[=FILE]`: the canned answers (none without a file), and the file as journaled.
fn canned(file: Option<&std::path::Path>) -> Result<(Option<String>, Arc<Canned>)> {
    let Some(file) = file else { return Ok((None, Arc::new(Canned::default()))) };
    let canned = Canned::load(file).map_err(UserError::new)?;
    let shown = std::fs::canonicalize(file).map_or_else(|_| display(file), |p| display(&p));
    Ok((Some(shown), Arc::new(canned)))
}

/// Every harness of the project simulated under its own name, a simulated `merge`, and a simulated default
/// agent when the project has none, so that the run's routing reads as it would for real.
fn simulated(mut harnesses: Harnesses, canned: Arc<Canned>) -> Harnesses {
    harnesses.wrap(|inner| Arc::new(Simulated::new(inner.name(), inner.capabilities(), Arc::clone(&canned))));
    harnesses.add(Arc::new(Simulated::new("merge", Vec::new(), Arc::clone(&canned))));
    if harnesses.default_agent().is_none() {
        harnesses.add(Arc::new(Simulated::new("simulated-agent", Vec::new(), canned)));
        harnesses.set_default_agent(Some("simulated-agent".into()));
    }
    harnesses
}

/// Every harness of the run behind worktree isolation, and the `merge` harness for `ctx.merge`.
fn isolating(mut harnesses: Harnesses, worktrees: Worktrees) -> Harnesses {
    let worktrees = Arc::new(worktrees);
    harnesses.wrap(|inner| Arc::new(Isolating::new(inner, Arc::clone(&worktrees))));
    harnesses.add(Arc::new(MergeHarness::new(worktrees)));
    harnesses
}

fn options(config: &Config, run_id: &str, drive: &DriveArgs, workdir: PathBuf, msg_secret: String) -> Options {
    Options {
        agent_env: agent_env(config),
        msg_secret,
        detach_reason: signals::reason,
        run_id: run_id.to_string(),
        workdir,
        max_parallel: drive.max_parallel.map(|n| n as usize).unwrap_or(config.max_parallel),
        non_interactive: drive.non_interactive,
        simulate: false,
        until_blocked: false,
        holder: LinuxPlatform.lease_holder(),
        platform: Arc::new(LinuxPlatform),
        faults: faults(),
        prices: config.prices.clone(),
    }
}

/// Crash-test kill points from `TUTTI_FAULT_KILL_AFTER_COMMITS` / `TUTTI_FAULT_KILL_AFTER_STARTS`, in builds
/// with the `fault-injection` feature (the test suite's); none otherwise.
fn faults() -> Faults {
    if !cfg!(feature = "fault-injection") {
        return Faults::default();
    }
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    Faults {
        kill_after_commits: var("TUTTI_FAULT_KILL_AFTER_COMMITS"),
        kill_after_starts: var("TUTTI_FAULT_KILL_AFTER_STARTS"),
    }
}

/// What an agent needs to reach its run: the project root, and this `tutti` first on its `PATH`.
pub(crate) fn agent_env(config: &Config) -> Vec<(String, String)> {
    let mut env = vec![("TUTTI_HOME".to_string(), display(&config.root))];
    // An agent's `tutti msg send` reaches a journal in PostgreSQL through the same URL.
    if let crate::config::StoreLocation::Postgres(url) = &config.store {
        env.push(("TUTTI_STORE".to_string(), url.clone()));
    }
    if let Some(dir) = std::env::current_exe().ok().as_deref().and_then(std::path::Path::parent) {
        let path = std::env::var("PATH").unwrap_or_default();
        env.push(("PATH".to_string(), format!("{}:{path}", dir.display())));
    }
    env
}

/// `--inputs`: inline JSON, or the path of a JSON file.
fn parse_inputs(given: Option<&str>) -> Result<Value> {
    let Some(given) = given else { return Ok(Value::Null) };
    let trimmed = given.trim_start();
    if trimmed.starts_with(['{', '[', '"']) || serde_json::from_str::<Value>(given).is_ok() {
        return serde_json::from_str(given)
            .map_err(|e| UserError::new(format!("--inputs is not valid JSON: {e}")).into());
    }
    let text = std::fs::read_to_string(given)
        .map_err(|e| UserError::new(format!("--inputs {given}: not JSON, and not a readable file: {e}")))?;
    serde_json::from_str(&text).map_err(|e| UserError::new(format!("--inputs {given}: invalid JSON: {e}")).into())
}

/// What a run's end leaves to do about its worktrees: the merge queue's account, and cleaning up.
pub(crate) fn after_run(
    config: &Config,
    run_id: &str,
    end: &RunEnd,
    journal: Option<Box<dyn tutti_journal::Store>>,
) -> (worktrees::Merges, Option<String>, Value) {
    // The driver checked the journal for damage when it started; what it wrote since needs no second check.
    let store = journal.or_else(|| crate::commands::reopen(config).ok());
    let records = store.as_ref().and_then(|store| store.read(&run_id.to_string(), 0).ok()).unwrap_or_default();
    let ledger = match &store {
        Some(store) => tutti_engine::budget::Ledger::of_loading(&records, store.as_ref()),
        None => tutti_engine::budget::Ledger::of(&records),
    };
    if !end.interrupted
        && let Some(account) = crate::commands::summary::summary(&records, &ledger)
    {
        output::note(&account);
    }
    let origin = end.error.as_ref().and_then(|e| origin_of(e, &records));
    let budgets = ledger.to_json(records.last().map_or_else(crate::commands::now_ms, |r| r.ts_ms));
    (after_merges(config, run_id, end, records), origin, budgets)
}

/// The effect whose failure ended the run, and where the process asked for it: `effect root/3 (p.js:12:7)`.
fn origin_of(error: &tutti_journal::ErrorInfo, records: &[tutti_journal::Record]) -> Option<String> {
    let effect = records.iter().rev().find_map(|r| match &r.event {
        Event::EffectResolved { effect, outcome: tutti_journal::Outcome::Error { error: e }, .. }
            if e.name == error.name && e.message == error.message =>
        {
            Some(effect.clone())
        }
        _ => None,
    })?;
    let callsite = records.iter().find_map(|r| match &r.event {
        Event::EffectRequested { effect: e, callsite, .. } if *e == effect => callsite.clone(),
        _ => None,
    });
    Some(match callsite {
        Some(site) => format!("effect {effect}, requested at {site}"),
        None => format!("effect {effect}"),
    })
}

fn after_merges(config: &Config, run_id: &str, end: &RunEnd, records: Vec<tutti_journal::Record>) -> worktrees::Merges {
    let merges = worktrees::merges(&records);
    if !end.interrupted
        && end.status.is_terminal()
        && let Err(e) = worktrees::clean_up(config, run_id, &records)
    {
        output::note(&format!("run {run_id}: its worktrees were not all removed: {e:#}"));
    }
    merges
}

/// Error names that mean the user must fix something before running again (exit 2), not that a task failed.
const USAGE_ERRORS: &[&str] =
    &["NoHarness", "IsolationError", "NotAGitRepository", "NoCommit", "BranchExists", "MergeTarget", "InvalidBudget"];

/// Print the run's end and choose the exit code.
fn report(
    run_id: &str,
    end: &RunEnd,
    merges: &worktrees::Merges,
    origin: Option<String>,
    budgets: Value,
    json: bool,
) -> i32 {
    if end.interrupted {
        let why = signals::reason();
        output::note(&format!("{why}: running effects were stopped. Continue with `tutti resume {run_id}`"));
        return signals::exit_code();
    }
    if json {
        output::json(&json!({
            "runId": run_id,
            "status": end.status.as_str(),
            "output": end.output,
            "error": end.error,
            "merges": merges.to_json(),
            "budgets": budgets,
        }));
    } else if let Some(out) = &end.output {
        output::json(out);
    }
    if let Some(line) = merges.summary() {
        output::note(&line);
    }
    match (&end.status, &end.error) {
        (RunStatus::Completed | RunStatus::Halted, _) if !merges.failed.is_empty() => {
            let usage = merges.failed.iter().any(|(_, why)| USAGE_ERRORS.iter().any(|name| why.starts_with(name)));
            output::note(&format!(
                "run {run_id} {}, but {} merge(s) FAILED: their work is not on the integration branch",
                end.status.as_str(),
                merges.failed.len()
            ));
            if usage { EXIT_USAGE } else { EXIT_FAILED }
        }
        (RunStatus::Completed | RunStatus::Halted, _) => {
            output::note(&format!("run {run_id} {}", end.status.as_str()));
            EXIT_OK
        }
        (status, Some(e)) => {
            let stack = e.data.as_ref().and_then(|d| d.get("stack")).and_then(Value::as_str).unwrap_or("");
            // The user's own frames: tutti's runtime frames say nothing about their process file.
            let stack: Vec<&str> = stack.lines().filter(|l| !l.contains("(tutti:") && !l.contains(" tutti:")).collect();
            let stack: String = stack.iter().map(|l| format!("\n{l}")).collect();
            let causes = output::causes(e, "  ");
            output::note(&format!("run {run_id} {}: {}: {}{causes}{stack}", status.as_str(), e.name, e.message));
            if let Some(origin) = origin {
                output::note(&format!("raised by {origin}"));
                output::note(&format!("what the agents did: tutti logs {run_id} [EFFECT]"));
            }
            // A task that names no harness this project has is a configuration problem, not a task failure.
            if USAGE_ERRORS.contains(&e.name.as_str()) { EXIT_USAGE } else { EXIT_FAILED }
        }
        (status, None) => {
            output::note(&format!("run {run_id} {}", status.as_str()));
            EXIT_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_inline_or_file() {
        assert_eq!(parse_inputs(Some(r#"{"a":1}"#)).unwrap(), json!({"a": 1}));
        let e = parse_inputs(Some("{bad")).unwrap_err().to_string();
        assert!(e.contains("--inputs"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("in.json");
        std::fs::write(&f, "[1,2]").unwrap();
        assert_eq!(parse_inputs(Some(f.to_str().unwrap())).unwrap(), json!([1, 2]));
        let e = parse_inputs(Some("/nonexistent/in.json")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/in.json"), "{e}");
    }
}
