//! The git layer for isolated worktrees and durable merges: opening a repository, creating, reusing, resetting
//! and removing the worktree each agent runs in, committing what an agent left behind, and merging branches
//! into an integration worktree so that every step can run again after a crash. It shells out to the `git` CLI
//! and serialises the operations that touch shared repository metadata behind one lock per repository (threads
//! and processes alike). Deciding which worktrees exist, journaling and driving merges is the engine's.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Environment variables that would point git at another repository, index or object store than `-C dir`.
const REPO_ENV: [&str; 6] =
    ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY", "GIT_NAMESPACE"];

/// How often a git command that found one of git's own lock files taken is run again, and the first pause.
const LOCK_RETRIES: u32 = 10;
const LOCK_BACKOFF: Duration = Duration::from_millis(10);

/// The identity commits get when the worktree's git configuration has none.
const FALLBACK_NAME: &str = "user.name=tutti";
const FALLBACK_EMAIL: &str = "user.email=tutti@localhost";

/// Files under any `.tutti/` folder: tutti's own state, never committed.
const TUTTI_FILES: &str = ":(glob)**/.tutti/**";
const NOT_TUTTI_FILES: &str = ":(exclude,glob)**/.tutti/**";

/// A conflict marker line as git writes it (`<<<<<<< ours` / `>>>>>>> theirs`).
const MARKER: &str = "^(<<<<<<<|>>>>>>>) ";

/// Why a git operation failed: the command, its exit status and git's own stderr (trimmed), so the error can be
/// journaled as is.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum GitError {
    /// `dir` (the directory opened) is not inside a git work tree.
    #[error("{} is not a git repository: worktree isolation needs one (git init && git commit)", dir.display())]
    NotARepository { dir: PathBuf },
    /// The repository at `dir` (its root) has no commit yet, so there is nothing to branch a worktree from.
    #[error("the git repository at {} has no commit yet: worktree isolation needs one (git commit)", dir.display())]
    NoCommit { dir: PathBuf },
    /// `branch`, which a worktree would create, already exists at `commit`, which is not the base, and was not
    /// created for this worktree.
    #[error("branch {branch} already exists at {commit} and does not belong to this worktree")]
    BranchExists { branch: String, commit: String },
    /// `path` is a worktree of this repository on `branch` (`None`: detached), not on the `wanted` one.
    #[error("{} is a worktree on {}, not on {wanted}", path.display(), branch.as_deref().unwrap_or("a detached HEAD"))]
    PathInUse { path: PathBuf, branch: Option<String>, wanted: String },
    /// `path` is not the top of a worktree of the repository at `repo`: refused rather than run git in whatever
    /// repository contains it.
    #[error("{} is not a worktree of the git repository at {}", path.display(), repo.display())]
    NotAWorktree { path: PathBuf, repo: PathBuf },
    /// [`Repo::finish_merge`] was called on the worktree `dir`, which has no merge in progress.
    #[error("no merge is in progress in {}", dir.display())]
    NoMergeInProgress { dir: PathBuf },
    /// [`Repo::finish_merge`] refused: `files` are still unmerged or still hold conflict markers; `reason` says
    /// which, and what to do.
    #[error("the merge is not resolved: {reason}: {}", files.join(", "))]
    Unresolved { files: Vec<String>, reason: String },
    /// A git command failed: its `command` line, its exit `code` (`None` when a signal ended it) and its `stderr`,
    /// trimmed.
    #[error("`{command}` failed ({}): {stderr}", code.map_or("killed by a signal".into(), |code| format!("exit {code}")))]
    Failed { command: String, code: Option<i32>, stderr: String },
    /// git could not be run, or a file next to it could not be read or written.
    #[error("{0}")]
    Io(String),
}

/// A git repository, opened at the top of one of its work trees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repo {
    root: PathBuf,
    common_dir: PathBuf,
}

/// Where a work tree's `HEAD` is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The full sha of the commit checked out.
    pub commit: String,
    /// The branch checked out, `None` when `HEAD` is detached.
    pub branch: Option<String>,
    /// Whether `git status` shows changes (untracked files under `.tutti/` aside).
    pub dirty: bool,
}

/// A worktree [`Repo::worktree`] created or reused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worktree {
    /// Its path (absolute, symlinks resolved).
    pub path: PathBuf,
    /// The branch it has checked out.
    pub branch: String,
    /// The base it was asked for, as given.
    pub base: String,
    /// The full sha of its `HEAD`.
    pub head: String,
    /// True when this call added it, false when an existing worktree was reused as is.
    pub created: bool,
}

/// One entry of `git worktree list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorktreeInfo {
    /// Its path, as git recorded it.
    pub path: PathBuf,
    /// The branch checked out, `None` when detached (or for a bare repository).
    pub branch: Option<String>,
    /// The full sha of its `HEAD` (empty for a bare repository).
    pub head: String,
    /// The reason it is locked (possibly empty), `None` when it is not. `initializing` marks one whose
    /// `git worktree add` never finished.
    pub locked: Option<String>,
    /// True when git would prune it (its directory is gone).
    pub prunable: bool,
}

/// What [`Repo::merge`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeOutcome {
    /// A merge commit, `commit`, was made.
    Merged { commit: String },
    /// The branch's tip was already part of `HEAD` (`commit`): nothing was done.
    AlreadyMerged { commit: String },
    /// The merge stopped on conflicts in `files` (the unmerged paths, sorted) and is left in progress in the
    /// worktree, for a resolver and then [`Repo::finish_merge`] (or [`Repo::abort_merge`]).
    Conflict { files: Vec<String> },
}

impl Repo {
    /// Opens the repository whose work tree contains `dir`. Fails with [`GitError::NotARepository`] outside one
    /// (or in a bare repository) and [`GitError::NoCommit`] when it has no commit yet.
    pub fn open(dir: &Path) -> Result<Repo, GitError> {
        if !dir.is_dir() || !in_a_repository(dir) {
            return Err(GitError::NotARepository { dir: dir.to_path_buf() });
        }
        let args = ["rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir"];
        let output = run(dir, &args)?;
        if output.code != Some(0) {
            let not_a_repo = ["not a git repository", "must be run in a work tree"];
            if not_a_repo.iter().any(|text| output.stderr.contains(text)) {
                return Err(GitError::NotARepository { dir: dir.to_path_buf() });
            }
            return Err(output.failed(dir, &args));
        }
        let mut lines = output.stdout.lines();
        let (Some(root), Some(common_dir)) = (lines.next(), lines.next()) else {
            return Err(GitError::NotARepository { dir: dir.to_path_buf() });
        };
        let repo = Repo { root: canonical(Path::new(root)), common_dir: canonical(Path::new(common_dir)) };
        if run(&repo.root, &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])?.code != Some(0) {
            return Err(GitError::NoCommit { dir: repo.root });
        }
        Ok(repo)
    }

    /// The top of the work tree the repository was opened in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where [`Repo::root`]'s `HEAD` is and whether it has changes.
    pub fn head(&self) -> Result<Head, GitError> {
        let commit = git(&self.root, &["rev-parse", "HEAD"])?;
        let symbolic = run(&self.root, &["symbolic-ref", "--quiet", "--short", "HEAD"])?;
        let branch = (symbolic.code == Some(0)).then(|| symbolic.stdout.trim().to_string());
        let status = git(&self.root, &["status", "--porcelain"])?;
        let tutti = |path: &str| path.starts_with(".tutti/") || path.contains("/.tutti/");
        let dirty = status.lines().any(|line| !line.strip_prefix("?? ").is_some_and(tutti));
        Ok(Head { commit, branch, dirty })
    }

    /// The sha `refs/heads/<branch>` points at, `None` when there is no such branch.
    pub fn branch_commit(&self, branch: &str) -> Result<Option<String>, GitError> {
        let reference = format!("refs/heads/{branch}^{{commit}}");
        let output = run(&self.root, &["rev-parse", "--verify", "--quiet", &reference])?;
        Ok((output.code == Some(0)).then(|| output.stdout.trim().to_string()))
    }

    /// Creates (or reuses) a worktree at `path` (relative paths are under [`Repo::root`]) on `branch`.
    ///
    /// If `path` already is a worktree of this repository on `branch`, it is reused as is: a member's worktree
    /// lasts across rounds and restarts. Otherwise a stale registration at `path` (its directory deleted by
    /// hand, or a worktree whose `git worktree add` never finished) is cleared first. Then, if `branch` exists,
    /// the worktree checks it out when `reuse_branch` is set, when the branch still points at `base`, or when the
    /// stale registration at `path` was on it; else this fails with [`GitError::BranchExists`]. A missing
    /// `branch` is created at `base`. A worktree at `path` on another branch is [`GitError::PathInUse`].
    pub fn worktree(&self, path: &Path, branch: &str, base: &str, reuse_branch: bool) -> Result<Worktree, GitError> {
        let path = self.absolute(path);
        let _lock = self.lock()?;
        let mut owned = false;
        if let Some(entry) = self.worktrees()?.into_iter().find(|entry| canonical(&entry.path) == path) {
            let stale = entry.prunable || entry.locked.as_deref() == Some("initializing") || !path.is_dir();
            if !stale && entry.branch.as_deref() == Some(branch) {
                let head = git(&path, &["rev-parse", "HEAD"])?;
                return Ok(Worktree { path, branch: branch.into(), base: base.into(), head, created: false });
            }
            if !stale {
                return Err(GitError::PathInUse { path, branch: entry.branch, wanted: branch.into() });
            }
            owned = entry.branch.as_deref() == Some(branch);
            self.clear_stale(&entry)?;
        }
        let base_commit = git(&self.root, &["rev-parse", "--verify", &format!("{base}^{{commit}}")])?;
        match self.branch_commit(branch)? {
            Some(commit) if !(reuse_branch || owned || commit == base_commit) => {
                return Err(GitError::BranchExists { branch: branch.into(), commit });
            }
            Some(_) => {}
            // Created apart from the worktree so that a retried `worktree add` never meets a half-made branch.
            None => drop(git(&self.root, &["branch", "--no-track", branch, &base_commit])?),
        }
        git(&self.root, &["worktree", "add", "--quiet", utf8(&path)?, branch])?;
        let head = git(&path, &["rev-parse", "HEAD"])?;
        Ok(Worktree { path, branch: branch.into(), base: base.into(), head, created: true })
    }

    /// Resets the worktree at `path` to `base` (`git reset --hard` and `git clean -fdx`, sparing `.tutti/`), for an
    /// effect that runs again after a crash. Its branch moves to `base`.
    pub fn reset(&self, path: &Path, base: &str) -> Result<(), GitError> {
        let path = self.checked_worktree(path)?;
        git(&path, &["reset", "--quiet", "--hard", base])?;
        git(&path, &["clean", "-q", "-f", "-d", "-x", "-e", "/.tutti/"]).map(drop)
    }

    /// Commits everything the agent left in the worktree at `path` (`git add -A`, then a commit if anything is
    /// staged) with `message`, and returns the worktree's `HEAD` afterwards, whether or not a commit was made.
    /// Files under `.tutti/` folders are never committed. When the worktree's configuration has no
    /// `user.name`/`user.email`, the commit is made as `tutti <tutti@localhost>`. Hooks are not run.
    pub fn commit_all(&self, path: &Path, message: &str) -> Result<String, GitError> {
        let path = self.checked_worktree(path)?;
        let _lock = self.lock()?;
        git(&path, &["add", "-A", "--", ".", NOT_TUTTI_FILES])?;
        git(&path, &["reset", "--quiet", "--", TUTTI_FILES])?;
        if staged(&path)? {
            commit(&path, message)?;
        }
        git(&path, &["rev-parse", "HEAD"])
    }

    /// The paths changed between `base` and the `HEAD` of the worktree at `path` (`git diff --name-only base
    /// HEAD`), sorted.
    pub fn changed_files(&self, path: &Path, base: &str) -> Result<Vec<String>, GitError> {
        let path = self.checked_worktree(path)?;
        Ok(sorted(&git(&path, &["diff", "--name-only", "-z", "--no-renames", base, "HEAD"])?))
    }

    /// Removes the worktree at `path` (`git worktree remove --force`, which drops its uncommitted changes; its
    /// branch stays), then prunes stale registrations. A path that is not a worktree is left alone: only pruning
    /// happens.
    pub fn remove_worktree(&self, path: &Path) -> Result<(), GitError> {
        let path = self.absolute(path);
        let _lock = self.lock()?;
        if let Some(entry) = self.worktrees()?.into_iter().find(|entry| canonical(&entry.path) == path) {
            if entry.locked.as_deref() == Some("initializing") || entry.prunable || !path.is_dir() {
                self.clear_stale(&entry)?;
            } else {
                git(&self.root, &["worktree", "remove", "--force", utf8(&path)?])?;
            }
        }
        git(&self.root, &["worktree", "prune"]).map(drop)
    }

    /// Drops the registrations of worktrees whose directories are gone (`git worktree prune`).
    pub fn prune(&self) -> Result<(), GitError> {
        let _lock = self.lock()?;
        git(&self.root, &["worktree", "prune"]).map(drop)
    }

    /// The worktrees of this repository (`git worktree list --porcelain`), the main one first.
    pub fn worktrees(&self) -> Result<Vec<WorktreeInfo>, GitError> {
        let list = git(&self.root, &["worktree", "list", "--porcelain", "-z"])?;
        let mut worktrees = Vec::new();
        for record in list.split("\0\0").filter(|record| !record.trim_matches('\0').is_empty()) {
            let mut info =
                WorktreeInfo { path: PathBuf::new(), branch: None, head: String::new(), locked: None, prunable: false };
            for field in record.split('\0') {
                let (key, value) = field.split_once(' ').unwrap_or((field, ""));
                match key {
                    "worktree" => info.path = PathBuf::from(value),
                    "HEAD" => info.head = value.into(),
                    "branch" => info.branch = Some(value.strip_prefix("refs/heads/").unwrap_or(value).into()),
                    "locked" => info.locked = Some(value.into()),
                    "prunable" => info.prunable = true,
                    _ => {}
                }
            }
            worktrees.push(info);
        }
        Ok(worktrees)
    }

    /// Merges `branch` into the branch checked out in the integration worktree `into_path` (`git merge --no-ff
    /// -m message`, hooks not run).
    ///
    /// Safe to run again after a crash: a merge left in progress (`MERGE_HEAD` exists) is aborted first, and when
    /// `branch`'s tip is already an ancestor of `HEAD` nothing is merged and the outcome is
    /// [`MergeOutcome::AlreadyMerged`]. On conflicts the merge is left in progress and the outcome is
    /// [`MergeOutcome::Conflict`] with the unmerged paths.
    pub fn merge(&self, into_path: &Path, branch: &str, message: &str) -> Result<MergeOutcome, GitError> {
        let path = self.checked_worktree(into_path)?;
        let _lock = self.lock()?;
        if merging(&path)? {
            git(&path, &["merge", "--abort"])?;
        }
        let tip = git(&path, &["rev-parse", "--verify", &format!("{branch}^{{commit}}")])?;
        if test(&path, &["merge-base", "--is-ancestor", &tip, "HEAD"])? {
            return Ok(MergeOutcome::AlreadyMerged { commit: git(&path, &["rev-parse", "HEAD"])? });
        }
        let mut args = identity(&path)?;
        args.extend(["merge", "--no-ff", "--no-edit", "--no-verify", "-m", message, &tip]);
        let output = run(&path, &args)?;
        if output.code == Some(0) {
            return Ok(MergeOutcome::Merged { commit: git(&path, &["rev-parse", "HEAD"])? });
        }
        if merging(&path)? {
            return Ok(MergeOutcome::Conflict { files: unmerged(&path)? });
        }
        Err(output.failed(&path, &args))
    }

    /// Commits the merge in progress in `into_path` once a resolver has worked on it, and returns the merge commit
    /// (two parents: `HEAD` and `MERGE_HEAD`).
    ///
    /// Refuses with [`GitError::Unresolved`] while any path is still unmerged (the resolver marks a file resolved
    /// with `git add`, or `git rm`) or while a file whose merged content differs from both sides holds a
    /// conflict marker line (`<<<<<<< ` or `>>>>>>> `); the merge then stays in progress. Everything else in the
    /// worktree is staged (`git add -A`, `.tutti/` aside) and committed with `message`, hooks not run.
    pub fn finish_merge(&self, into_path: &Path, message: &str) -> Result<String, GitError> {
        let path = self.checked_worktree(into_path)?;
        let _lock = self.lock()?;
        if !merging(&path)? {
            return Err(GitError::NoMergeInProgress { dir: path });
        }
        let files = unmerged(&path)?;
        if !files.is_empty() {
            let reason = "still unmerged (resolve each file, then `git add` it, or `git rm` it)".into();
            return Err(GitError::Unresolved { files, reason });
        }
        git(&path, &["add", "-A", "--", ".", NOT_TUTTI_FILES])?;
        git(&path, &["reset", "--quiet", "--", TUTTI_FILES])?;
        let files = self.marked(&path)?;
        if !files.is_empty() {
            return Err(GitError::Unresolved { files, reason: "conflict markers remain".into() });
        }
        commit(&path, message)?;
        git(&path, &["rev-parse", "HEAD"])
    }

    /// Aborts the merge in progress in `into_path` (`git merge --abort`); nothing happens when there is none.
    pub fn abort_merge(&self, into_path: &Path) -> Result<(), GitError> {
        let path = self.checked_worktree(into_path)?;
        let _lock = self.lock()?;
        if merging(&path)? {
            git(&path, &["merge", "--abort"])?;
        }
        Ok(())
    }

    /// Staged files of the merge in progress whose content is new to both sides and holds a conflict marker line.
    fn marked(&self, path: &Path) -> Result<Vec<String>, GitError> {
        let changed_from = |side| git(path, &["diff", "--cached", "--name-only", "-z", side]);
        let ours = sorted(&changed_from("HEAD")?);
        let merged: BTreeSet<String> =
            sorted(&changed_from("MERGE_HEAD")?).into_iter().filter(|file| ours.binary_search(file).is_ok()).collect();
        if merged.is_empty() {
            return Ok(Vec::new());
        }
        let args = ["grep", "--cached", "-l", "-z", "-I", "-E", MARKER];
        let output = run(path, &args)?;
        match output.code {
            Some(0) => Ok(sorted(&output.stdout).into_iter().filter(|file| merged.contains(file)).collect()),
            Some(1) => Ok(Vec::new()),
            _ => Err(output.failed(path, &args)),
        }
    }

    /// Clears a registration whose directory is gone, or whose `git worktree add` never finished (then its
    /// half-made directory goes too), so that the worktree can be added again.
    fn clear_stale(&self, entry: &WorktreeInfo) -> Result<(), GitError> {
        if entry.locked.as_deref() == Some("initializing") {
            git(&self.root, &["worktree", "unlock", utf8(&entry.path)?])?;
            match fs::remove_dir_all(&entry.path) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => {
                    return Err(GitError::Io(format!("removing {}: {err}", entry.path.display())));
                }
                _ => {}
            }
        }
        git(&self.root, &["worktree", "prune"]).map(drop)
    }

    /// `path` made absolute (relative to the root) with symlinks resolved as far as it exists.
    fn absolute(&self, path: &Path) -> PathBuf {
        canonical(&self.root.join(path))
    }

    /// `path` made absolute, once it is known to be the top of one of this repository's work trees.
    fn checked_worktree(&self, path: &Path) -> Result<PathBuf, GitError> {
        let path = self.absolute(path);
        let not_a_worktree = || GitError::NotAWorktree { path: path.clone(), repo: self.root.clone() };
        if !path.is_dir() {
            return Err(not_a_worktree());
        }
        let output = run(&path, &["rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir"])?;
        let mut lines = output.stdout.lines().map(|line| canonical(Path::new(line)));
        match (output.code, lines.next(), lines.next()) {
            (Some(0), Some(top), Some(common)) if top == path && common == self.common_dir => Ok(path),
            _ => Err(not_a_worktree()),
        }
    }

    /// Takes the repository's lock: a mutex for the threads of this process, then `flock(2)` on
    /// `<git-common-dir>/tutti.lock` for other processes. Both are released when the guard drops.
    fn lock(&self) -> Result<RepoLock, GitError> {
        static LOCKS: OnceLock<Mutex<HashMap<PathBuf, &'static Mutex<()>>>> = OnceLock::new();
        let mutex = {
            let mut locks = LOCKS.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
            *locks.entry(self.common_dir.clone()).or_insert_with(|| Box::leak(Box::default()))
        };
        // The mutex guards no data: a thread that panicked while holding it left nothing half-done in memory.
        let thread = mutex.lock().unwrap_or_else(PoisonError::into_inner);
        let lock_path = self.common_dir.join("tutti.lock");
        let io_error = |err: io::Error| GitError::Io(format!("locking {}: {err}", lock_path.display()));
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io_error)?;
        loop {
            // SAFETY: flock(2) on a descriptor `file` owns and keeps open for the call; it touches no memory.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(io_error(err));
            }
        }
        Ok(RepoLock { _file: file, _thread: thread })
    }
}

/// The repository lock held: closing the file releases the `flock`, then the mutex is released.
struct RepoLock {
    _file: File,
    _thread: MutexGuard<'static, ()>,
}

/// What one git command did.
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    fn failed<S: AsRef<str>>(&self, dir: &Path, args: &[S]) -> GitError {
        GitError::Failed { command: command_line(dir, args), code: self.code, stderr: self.stderr.trim().into() }
    }
}

/// Runs `git -C dir args...` and returns its stdout with trailing whitespace trimmed; a non-zero exit is
/// [`GitError::Failed`].
fn git<S: AsRef<str>>(dir: &Path, args: &[S]) -> Result<String, GitError> {
    let output = run(dir, args)?;
    if output.code != Some(0) {
        return Err(output.failed(dir, args));
    }
    Ok(output.stdout.trim_end().into())
}

/// Runs `git -C dir args...` with no terminal, no stdin, the C locale and none of the repository variables of
/// tutti's own environment. A run that failed on one of git's own lock files (`index.lock`, a ref's `.lock`)
/// is run again after a pause, a few times, before its failure is returned.
/// Whether `dir` or one of its ancestors holds a `.git` (a directory, or a worktree's file): where git looks
/// when no `GIT_*` variable points it elsewhere (tutti removes them). Without one git would only say "not a
/// git repository", so nothing is spawned to hear it.
pub(crate) fn in_a_repository(dir: &Path) -> bool {
    dir.ancestors().any(|d| d.join(".git").exists())
}

/// The commit `HEAD` of the repository around `dir` names, if it is one with a commit: one `git` spawn, none
/// outside a repository.
pub(crate) fn head_of(dir: &Path) -> Option<String> {
    if !dir.is_dir() || !in_a_repository(dir) {
        return None;
    }
    let output = run(dir, &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]).ok()?;
    let commit = output.stdout.trim();
    (output.code == Some(0) && !commit.is_empty()).then(|| commit.to_string())
}

fn run<S: AsRef<str>>(dir: &Path, args: &[S]) -> Result<Output, GitError> {
    let mut pause = LOCK_BACKOFF;
    let mut attempt = 1;
    loop {
        let mut command = Command::new("git");
        command.arg("-C").arg(dir).args(args.iter().map(AsRef::as_ref));
        command.env("GIT_TERMINAL_PROMPT", "0").env("LC_ALL", "C").env("GIT_EDITOR", "true");
        for name in REPO_ENV {
            command.env_remove(name);
        }
        let output = command
            .stdin(Stdio::null())
            .output()
            .map_err(|err| GitError::Io(format!("running `{}`: {err}", command_line(dir, args))))?;
        let result = Output {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        let locked = result.stderr.contains("index.lock") || result.stderr.contains(".lock': File exists");
        if result.code == Some(0) || !locked || attempt >= LOCK_RETRIES {
            return Ok(result);
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(500));
        attempt += 1;
    }
}

/// `git -C dir args...` for an error message, with arguments holding spaces quoted.
fn command_line<S: AsRef<str>>(dir: &Path, args: &[S]) -> String {
    let quoted = |arg: &str| match arg.is_empty() || arg.contains(char::is_whitespace) {
        true => format!("'{arg}'"),
        false => arg.to_string(),
    };
    let args: Vec<String> = args.iter().map(|arg| quoted(arg.as_ref())).collect();
    format!("git -C {} {}", dir.display(), args.join(" "))
}

/// The `-c` flags a commit in `dir` needs: a fallback `user.name`/`user.email` for whichever is unset or empty.
fn identity(dir: &Path) -> Result<Vec<&'static str>, GitError> {
    let config = run(dir, &["config", "--get-regexp", r"^user\.(name|email)$"])?.stdout;
    // The last value of a key wins, as in git.
    let last = |key: &str| {
        let values = config.lines().map(|line| line.split_once(' ').unwrap_or((line, "")));
        values.filter(|(name, _)| *name == key).map(|(_, value)| value.trim()).next_back()
    };
    let mut args = Vec::new();
    if last("user.name").is_none_or(str::is_empty) {
        args.extend(["-c", FALLBACK_NAME]);
    }
    if last("user.email").is_none_or(str::is_empty) {
        args.extend(["-c", FALLBACK_EMAIL]);
    }
    Ok(args)
}

/// `git commit` of the index in `dir`, with a fallback identity and no hooks.
fn commit(dir: &Path, message: &str) -> Result<(), GitError> {
    let mut args = identity(dir)?;
    args.extend(["commit", "--quiet", "--no-verify", "-m", message]);
    git(dir, &args).map(drop)
}

/// Whether the index of `dir` differs from its `HEAD`.
fn staged(dir: &Path) -> Result<bool, GitError> {
    Ok(!test(dir, &["diff", "--cached", "--quiet"])?)
}

/// Whether a merge is in progress in `dir` (`MERGE_HEAD` exists).
fn merging(dir: &Path) -> Result<bool, GitError> {
    Ok(run(dir, &["rev-parse", "--verify", "--quiet", "MERGE_HEAD"])?.code == Some(0))
}

/// Runs a git command that answers by its exit code: 0 is yes, 1 is no, anything else a failure.
fn test(dir: &Path, args: &[&str]) -> Result<bool, GitError> {
    let output = run(dir, args)?;
    match output.code {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(output.failed(dir, args)),
    }
}

/// The unmerged paths in `dir`, sorted.
fn unmerged(dir: &Path) -> Result<Vec<String>, GitError> {
    Ok(sorted(&git(dir, &["diff", "--name-only", "-z", "--diff-filter=U"])?))
}

/// NUL-separated names, sorted and deduplicated.
fn sorted(names: &str) -> Vec<String> {
    let names: BTreeSet<&str> = names.split('\0').filter(|name| !name.is_empty()).collect();
    names.into_iter().map(String::from).collect()
}

/// `path` as a string for git's command line (tutti's paths are UTF-8).
fn utf8(path: &Path) -> Result<&str, GitError> {
    path.to_str().ok_or_else(|| GitError::Io(format!("{} is not valid UTF-8", path.display())))
}

/// `path` with symlinks resolved for the part of it that exists; the rest is appended as is.
fn canonical(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(resolved) = existing.canonicalize() {
            return rest.iter().rev().fold(resolved, |path, name| path.join(name));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

mod more;
#[cfg(test)]
mod tests;
