//! The commands: each takes validated configuration, does its work, and returns an exit code.

mod control;
mod doctor;
mod inspect;
mod mcp;
mod msg;
mod run;

use std::path::Path;

use anyhow::Result;
use tutti_journal::{SqliteStore, Store, Writer, WriterHandle};

use crate::args::{Args, Cmd};
use crate::config::Config;
pub(crate) use inspect::{now_ms, utc};

use crate::output::UserError;

pub(crate) fn dispatch(args: Args) -> Result<i32> {
    let config = Config::load(args.home.as_deref())?;
    match args.command {
        Cmd::Run(a) => run::run(&config, a),
        Cmd::Resume(a) => run::resume(&config, a),
        Cmd::Status { run, json } => inspect::status(&config, run.as_deref(), json),
        Cmd::Ls { json } => inspect::ls(&config, json),
        Cmd::Groups { run, json } => inspect::groups(&config, &run, json),
        Cmd::Events { run, json, follow } => inspect::events(&config, &run, json, follow),
        Cmd::Approve { run, effect, reject, response } => control::approve(&config, &run, &effect, reject, response),
        Cmd::Post { run, effect, value, error } => control::post(&config, &run, &effect, value, error),
        Cmd::Cancel { run, reason } => control::cancel(&config, &run, &reason),
        Cmd::Msg { action } => msg::msg(&config, action),
        Cmd::Mcp => mcp::mcp(&config),
        Cmd::Doctor { json } => doctor::doctor(&config, json),
    }
}

/// Open the project's journal for reading and control commands.
pub(crate) fn open_store(config: &Config) -> Result<Box<dyn Store>> {
    Ok(Box::new(SqliteStore::open(&config.db)?))
}

/// Open the journal for a driver: a reading connection and the group-commit writer.
pub(crate) fn open_for_driver(config: &Config) -> Result<(Box<dyn Store>, WriterHandle)> {
    let store = open_store(config)?;
    let writer = Writer::spawn(Box::new(SqliteStore::open(&config.db)?))?;
    Ok((store, writer))
}

/// The driver holding `run` right now, if one does: an unexpired lease whose holder, when on this host, is
/// still a live process (a driver killed a moment ago leaves a lease that has not expired yet).
pub(crate) fn live_driver(store: &dyn Store, run: &str) -> Result<Option<tutti_journal::LeaseHolder>> {
    let holder = store.lease(&run.to_string(), now_ms())?;
    Ok(holder.filter(|h| !tutti_engine::driver::holder_is_gone(h)))
}

/// A run id as the user typed it: exact, or a unique prefix of one.
pub(crate) fn find_run(store: &dyn Store, given: &str) -> Result<String> {
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
