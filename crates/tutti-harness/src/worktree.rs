//! Worktree isolation: a task with `isolation: "worktree"` runs in a git worktree of its own, on a branch of its
//! own, created from the run's base commit (journaled with the run). [`Worktrees`] is a run's view of them: where
//! each effect's or member's worktree lives, creating, reusing and resetting it, and committing what the agent
//! left. [`Isolating`] wraps every harness of a run: a job that asks for isolation gets its worktree as its
//! working directory, and its result (an object) gets a `worktree` field `{ branch, base, commit, path, files }`.
//! Jobs that do not ask for isolation pass through untouched.
//!
//! Layout: `.tutti/worktrees/RUN/effects/EFFECT` on branch `tutti/RUN/EFFECT` for an effect,
//! `.tutti/worktrees/RUN/members/GROUP/MEMBER` on `tutti/RUN/members/GROUP/MEMBER` for a member (one worktree
//! and one branch for all its rounds), `.tutti/worktrees/RUN/merge/INTO` for a merge queue's integration branch.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use tutti_engine::harness::Error as StartError;
use tutti_engine::{Failure, Harness, Job, Outcome, Reporter, Running};
use tutti_journal::ErrorInfo;

use crate::git::{GitError, Repo};

/// The worktrees of one run.
#[derive(Debug)]
pub struct Worktrees {
    project: PathBuf,
    run: String,
    /// The run's base commit (`None`: the project was no git repository with a commit when the run started).
    base: Option<String>,
    /// Whether the user was told (once, at the first isolated effect) that uncommitted changes are not in the
    /// worktrees.
    warned: AtomicBool,
}

/// Where one job works.
#[derive(Clone, Debug, PartialEq)]
pub struct Place {
    pub path: PathBuf,
    pub branch: String,
    /// A member's worktree lasts across rounds; an effect's is reset when the effect runs again.
    pub lasting: bool,
}

impl Worktrees {
    /// The worktrees of run `run` in `project`, from `base` (the run's journaled base commit; `None` when the
    /// project was no git repository with a commit when the run started).
    pub fn new(project: &Path, run: &str, base: Option<String>) -> Self {
        Self { project: project.to_path_buf(), run: run.to_string(), base, warned: AtomicBool::new(false) }
    }

    /// The base commit of a new run in `project`: HEAD; `None` when the project is not a git repository with a
    /// commit (isolated tasks then fail naming why). Cheap: it does not ask for the tree's status.
    pub fn base_of(project: &Path) -> Option<String> {
        crate::git::head_of(project)
    }

    pub fn run(&self) -> &str {
        &self.run
    }

    /// Where this run's worktrees live.
    pub fn dir(&self) -> PathBuf {
        self.project.join(".tutti").join("worktrees").join(&self.run)
    }

    /// The repository and the base commit, or the error an isolated task fails with.
    pub(crate) fn repo(&self) -> Result<(Repo, String), GitError> {
        let repo = Repo::open(&self.project)?;
        let base = self.base.clone().ok_or_else(|| GitError::NoCommit { dir: self.project.clone() })?;
        Ok((repo, base))
    }

    /// Where `job` works, if its task asks for a worktree.
    pub fn place(&self, job: &Job) -> Option<Place> {
        if job.task.get("isolation").and_then(Value::as_str) != Some("worktree") {
            return None;
        }
        Some(match job.effect.member() {
            Some((group, member)) => Place {
                path: self.dir().join("members").join(group).join(member),
                branch: format!("tutti/{}/members/{group}/{member}", self.run),
                lasting: true,
            },
            None => {
                let name = ref_safe(&job.effect);
                Place {
                    path: self.dir().join("effects").join(&name),
                    branch: format!("tutti/{}/{name}", self.run),
                    lasting: false,
                }
            }
        })
    }

    /// The integration worktree of a merge queue into `into`.
    pub fn merge_place(&self, into: &str) -> PathBuf {
        self.dir().join("merge").join(ref_safe(into).replace('/', "--"))
    }

    /// Create (or reuse) the worktree of `place`. An effect that runs again starts over from the base; a
    /// member's worktree keeps what its earlier rounds committed.
    ///
    /// Branches are named after the run (a ULID) and the effect, so one that exists already can only be this
    /// effect's own from an attempt a dead driver started (journaled or not): it is taken over and reset.
    fn prepare(&self, place: &Place) -> Result<(Repo, String), GitError> {
        let (repo, base) = self.repo()?;
        let existed = repo.branch_commit(&place.branch)?.is_some();
        repo.worktree(&place.path, &place.branch, &base, true)?;
        if existed && !place.lasting {
            repo.reset(&place.path, &base)?;
        }
        Ok((repo, base))
    }

    /// Commit what the job left and add the worktree to an object result.
    fn finish(&self, repo: &Repo, base: &str, place: &Place, job: &Job, outcome: Outcome) -> Outcome {
        let message = format!("tutti: {} of run {} ({} on {})", job.effect, self.run, job.task_id, job.kind);
        let committed = repo.commit_all(&place.path, &message).and_then(|commit| {
            let files = repo.changed_files(&place.path, base)?;
            Ok((commit, files))
        });
        let (commit, files) = match committed {
            Ok(done) => done,
            Err(e) => return Err(Failure::Task(git_error(&job.effect, &e))),
        };
        outcome.map(|value| match value {
            Value::Object(mut map) => {
                map.insert(
                    "worktree".into(),
                    json!({
                        "branch": place.branch,
                        "base": base,
                        "commit": commit,
                        "path": place.path.display().to_string(),
                        "files": files,
                    }),
                );
                Value::Object(map)
            }
            other => other,
        })
    }

    /// The worktree a merge's resolver is sent to, checked to be one of this run's.
    fn resolver_dir(&self, job: &Job) -> Option<Result<PathBuf, StartError>> {
        let wanted = job.task.get("worktree").and_then(Value::as_str)?;
        let path = PathBuf::from(wanted);
        let ours = path.starts_with(self.dir()) && !path.components().any(|c| c.as_os_str() == "..");
        Some(if ours && path.is_dir() {
            Ok(path)
        } else {
            Err(StartError::Invalid(format!(
                "effect {}: `worktree` {wanted} is not a worktree of run {}",
                job.effect, self.run
            )))
        })
    }
}

/// The error an isolated effect fails with when git does.
pub(crate) fn git_error(effect: &str, e: &GitError) -> ErrorInfo {
    let name = match e {
        GitError::NotARepository { .. } => "NotAGitRepository",
        GitError::NoCommit { .. } => "NoCommit",
        GitError::BranchExists { .. } => "BranchExists",
        _ => "GitError",
    };
    ErrorInfo::new(name, format!("effect {effect}: {e}"))
}

/// A name usable in a branch and a path: `root/parallel:2/0` → `root/parallel-2/0`.
fn ref_safe(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.') { c } else { '-' })
        .collect()
}

/// A harness of a run, with worktree isolation for the jobs that ask for it.
pub struct Isolating {
    inner: Arc<dyn Harness>,
    worktrees: Arc<Worktrees>,
}

impl Isolating {
    pub fn new(inner: Arc<dyn Harness>, worktrees: Arc<Worktrees>) -> Self {
        Self { inner, worktrees }
    }
}

impl Harness for Isolating {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn is_pure(&self) -> bool {
        self.inner.is_pure()
    }

    fn is_external(&self) -> bool {
        self.inner.is_external()
    }

    fn retry(&self) -> Option<serde_json::Value> {
        self.inner.retry()
    }

    fn max_parallel(&self) -> Option<usize> {
        self.inner.max_parallel()
    }

    fn capabilities(&self) -> Vec<String> {
        self.inner.capabilities()
    }

    fn availability(&self) -> Result<(), String> {
        self.inner.availability()
    }

    fn memory_per_attempt_mb(&self) -> Option<u64> {
        self.inner.memory_per_attempt_mb()
    }

    fn version(&self) -> Option<String> {
        self.inner.version()
    }

    fn start(&self, mut job: Job, reporter: Reporter) -> Result<Box<dyn Running>, StartError> {
        if let Some(dir) = self.worktrees.resolver_dir(&job) {
            job.workdir = dir?;
            return self.inner.start(job, reporter);
        }
        let Some(place) = self.worktrees.place(&job) else { return self.inner.start(job, reporter) };
        let (repo, base) = match self.worktrees.prepare(&place) {
            Ok(ready) => ready,
            Err(e) => {
                // Not a start failure (that would look like an unavailable harness): the effect fails, naming git's
                // reason.
                reporter.finish(Err(Failure::Task(git_error(&job.effect, &e))));
                return Ok(Box::new(crate::echo::Done));
            }
        };
        if !self.worktrees.warned.swap(true, Ordering::SeqCst) && repo.head().is_ok_and(|head| head.dirty) {
            reporter.note(format!(
                "worktrees start from the run's base commit {}: the project's uncommitted changes are not in them",
                &base[..base.len().min(12)]
            ));
        }
        if place.lasting {
            reporter.worktree(place.path.display().to_string(), place.branch.clone());
        }
        job.workdir = place.path.clone();
        let worktrees = Arc::clone(&self.worktrees);
        let finished = job.clone();
        let reporter = reporter.then(move |outcome| worktrees.finish(&repo, &base, &place, &finished, outcome));
        self.inner.start(job, reporter)
    }
}
