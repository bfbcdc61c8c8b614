//! The commands: each takes validated configuration, does its work, and returns an exit code.

pub(crate) mod control;
mod doctor;
pub(crate) mod inspect;
mod iterate;
pub(crate) mod logs;
mod mcp;
mod msg;
pub(crate) mod run;
mod serve;
mod summary;
mod transfer;
mod worker;
pub(crate) mod worktrees;

use std::path::Path;

use anyhow::Result;
use tutti_journal::{EventLog, Leases, PgStore, SqliteStore, Store, Writer, WriterHandle};

use crate::args::{Args, Cmd};
use crate::config::{Config, StoreLocation};
pub(crate) use inspect::{now_ms, utc};

use crate::output::UserError;

pub(crate) fn dispatch(args: Args) -> Result<i32> {
    let config = Config::load(args.home.as_deref(), args.store.as_deref())?;
    match args.command {
        Cmd::Run(a) => run::run(&config, a),
        Cmd::Resume(a) => run::resume(&config, a),
        Cmd::Iterate(a) => iterate::iterate(&config, a),
        Cmd::Status { run, json } => inspect::status(&config, run.as_deref(), json),
        Cmd::Ls { json } => inspect::ls(&config, json),
        Cmd::Logs { run, effect, raw, json, follow } => logs::logs(&config, &run, effect.as_deref(), raw, json, follow),
        Cmd::Groups { run, json } => inspect::groups(&config, run.as_deref(), json),
        Cmd::Worktrees { run, json } => match run.as_deref() {
            Some("prune") => worktrees::prune(&config, json),
            run => worktrees::list(&config, run, json),
        },
        Cmd::Events { run, json, follow } => inspect::events(&config, run.as_deref(), json, follow),
        Cmd::Approve { run, effect, reject, response } => control::approve(&config, &run, &effect, reject, response),
        Cmd::Post { run, effect, value, error } => control::post(&config, &run, &effect, value, error),
        Cmd::Cancel { run, reason } => control::cancel(&config, &run, &reason),
        Cmd::Export { run, output } => transfer::export(&config, &run, output.as_deref()),
        Cmd::Import { file } => transfer::import(&config, &file),
        Cmd::Msg { action } => msg::msg(&config, action),
        Cmd::Mcp => mcp::mcp(&config),
        Cmd::Serve { port } => serve::serve(&config, port, crate::signals::install()),
        Cmd::Doctor { json } => doctor::doctor(&config, json),
        Cmd::Worker(a) => worker::worker(&config, a),
        Cmd::Workers { json } => worker::workers(&config, json),
    }
}

/// Open the journal of an existing project, checked for damage first. Outside a project this is an error:
/// a command that only reads or controls runs must not make a folder a project.
pub(crate) fn open_store(config: &Config) -> Result<Box<dyn Store>> {
    // A journal in PostgreSQL belongs to no folder: its runs are reached from anywhere.
    if !config.is_project && matches!(config.store, StoreLocation::Sqlite(_)) {
        return Err(UserError::new(format!(
            "no tutti project in {} or any folder above it (a project has tutti.toml or .tutti/): run this in \
             your project's folder or pass --home DIR; `tutti run FILE` makes a folder a project",
            config.root.display()
        ))
        .into());
    }
    if !config.is_project {
        return reopen(config);
    }
    open_or_create(config)
}

/// Open the project's journal, making the folder a project if it is not one yet, checked for damage first
/// (the whole journal, unless tutti sealed it at its last clean end and nothing else has touched it).
pub(crate) fn open_or_create(config: &Config) -> Result<Box<dyn Store>> {
    prepare_state_dir(config)?;
    match &config.store {
        StoreLocation::Sqlite(db) => {
            let store = SqliteStore::open(db)?;
            store.verify_unless_sealed()?;
            Ok(Box::new(store))
        }
        StoreLocation::Postgres(url) => Ok(Box::new(PgStore::open(url)?)),
    }
}

/// Open the journal a driver of this command checked when it started, without checking it again (reading
/// back what the run just wrote, for its summary).
pub(crate) fn reopen(config: &Config) -> Result<Box<dyn Store>> {
    reopen_at(&config.store)
}

/// Open the journal at `store` without checking it.
pub(crate) fn reopen_at(store: &StoreLocation) -> Result<Box<dyn Store>> {
    match store {
        StoreLocation::Sqlite(db) => Ok(Box::new(SqliteStore::open(db)?)),
        StoreLocation::Postgres(url) => Ok(Box::new(PgStore::open(url)?)),
    }
}

/// Open the journal for a driver: one connection, owned by the group-commit writer and lent to the driver
/// for its reads, leases and commands. `open` is [`open_store`] or [`open_or_create`].
pub(crate) fn open_for_driver(
    config: &Config,
    open: fn(&Config) -> Result<Box<dyn Store>>,
) -> Result<(Box<dyn Store>, WriterHandle)> {
    let writer = Writer::spawn(open(config)?)?;
    Ok((Box::new(writer.store()), writer))
}

/// `.tutti/` holds the journal, agent sessions and logs: private to the user (mode 0700) and kept out of
/// version control by its own `.gitignore`, so that `git add .` in the project never picks it up.
fn prepare_state_dir(config: &Config) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let Some(dir) = config.db.parent() else { return Ok(()) };
    let shown = || dir.display().to_string();
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| UserError::new(format!("cannot create {}: {e}", shown())))?;
    } else if let Ok(meta) = std::fs::metadata(dir)
        && meta.permissions().mode() & 0o077 != 0
    {
        // Best effort: a folder someone else owns keeps its mode, and tutti still works.
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "# tutti's journal, agent sessions and logs: never commit them.\n*\n")
            .map_err(|e| UserError::new(format!("cannot write {}: {e}", ignore.display())))?;
    }
    Ok(())
}

/// The driver holding `run` right now, if one does: an unexpired lease whose holder, when on this host, is
/// still a live process (a driver killed a moment ago leaves a lease that has not expired yet).
pub(crate) fn live_driver(store: &dyn Leases, run: &str) -> Result<Option<tutti_journal::LeaseHolder>> {
    let holder = store.lease(&run.to_string(), now_ms())?;
    Ok(holder.filter(|h| !tutti_engine::Platform::holder_is_gone(&tutti_harness::LinuxPlatform, h)))
}

/// A run id as the user typed it: exact, or a unique prefix of one.
pub(crate) fn find_run(store: &dyn EventLog, given: &str) -> Result<String> {
    if store.run(&given.to_string())?.is_some() {
        return Ok(given.to_string());
    }
    let upper = given.to_ascii_uppercase();
    let matches: Vec<String> = store.runs()?.into_iter().map(|r| r.id).filter(|id| id.starts_with(&upper)).collect();
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(UserError::new(format!("run {given} not found (see `tutti ls`)")).into()),
        _ => Err(UserError::new(format!("run id prefix {given} is ambiguous: {}", matches.join(", "))).into()),
    }
}

pub(crate) fn display(path: &Path) -> String {
    path.display().to_string()
}
