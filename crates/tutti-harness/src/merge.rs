//! The `merge` harness: one step of `ctx.merge` per job — merge a branch into the run's integration branch,
//! finish a merge a resolver worked on, or abort one. The integration branch lives in a worktree of its own under
//! `.tutti/worktrees/RUN/merge/`, never in the user's checked-out tree (unless `into` names the checked-out branch
//! and that tree is clean). Every step is idempotent, so a step that runs again after a crash redoes nothing: an
//! interrupted merge is aborted and redone, and a branch already merged is reported with the commit that has it.
//!
//! Results: `{ status: "merged" | "conflict" | "resolved" | "failed", commit, files?, path?, base?, error? }`.
//! A conflict without a resolver is aborted and reported `failed`; a git error fails the step itself.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use tutti_engine::harness::Error as StartError;
use tutti_engine::{Failure, Harness, Job, Outcome, Reporter, Running};
use tutti_journal::ErrorInfo;

use crate::git::{GitError, MergeOutcome, Repo};
use crate::worktree::{Worktrees, git_error};

/// Runs `ctx.merge`'s steps for one run.
pub struct MergeHarness {
    worktrees: Arc<Worktrees>,
}

impl MergeHarness {
    pub fn new(worktrees: Arc<Worktrees>) -> Self {
        Self { worktrees }
    }

    /// The integration worktree of `into`: created from the run's base when the branch is new.
    fn integration(&self, repo: &Repo, base: &str, into: &str) -> Result<PathBuf, ErrorInfo> {
        let head = repo.head().map_err(|e| git_error("merge", &e))?;
        if head.branch.as_deref() == Some(into) {
            if head.dirty {
                return Err(ErrorInfo::new(
                    "MergeTarget",
                    format!(
                        "ctx.merge: `into` names {into}, the branch checked out in {}, whose tree has uncommitted \
                         changes; commit or stash them, or merge into another branch",
                        repo.root().display()
                    ),
                ));
            }
            return Ok(repo.root().to_path_buf());
        }
        let path = self.worktrees.merge_place(into);
        repo.worktree(&path, into, base, true).map_err(|e| git_error("merge", &e))?;
        Ok(path)
    }

    fn step(&self, job: &Job) -> Outcome {
        let arg = |key: &str| job.args.get(key).and_then(Value::as_str).unwrap_or("").to_string();
        let (step, branch, into) = (arg("step"), arg("branch"), arg("into"));
        if branch.is_empty() || into.is_empty() {
            return Err(ErrorInfo::new(
                "MergeError",
                format!("effect {}: a merge step needs `branch` and `into`", job.effect),
            )
            .into());
        }
        let (repo, base) = self.worktrees.repo().map_err(|e| Failure::Task(git_error(&job.effect, &e)))?;
        let path = self.integration(&repo, &base, &into).map_err(Failure::Task)?;
        let message = format!("tutti: merge {branch} into {into} (run {}, {})", self.worktrees.run(), job.effect);
        let failed = |error: String| json!({ "status": "failed", "branch": branch, "error": error });
        let git = |e: GitError| Failure::Task(git_error(&job.effect, &e));
        match step.as_str() {
            "merge" => match repo.merge(&path, &branch, &message).map_err(git)? {
                MergeOutcome::Merged { commit } | MergeOutcome::AlreadyMerged { commit } => {
                    Ok(json!({ "status": "merged", "branch": branch, "commit": commit }))
                }
                MergeOutcome::Conflict { files } if job.args.get("resolver") == Some(&Value::Bool(true)) => Ok(json!({
                    "status": "conflict",
                    "branch": branch,
                    "files": files,
                    "path": path.display().to_string(),
                    "base": base,
                })),
                MergeOutcome::Conflict { files } => {
                    repo.abort_merge(&path).map_err(git)?;
                    Ok(failed(format!("conflict in {} and no onConflict resolver", files.join(", "))))
                }
            },
            "finish" => {
                // Text files the resolver cleaned of markers count as resolved even if it did not `git add` them.
                let files: Vec<String> = job
                    .args
                    .get("files")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                let resolved = |commit: String| Ok(json!({ "status": "resolved", "branch": branch, "commit": commit }));
                match repo.stage_resolved(&path, &files).and_then(|_| repo.finish_merge(&path, &message)) {
                    Ok(commit) => resolved(commit),
                    Err(GitError::Unresolved { files, reason }) => {
                        repo.abort_merge(&path).map_err(git)?;
                        Ok(failed(format!("the resolver left the merge unresolved: {reason} ({})", files.join(", "))))
                    }
                    // Finished before a crash: the merge commit is there already.
                    Err(GitError::NoMergeInProgress { .. }) => match repo
                        .merge(&path, &branch, &message)
                        .map_err(git)?
                    {
                        MergeOutcome::AlreadyMerged { commit } | MergeOutcome::Merged { commit } => resolved(commit),
                        MergeOutcome::Conflict { files } => {
                            repo.abort_merge(&path).map_err(git)?;
                            Ok(failed(format!("the merge conflicts again in {}", files.join(", "))))
                        }
                    },
                    Err(e) => Err(git(e)),
                }
            }
            "abort" => {
                repo.abort_merge(&path).map_err(git)?;
                Ok(failed("aborted".into()))
            }
            other => {
                Err(ErrorInfo::new("MergeError", format!("effect {}: unknown merge step {other:?}", job.effect)).into())
            }
        }
    }
}

impl Harness for MergeHarness {
    fn name(&self) -> &str {
        "merge"
    }

    /// One merge at a time: the queue is sequential by construction, and git serialises per repository anyway.
    fn max_parallel(&self) -> Option<usize> {
        Some(1)
    }

    fn start(&self, job: Job, reporter: Reporter) -> Result<Box<dyn Running>, StartError> {
        let outcome = self.step(&job);
        reporter.finish(outcome);
        Ok(Box::new(crate::echo::Done))
    }
}
