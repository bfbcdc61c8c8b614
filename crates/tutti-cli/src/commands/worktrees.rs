//! Worktrees from the user's side: `tutti worktrees [RUN] [--json]` lists the git worktrees of runs' isolated
//! tasks, `tutti worktrees prune` removes those no live or resumable run needs, a finished run cleans up after
//! itself (`[worktrees] keep`), and the account of a run's merge queue that `tutti run` prints at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::{Value, json};
use tutti_harness::git::{Repo, WorktreeInfo};
use tutti_journal::{Event, Outcome, Payload, Record, RunStatus};

use crate::commands::open_store;
use crate::config::{Config, Keep};
use crate::output::{self, EXIT_OK};

/// How a run's merges went, by branch.
#[derive(Debug, Default)]
pub(crate) struct Merges {
    /// The integration branches merged into.
    pub(crate) into: BTreeSet<String>,
    pub(crate) merged: Vec<String>,
    pub(crate) resolved: Vec<String>,
    /// (branch, why).
    pub(crate) failed: Vec<(String, String)>,
}

impl Merges {
    /// One line for the end of `tutti run`, when the run merged anything.
    pub(crate) fn summary(&self) -> Option<String> {
        if self.merged.is_empty() && self.resolved.is_empty() && self.failed.is_empty() {
            return None;
        }
        let into: Vec<&str> = self.into.iter().map(String::as_str).collect();
        let mut line = format!(
            "merge into {}: {} merged, {} resolved, {} failed",
            into.join(", "),
            self.merged.len(),
            self.resolved.len(),
            self.failed.len()
        );
        for (branch, why) in &self.failed {
            line.push_str(&format!("\n  FAILED {branch}: {why}"));
        }
        Some(line)
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "into": self.into,
            "merged": self.merged,
            "resolved": self.resolved,
            "failed": self.failed.iter().map(|(branch, error)| json!({ "branch": branch, "error": error })).collect::<Vec<_>>(),
        })
    }
}

/// The merge queue's account, from the journal: each `merge` step's result.
pub(crate) fn merges(records: &[Record]) -> Merges {
    let mut steps: BTreeMap<&str, &Value> = BTreeMap::new();
    let mut out = Merges::default();
    for r in records {
        match &r.event {
            Event::EffectRequested { effect, kind, args: Payload::Inline(args), .. } if kind == "merge" => {
                steps.insert(effect.as_str(), args);
                if let Some(into) = args.get("into").and_then(Value::as_str) {
                    out.into.insert(into.to_string());
                }
            }
            Event::EffectResolved { effect, outcome, .. } => {
                let Some(args) = steps.get(effect.as_str()) else { continue };
                let branch = args.get("branch").and_then(Value::as_str).unwrap_or("?").to_string();
                match outcome {
                    Outcome::Ok { value: Payload::Inline(v) } => match v.get("status").and_then(Value::as_str) {
                        Some("merged") => out.merged.push(branch),
                        Some("resolved") => out.resolved.push(branch),
                        Some("failed") => {
                            let why = v.get("error").and_then(Value::as_str).unwrap_or("failed").to_string();
                            out.failed.push((branch, why));
                        }
                        _ => {}
                    },
                    Outcome::Ok { .. } => {}
                    Outcome::Error { error } => out.failed.push((branch, format!("{}: {}", error.name, error.message))),
                }
            }
            _ => {}
        }
    }
    // A branch whose merge failed and that a later step of the queue took after all is not failed.
    let done: BTreeSet<String> = out.merged.iter().chain(&out.resolved).cloned().collect();
    out.failed.retain(|(branch, _)| !done.contains(branch));
    out
}

/// Where all runs' worktrees live.
fn root_dir(config: &Config) -> PathBuf {
    config.root.join(".tutti").join("worktrees")
}

/// After a run ended: remove its worktrees as `[worktrees] keep` says (merge worktrees always go unless
/// `keep = "all"`; branches always stay), and what git lists but no longer exists.
pub(crate) fn clean_up(config: &Config, run: &str, records: &[Record]) -> Result<()> {
    let dir = root_dir(config).join(run);
    if !dir.exists() {
        return Ok(());
    }
    let repo = Repo::open(&config.root)?;
    let into = merges(records).into;
    for w in repo.worktrees()?.into_iter().filter(|w| w.path.starts_with(&dir)) {
        let remove = match config.keep_worktrees {
            Keep::All => false,
            Keep::None => true,
            Keep::Unmerged => w.path.starts_with(dir.join("merge")) || is_merged(&repo, &w, &into),
        };
        if remove {
            repo.remove_worktree(&w.path)?;
        }
    }
    repo.prune()?;
    remove_empty(&dir);
    Ok(())
}

fn is_merged(repo: &Repo, w: &WorktreeInfo, into: &BTreeSet<String>) -> bool {
    let Some(branch) = &w.branch else { return false };
    into.iter().any(|target| repo.is_merged(branch, target).unwrap_or(false))
}

/// Remove `dir` and the folders under it that hold nothing (best effort).
fn remove_empty(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                remove_empty(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// One worktree as `tutti worktrees` shows it.
struct Row {
    run: String,
    effect: String,
    path: PathBuf,
    branch: String,
    base: String,
    commit: String,
    state: &'static str,
}

/// The run and effect a worktree belongs to, from where it lives.
fn owner(root: &Path, path: &Path) -> Option<(String, String)> {
    let rel: Vec<String> =
        path.strip_prefix(root).ok()?.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let (run, rest) = rel.split_first()?;
    let effect = match rest.split_first() {
        Some((kind, tail)) if kind == "members" => format!("group:{}", tail.join("/")),
        Some((kind, tail)) if kind == "merge" => format!("merge queue {}", tail.join("/")),
        Some((kind, tail)) if kind == "effects" => tail.join("/"),
        _ => rest.join("/"),
    };
    Some((run.clone(), effect))
}

fn rows(config: &Config, only: Option<&str>) -> Result<Vec<Row>> {
    let root = root_dir(config);
    let repo = match Repo::open(&config.root) {
        Ok(repo) => repo,
        Err(_) if !root.exists() => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let store = open_store(config)?;
    let mut runs: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    let mut out = Vec::new();
    for w in repo.worktrees()?.into_iter().filter(|w| w.path.starts_with(&root)) {
        let Some((run, effect)) = owner(&root, &w.path) else { continue };
        if only.is_some_and(|o| !run.starts_with(o)) {
            continue;
        }
        if !runs.contains_key(&run) {
            let records = store.read(&run, 0).unwrap_or_default();
            let base = records
                .first()
                .and_then(|r| match &r.event {
                    Event::RunCreated { options, .. } => {
                        options.get("gitBase").and_then(Value::as_str).map(String::from)
                    }
                    _ => None,
                })
                .unwrap_or_default();
            runs.insert(run.clone(), (base, merges(&records).into));
        }
        let (base, into) = &runs[&run];
        let in_merge = w.path.join(".git").is_file() && repo.merge_in_progress(&w.path).unwrap_or(false);
        let state = if in_merge {
            "merging"
        } else if effect.starts_with("merge queue") {
            "integration"
        } else if is_merged(&repo, &w, into) {
            "merged"
        } else {
            "unmerged"
        };
        out.push(Row {
            run,
            effect,
            branch: w.branch.clone().unwrap_or_else(|| "(detached)".into()),
            base: base.clone(),
            commit: w.head.clone(),
            path: w.path,
            state,
        });
    }
    Ok(out)
}

/// `tutti worktrees [RUN] [--json]`.
pub(crate) fn list(config: &Config, run: Option<&str>, json: bool) -> Result<i32> {
    let rows = rows(config, run)?;
    if json {
        let list: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({ "run": r.run, "effect": r.effect, "path": r.path.display().to_string(), "branch": r.branch,
                        "base": r.base, "commit": r.commit, "state": r.state })
            })
            .collect();
        output::json(&Value::Array(list));
        return Ok(EXIT_OK);
    }
    if rows.is_empty() {
        output::note("no worktrees");
        return Ok(EXIT_OK);
    }
    let short = |s: &str| s.chars().take(10).collect::<String>();
    output::data(&format!(
        "{:<26}  {:<28}  {:<10}  {:<10}  {:<11}  BRANCH / PATH",
        "RUN", "EFFECT", "BASE", "COMMIT", "STATE"
    ));
    for r in &rows {
        output::data(&format!(
            "{:<26}  {:<28}  {:<10}  {:<10}  {:<11}  {}\n{:>94}{}",
            r.run,
            output::escape_controls(&r.effect),
            short(&r.base),
            short(&r.commit),
            r.state,
            r.branch,
            "",
            r.path.display()
        ));
    }
    Ok(EXIT_OK)
}

/// `tutti worktrees prune`: remove the worktrees of runs that ended or are gone (their branches stay), and
/// what git lists but no longer exists.
pub(crate) fn prune(config: &Config, json: bool) -> Result<i32> {
    let root = root_dir(config);
    let repo = match Repo::open(&config.root) {
        Ok(repo) => repo,
        Err(_) if !root.exists() => {
            output::note("no worktrees");
            return Ok(EXIT_OK);
        }
        Err(e) => return Err(e.into()),
    };
    let store = open_store(config)?;
    let mut removed = Vec::new();
    for w in repo.worktrees()?.into_iter().filter(|w| w.path.starts_with(&root)) {
        let Some((run, _)) = owner(&root, &w.path) else { continue };
        let needed = store.run(&run)?.is_some_and(|summary| summary.status == RunStatus::Running);
        if !needed {
            repo.remove_worktree(&w.path)?;
            removed.push(w.path.display().to_string());
        }
    }
    repo.prune()?;
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            remove_empty(&entry.path());
        }
    }
    if json {
        output::json(&json!({ "removed": removed }));
    } else {
        output::note(&format!("removed {} worktree(s); their branches are kept", removed.len()));
    }
    Ok(EXIT_OK)
}
