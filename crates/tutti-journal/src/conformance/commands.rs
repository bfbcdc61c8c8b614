//! Conformance checks of [`CommandQueue`]: commands are queued per run, taken once each, oldest first, and
//! refused for a run that does not exist; a backend that pushes commands wakes a run's listener for that
//! run's commands only.

use serde_json::json;

use super::{Check, RUN_A, RUN_B, id, new_run};
use crate::event::{ErrorInfo, Outcome};
use crate::store::{Command, CommandQueue, Error, Store};

/// The checks of this part, by name.
pub const COMMAND_CHECKS: &[(&str, Check)] = &[
    check!(commands_are_taken_once_in_order),
    check!(commands_to_unknown_run_are_refused),
    check!(a_listener_hears_its_runs_commands),
];

fn cancel(reason: &str) -> Command {
    Command::Cancel { reason: reason.into(), by: None }
}

pub fn commands_are_taken_once_in_order(store: &mut dyn Store) {
    new_run(store, RUN_A, 1);
    new_run(store, RUN_B, 1);
    let resolve = Command::Resolve {
        effect: "root/1".into(),
        outcome: Outcome::Error { error: ErrorInfo::new("Rejected", "no").with_data(json!({"by": "me"})) },
        by: Some(crate::Actor { user: "ann".into(), host: "h".into(), tty: None, pid: 7, via: "cli".into() }),
    };
    store.post_command(&id(RUN_A), &resolve).expect("post_command");
    store.post_command(&id(RUN_B), &cancel("b")).expect("post_command");
    store.post_command(&id(RUN_A), &cancel("a")).expect("post_command");
    assert_eq!(store.queued_commands(&id(RUN_A)).expect("queued"), [resolve.clone(), cancel("a")], "peeked");
    assert_eq!(store.take_commands(&id(RUN_A)).expect("take"), [resolve, cancel("a")], "oldest first");
    assert!(store.take_commands(&id(RUN_A)).expect("take").is_empty(), "a command is taken only once");
    store.post_command(&id(RUN_A), &cancel("later")).expect("post_command");
    assert_eq!(store.take_commands(&id(RUN_A)).expect("take"), [cancel("later")], "new commands still arrive");
    assert_eq!(store.take_commands(&id(RUN_B)).expect("take"), [cancel("b")], "commands stay with their run");
}

pub fn commands_to_unknown_run_are_refused(store: &mut dyn CommandQueue) {
    let err = store.post_command(&id(RUN_A), &cancel("x")).expect_err("post_command to an unknown run");
    assert!(matches!(&err, Error::UnknownRun(run) if run == RUN_A), "expected UnknownRun, got {err:?}");
    assert!(store.take_commands(&id(RUN_A)).expect("take_commands").is_empty());
}

pub fn a_listener_hears_its_runs_commands(store: &mut dyn Store) {
    new_run(store, RUN_A, 1);
    new_run(store, RUN_B, 1);
    // A backend without push has no listener: its callers poll, which the checks above cover.
    let Some(mut listener) = store.command_listener(&id(RUN_A)).expect("command_listener") else { return };
    let short = std::time::Duration::from_millis(100);
    assert!(!listener.wait(short).expect("wait"), "nothing was posted yet");
    store.post_command(&id(RUN_B), &cancel("b")).expect("post_command");
    assert!(!listener.wait(short).expect("wait"), "a command to another run woke the listener");
    store.post_command(&id(RUN_A), &cancel("a")).expect("post_command");
    assert!(listener.wait(std::time::Duration::from_secs(10)).expect("wait"), "a posted command wakes the listener");
    assert_eq!(store.take_commands(&id(RUN_A)).expect("take"), [cancel("a")]);
}
