//! Who is calling a control command (`approve`, `post`, `cancel`): the person's identity that the journal
//! records with the decision, and the check that refuses a caller running inside an effect's process tree.
//! Agents run as the same user as tutti, so the check cannot rest on what an agent controls (its
//! environment); it walks the caller's real ancestry in `/proc` and compares it with the run's attempts and
//! the project's live drivers. The threat model is in `docs/design/security.md`.

use std::collections::BTreeSet;

use tutti_journal::{Actor, Event, Record, Store};

use crate::commands::now_ms;
use crate::output::UserError;

/// One process of the caller's ancestry, as `/proc/PID/stat` tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Proc {
    pid: u32,
    ppid: u32,
    pgid: u32,
}

/// The person giving a command from this process.
pub(crate) fn actor() -> Actor {
    Actor {
        user: user_name(),
        host: tutti_engine::Platform::host_name(&tutti_harness::LinuxPlatform),
        tty: tty(),
        pid: std::process::id(),
        via: "cli".into(),
    }
}

/// Refuse the command when it comes from inside the process tree of an effect of `run` (or of any run of the
/// project that a driver on this host is driving). A user error: exit 2, nothing queued.
pub(crate) fn refuse_inside_effect(store: &dyn Store, run: &str, records: &[Record], what: &str) -> anyhow::Result<()> {
    let refuse = |why: String| -> anyhow::Result<()> {
        Err(UserError::new(format!(
            "refused: `tutti {what}` is for people, and this one comes from inside {why}. An agent cannot approve, \
             post or cancel for a person; ask the person watching the run (`tutti status {run}` shows what waits)"
        ))
        .into())
    };
    if let Ok(effect) = std::env::var("TUTTI_EFFECT_ID") {
        return refuse(format!("effect {effect} (its environment says so)"));
    }
    let attempts = live_attempt_pids(records);
    let drivers = live_driver_pids(store)?;
    for p in ancestry() {
        if attempts.contains(&p.pid) || attempts.contains(&p.pgid) {
            return refuse(format!("the process tree of an attempt of run {run} (process {})", p.pid));
        }
        if drivers.contains(&p.pid) {
            return refuse(format!("a process started by the tutti driver {}", p.pid));
        }
    }
    Ok(())
}

/// The process group ids of attempts that were started and have not ended: each effect's latest start.
fn live_attempt_pids(records: &[Record]) -> BTreeSet<u32> {
    let mut pids = std::collections::BTreeMap::new();
    for r in records {
        match &r.event {
            Event::EffectStarted { effect, pid: Some(pid), .. } => {
                pids.insert(effect.clone(), *pid);
            }
            Event::EffectResolved { effect, .. } | Event::EffectCancelled { effect, .. } => {
                pids.remove(effect);
            }
            _ => {}
        }
    }
    pids.into_values().collect()
}

/// Pids of the drivers on this host that hold a live lease on a run of the project. Every attempt is a
/// descendant of its driver while the driver lives, whatever process group or session it moved to.
fn live_driver_pids(store: &dyn Store) -> anyhow::Result<BTreeSet<u32>> {
    let host = tutti_engine::Platform::host_name(&tutti_harness::LinuxPlatform);
    let mut pids = BTreeSet::new();
    for run in store.runs()?.into_iter().filter(|r| !r.status.is_terminal()) {
        if let Some(holder) = store.lease(&run.id, now_ms())?
            && holder.host == host
        {
            pids.insert(holder.pid);
        }
    }
    Ok(pids)
}

/// This process and its ancestors up to (not including) pid 1.
fn ancestry() -> Vec<Proc> {
    let mut chain = Vec::new();
    let mut pid = std::process::id();
    while pid > 1 && chain.len() < 4096 {
        let Some(p) = stat(pid) else { break };
        chain.push(p);
        pid = p.ppid;
    }
    chain
}

fn stat(pid: u32) -> Option<Proc> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `pid (comm) state ppid pgrp ...`: the command name may hold spaces and parentheses, so fields are read
/// after its last `)`.
fn parse_stat(text: &str) -> Option<Proc> {
    let pid = text.split_once(' ')?.0.parse().ok()?;
    let mut fields = text.rsplit_once(')')?.1.split_whitespace();
    let _state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some(Proc { pid, ppid, pgid })
}

fn user_name() -> String {
    // SAFETY: getuid(2) cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    let from_passwd = std::fs::read_to_string("/etc/passwd").ok().and_then(|passwd| {
        passwd.lines().find_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
        })
    });
    from_passwd.unwrap_or_else(|| format!("uid {uid}"))
}

/// The terminal of stdin, stdout or stderr, if one of them is a terminal.
fn tty() -> Option<String> {
    (0..3).find_map(|fd| {
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
        let shown = target.display().to_string();
        (shown.starts_with("/dev/pts/") || shown.starts_with("/dev/tty")).then_some(shown)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "4242 (a) b (c)) S 17 4240 4240 34816 4242 4194304 0 0";
        assert_eq!(parse_stat(line), Some(Proc { pid: 4242, ppid: 17, pgid: 4240 }));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn the_ancestry_of_this_test_reaches_its_parent() {
        let chain = ancestry();
        assert_eq!(chain.first().map(|p| p.pid), Some(std::process::id()));
        // SAFETY: getppid(2) cannot fail.
        let parent = unsafe { libc::getppid() } as u32;
        if parent > 1 {
            assert_eq!(chain.get(1).map(|p| p.pid), Some(parent), "{chain:?}");
        }
    }

    #[test]
    fn attempts_that_ended_are_not_live() {
        let rec = |seq, event| Record { seq, ts_ms: 0, event };
        let started = |effect: &str, pid| Event::EffectStarted {
            effect: effect.into(),
            attempt: 1,
            harness: "shell".into(),
            pid: Some(pid),
        };
        let records = vec![
            rec(1, started("root/0", 100)),
            rec(2, started("root/1", 200)),
            rec(3, Event::EffectCancelled { effect: "root/0".into(), reason: "x".into() }),
        ];
        assert_eq!(live_attempt_pids(&records), BTreeSet::from([200]));
    }
}
