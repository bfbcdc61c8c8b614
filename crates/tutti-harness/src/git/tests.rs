//! Tests of the git layer against real git in temporary repositories: opening, `HEAD`, creating, reusing and
//! recreating worktrees, committing leftovers, merges with their crash recovery and conflicts, and the lock under
//! threads and processes.
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use tempfile::TempDir;

use super::*;

/// Raw git for setting tests up and checking results; panics on failure.
fn sh(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git").arg("-C").arg(dir).args(args).stdin(Stdio::null()).output().unwrap();
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A repository with one commit (`README`) on `main` and a local identity, independent of the global config.
fn repo() -> (TempDir, Repo) {
    let temp = TempDir::new().unwrap();
    let root = temp.path().join("project");
    fs::create_dir(&root).unwrap();
    sh(&root, &["init", "-q", "-b", "main"]);
    sh(&root, &["config", "user.name", "Test"]);
    sh(&root, &["config", "user.email", "test@example.com"]);
    sh(&root, &["config", "commit.gpgsign", "false"]);
    write(&root, "README", "hello\n");
    sh(&root, &["add", "-A"]);
    sh(&root, &["commit", "-q", "-m", "initial"]);
    let repo = Repo::open(&root).unwrap();
    (temp, repo)
}

fn write(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// Commits `file` with `text` on whatever `dir` has checked out, with raw git.
fn commit_file(dir: &Path, file: &str, text: &str) -> String {
    write(dir, file, text);
    sh(dir, &["add", "-A"]);
    sh(dir, &["commit", "-q", "-m", &format!("write {file}")]);
    sh(dir, &["rev-parse", "HEAD"])
}

fn count(dir: &Path) -> usize {
    sh(dir, &["rev-list", "--count", "HEAD"]).parse().unwrap()
}

fn parents(dir: &Path, commit: &str) -> Vec<String> {
    sh(dir, &["rev-list", "--parents", "-n", "1", commit]).split(' ').skip(1).map(String::from).collect()
}

fn head(dir: &Path) -> String {
    sh(dir, &["rev-parse", "HEAD"])
}

/// A branch `name` off `main` with `file` set to `text`, made in a worktree that is then removed.
fn branch_with(repo: &Repo, name: &str, file: &str, text: &str) -> String {
    let path = repo.root().join(".tutti/worktrees").join(name);
    repo.worktree(&path, name, "main", false).unwrap();
    write(&path, file, text);
    let commit = repo.commit_all(&path, &format!("{name}: {file}")).unwrap();
    repo.remove_worktree(&path).unwrap();
    commit
}

#[test]
fn open_refuses_a_directory_outside_git() {
    let temp = TempDir::new().unwrap();
    assert_eq!(Repo::open(temp.path()), Err(GitError::NotARepository { dir: temp.path().to_path_buf() }));
    let missing = temp.path().join("missing");
    assert_eq!(Repo::open(&missing), Err(GitError::NotARepository { dir: missing }));
    let message = Repo::open(temp.path()).unwrap_err().to_string();
    assert!(message.contains("is not a git repository: worktree isolation needs one"), "{message}");
}

#[test]
fn open_refuses_a_repository_without_a_commit() {
    let temp = TempDir::new().unwrap();
    sh(temp.path(), &["init", "-q"]);
    let root = temp.path().canonicalize().unwrap();
    assert_eq!(Repo::open(temp.path()), Err(GitError::NoCommit { dir: root }));
}

#[test]
fn open_from_a_subdirectory_finds_the_root() {
    let (_temp, repo) = repo();
    fs::create_dir_all(repo.root().join("a/b")).unwrap();
    assert_eq!(Repo::open(&repo.root().join("a/b")).unwrap().root(), repo.root());
}

#[test]
fn head_names_the_branch_or_none_when_detached() {
    let (_temp, repo) = repo();
    let first = head(repo.root());
    assert_eq!(repo.head().unwrap(), Head { commit: first.clone(), branch: Some("main".into()), dirty: false });
    let second = commit_file(repo.root(), "a", "a\n");
    sh(repo.root(), &["checkout", "-q", "--detach", &first]);
    assert_eq!(repo.head().unwrap(), Head { commit: first, branch: None, dirty: false });
    assert_eq!(repo.branch_commit("main").unwrap(), Some(second));
    assert_eq!(repo.branch_commit("nope").unwrap(), None);
}

#[test]
fn head_is_dirty_with_changes_but_not_with_tutti_files() {
    let (_temp, repo) = repo();
    commit_file(repo.root(), "sub/kept", "k");
    write(repo.root(), ".tutti/journal.db", "state");
    write(repo.root(), "sub/.tutti/x", "state");
    assert!(!repo.head().unwrap().dirty);
    write(repo.root(), "new", "x");
    assert!(repo.head().unwrap().dirty);
    fs::remove_file(repo.root().join("new")).unwrap();
    write(repo.root(), "README", "changed\n");
    assert!(repo.head().unwrap().dirty);
}

#[test]
fn a_worktree_is_created_on_a_new_branch_from_the_base() {
    let (_temp, repo) = repo();
    let base = head(repo.root());
    let worktree = repo.worktree(Path::new(".tutti/worktrees/m1"), "tutti/m1", "main", false).unwrap();
    let path = repo.root().join(".tutti/worktrees/m1");
    assert_eq!(
        worktree,
        Worktree {
            path: path.clone(),
            branch: "tutti/m1".into(),
            base: "main".into(),
            head: base.clone(),
            created: true
        }
    );
    assert_eq!(fs::read_to_string(path.join("README")).unwrap(), "hello\n");
    assert_eq!(repo.branch_commit("tutti/m1").unwrap(), Some(base));
    assert_eq!(Repo::open(&path).unwrap().head().unwrap().branch.as_deref(), Some("tutti/m1"));
}

#[test]
fn a_second_call_reuses_the_worktree_with_its_files() {
    let (_temp, repo) = repo();
    let path = repo.root().join("wt");
    repo.worktree(&path, "m1", "main", false).unwrap();
    let committed = commit_file(&path, "done", "1");
    write(&path, "pending", "2");
    commit_file(repo.root(), "main-moved", "3");
    let again = repo.worktree(&path, "m1", "main", false).unwrap();
    assert!(!again.created);
    assert_eq!(again.head, committed);
    assert_eq!(fs::read_to_string(path.join("pending")).unwrap(), "2");
    assert_eq!(repo.worktrees().unwrap().len(), 2);
}

#[test]
fn a_foreign_branch_of_that_name_is_refused_unless_reused() {
    let (_temp, repo) = repo();
    sh(repo.root(), &["checkout", "-q", "-b", "foreign"]);
    let foreign = commit_file(repo.root(), "f", "f");
    sh(repo.root(), &["checkout", "-q", "main"]);
    let path = repo.root().join("wt");
    let refused = repo.worktree(&path, "foreign", "main", false);
    assert_eq!(refused, Err(GitError::BranchExists { branch: "foreign".into(), commit: foreign.clone() }));
    assert!(!path.exists());
    let reused = repo.worktree(&path, "foreign", "main", true).unwrap();
    assert_eq!((reused.head, reused.created), (foreign, true));
    // A branch still at the base is as good as a new one (a dead driver made it but not its worktree).
    sh(repo.root(), &["branch", "at-base", "main"]);
    assert!(repo.worktree(&repo.root().join("wt2"), "at-base", "main", false).unwrap().created);
}

#[test]
fn a_worktree_on_another_branch_at_the_path_is_refused() {
    let (_temp, repo) = repo();
    let path = repo.root().join("wt");
    repo.worktree(&path, "a", "main", false).unwrap();
    let refused = repo.worktree(&path, "b", "main", false);
    assert_eq!(refused, Err(GitError::PathInUse { path, branch: Some("a".into()), wanted: "b".into() }));
}

#[test]
fn a_worktree_deleted_by_hand_is_recreated_on_its_branch() {
    let (_temp, repo) = repo();
    let path = repo.root().join("wt");
    repo.worktree(&path, "m1", "main", false).unwrap();
    write(&path, "work", "w");
    let work = repo.commit_all(&path, "work").unwrap();
    fs::remove_dir_all(&path).unwrap();
    let again = repo.worktree(&path, "m1", "main", false).unwrap();
    assert_eq!((again.head, again.created), (work, true));
    assert_eq!(fs::read_to_string(path.join("work")).unwrap(), "w");
    assert_eq!(repo.worktrees().unwrap().len(), 2);
}

#[test]
fn a_half_created_worktree_is_recreated() {
    let (_temp, repo) = repo();
    let path = repo.root().join("wt");
    repo.worktree(&path, "m1", "main", false).unwrap();
    // What a driver killed inside `git worktree add` leaves: the registration locked as initializing, a partial
    // checkout.
    let admin = PathBuf::from(sh(&path, &["rev-parse", "--path-format=absolute", "--git-dir"]));
    fs::write(admin.join("locked"), "initializing").unwrap();
    fs::remove_file(path.join("README")).unwrap();
    write(&path, "partial", "junk");
    let again = repo.worktree(&path, "m1", "main", false).unwrap();
    assert!(again.created);
    assert_eq!(fs::read_to_string(path.join("README")).unwrap(), "hello\n");
    assert!(!path.join("partial").exists());
    let entry = repo.worktrees().unwrap().into_iter().find(|entry| entry.path == path).unwrap();
    assert_eq!(entry.locked, None);
}

#[test]
fn commit_all_with_nothing_to_commit_returns_head() {
    let (_temp, repo) = repo();
    let path = repo.root().join("wt");
    let worktree = repo.worktree(&path, "m1", "main", false).unwrap();
    write(&path, ".tutti/session", "s");
    assert_eq!(repo.commit_all(&path, "nothing").unwrap(), worktree.head);
    assert_eq!(count(&path), 1);
}

#[test]
fn commit_all_commits_every_leftover_but_tutti_files() {
    let (_temp, repo) = repo();
    let path = repo.root().join("wt");
    repo.worktree(&path, "m1", "main", false).unwrap();
    commit_file(&path, "old", "old");
    write(&path, "new/file", "n");
    write(&path, "README", "changed\n");
    fs::remove_file(path.join("old")).unwrap();
    write(&path, ".tutti/state", "s");
    write(&path, "sub/.tutti/state", "s");
    write(&path, "staged/.tutti/x", "s");
    sh(&path, &["add", "-f", "staged/.tutti/x"]);
    let commit = repo.commit_all(&path, "agent m1: round 1").unwrap();
    assert_eq!(commit, head(&path));
    assert_eq!(sh(&path, &["log", "-1", "--format=%s"]), "agent m1: round 1");
    assert_eq!(sh(&path, &["show", "--name-only", "--format=", "HEAD"]), "README\nnew/file\nold");
    let status = sh(&path, &["status", "--porcelain", "--untracked-files=all"]);
    assert_eq!(status, "?? .tutti/state\n?? staged/.tutti/x\n?? sub/.tutti/state");
}

#[test]
fn commit_all_works_without_a_configured_identity() {
    let (_temp, repo) = repo();
    let path = repo.root().join("wt");
    repo.worktree(&path, "m1", "main", false).unwrap();
    // Empty values in the repository's config override the global ones: no identity at all.
    sh(repo.root(), &["config", "user.name", ""]);
    sh(repo.root(), &["config", "user.email", ""]);
    write(&path, "a", "a");
    sh(&path, &["add", "a"]);
    let raw = Command::new("git").arg("-C").arg(&path).args(["commit", "-q", "-m", "x"]).output().unwrap();
    assert!(!raw.status.success(), "git itself commits without an identity here, so this test proves nothing");
    repo.commit_all(&path, "m1").unwrap();
    assert_eq!(
        sh(&path, &["log", "-1", "--format=%an <%ae>|%cn <%ce>"]),
        "tutti <tutti@localhost>|tutti <tutti@localhost>"
    );
    // A configured half is kept.
    sh(repo.root(), &["config", "user.name", "Someone"]);
    write(&path, "b", "b");
    repo.commit_all(&path, "m1").unwrap();
    assert_eq!(sh(&path, &["log", "-1", "--format=%an <%ae>"]), "Someone <tutti@localhost>");
}

#[test]
fn changed_files_lists_the_paths_since_the_base_sorted() {
    let (_temp, repo) = repo();
    let base = head(repo.root());
    let path = repo.root().join("wt");
    repo.worktree(&path, "m1", "main", false).unwrap();
    assert_eq!(repo.changed_files(&path, &base).unwrap(), Vec::<String>::new());
    write(&path, "z", "z");
    write(&path, "b/c", "c");
    write(&path, "é space", "x");
    fs::remove_file(path.join("README")).unwrap();
    repo.commit_all(&path, "work").unwrap();
    write(&path, "uncommitted", "u");
    assert_eq!(repo.changed_files(&path, &base).unwrap(), ["README", "b/c", "z", "é space"]);
}

#[test]
fn operations_on_a_path_that_is_not_a_worktree_are_refused() {
    let (_temp, repo) = repo();
    let plain = repo.root().join("plain");
    fs::create_dir(&plain).unwrap();
    write(&plain, "file", "x");
    let refused = Err(GitError::NotAWorktree { path: plain.clone(), repo: repo.root().to_path_buf() });
    assert_eq!(repo.commit_all(&plain, "x"), refused.clone().map(|()| String::new()));
    assert_eq!(repo.reset(&plain, "main"), refused);
    assert!(repo.head().unwrap().dirty, "nothing was committed on main");
    let other = TempDir::new().unwrap();
    let (_temp2, other_repo) = self::repo();
    assert!(matches!(repo.reset(other_repo.root(), "main"), Err(GitError::NotAWorktree { .. })));
    assert!(matches!(repo.reset(&other.path().join("gone"), "main"), Err(GitError::NotAWorktree { .. })));
}

#[test]
fn reset_returns_a_worktree_to_the_base_and_keeps_tutti_files() {
    let (_temp, repo) = repo();
    let base = head(repo.root());
    let path = repo.root().join("wt");
    repo.worktree(&path, "m1", "main", false).unwrap();
    commit_file(&path, ".gitignore", "ignored\n");
    write(&path, "README", "changed\n");
    write(&path, "untracked/file", "u");
    write(&path, "ignored", "i");
    write(&path, ".tutti/state", "s");
    repo.reset(&path, &base).unwrap();
    assert_eq!(head(&path), base);
    assert_eq!(repo.branch_commit("m1").unwrap(), Some(base));
    assert_eq!(fs::read_to_string(path.join("README")).unwrap(), "hello\n");
    for gone in ["untracked", "ignored", ".gitignore"] {
        assert!(!path.join(gone).exists(), "{gone} was not removed");
    }
    assert!(path.join(".tutti/state").exists());
}

#[test]
fn a_clean_merge_is_made_once() {
    let (_temp, repo) = repo();
    let tip = branch_with(&repo, "m1", "a", "a\n");
    let before = count(repo.root());
    let MergeOutcome::Merged { commit } = repo.merge(repo.root(), "m1", "merge m1").unwrap() else {
        panic!("not merged");
    };
    assert_eq!(commit, head(repo.root()));
    assert_eq!(parents(repo.root(), &commit)[1], tip);
    assert_eq!(sh(repo.root(), &["log", "-1", "--format=%s"]), "merge m1");
    assert_eq!(fs::read_to_string(repo.root().join("a")).unwrap(), "a\n");
    assert_eq!(count(repo.root()), before + 2);
    assert_eq!(repo.merge(repo.root(), "m1", "merge m1").unwrap(), MergeOutcome::AlreadyMerged { commit });
    assert_eq!(count(repo.root()), before + 2);
}

#[test]
fn a_merge_into_an_integration_worktree_leaves_the_main_one_alone() {
    let (_temp, repo) = repo();
    branch_with(&repo, "m1", "a", "a\n");
    let integration = repo.root().join("integration");
    repo.worktree(&integration, "tutti/integration", "main", false).unwrap();
    assert!(matches!(repo.merge(&integration, "m1", "merge m1").unwrap(), MergeOutcome::Merged { .. }));
    assert!(integration.join("a").exists());
    assert!(!repo.root().join("a").exists());
    assert_eq!(repo.branch_commit("tutti/integration").unwrap(), Some(head(&integration)));
}

#[test]
fn a_conflict_is_left_for_a_resolver_and_finished_as_a_merge_commit() {
    let (_temp, repo) = repo();
    let path = repo.root().join(".tutti/worktrees/m1");
    repo.worktree(&path, "m1", "main", false).unwrap();
    write(&path, "README", "theirs\n");
    // A file with marker lines of its own, merged cleanly, must not block the merge.
    write(&path, "doc.md", "<<<<<<< example\n=======\n>>>>>>> example\n");
    let tip = repo.commit_all(&path, "m1").unwrap();
    let ours = commit_file(repo.root(), "README", "ours\n");

    assert_eq!(
        repo.merge(repo.root(), "m1", "merge m1").unwrap(),
        MergeOutcome::Conflict { files: vec!["README".into()] }
    );
    let text = fs::read_to_string(repo.root().join("README")).unwrap();
    assert!(text.starts_with("<<<<<<< "), "{text}");
    assert!(matches!(
        repo.finish_merge(repo.root(), "merge m1"),
        Err(GitError::Unresolved { files, reason }) if files == ["README"] && reason.contains("unmerged")
    ));
    sh(repo.root(), &["add", "README"]);
    assert!(matches!(
        repo.finish_merge(repo.root(), "merge m1"),
        Err(GitError::Unresolved { files, reason }) if files == ["README"] && reason.contains("markers")
    ));
    assert!(merging(repo.root()).unwrap(), "a refused merge stays in progress");
    write(repo.root(), "README", "ours and theirs\n");
    let commit = repo.finish_merge(repo.root(), "merge m1 (resolved)").unwrap();
    assert_eq!(commit, head(repo.root()));
    assert_eq!(parents(repo.root(), &commit), [ours, tip]);
    assert_eq!(sh(repo.root(), &["show", "HEAD:README"]), "ours and theirs");
    assert_eq!(sh(repo.root(), &["log", "-1", "--format=%s"]), "merge m1 (resolved)");
    assert!(!merging(repo.root()).unwrap());
    assert!(matches!(repo.merge(repo.root(), "m1", "again").unwrap(), MergeOutcome::AlreadyMerged { .. }));
}

#[test]
fn finish_and_abort_without_a_merge_in_progress() {
    let (_temp, repo) = repo();
    let root = repo.root().to_path_buf();
    assert_eq!(repo.finish_merge(&root, "x"), Err(GitError::NoMergeInProgress { dir: root.clone() }));
    repo.abort_merge(&root).unwrap();
    branch_with(&repo, "m1", "README", "theirs\n");
    commit_file(&root, "README", "ours\n");
    let ours = head(&root);
    assert!(matches!(repo.merge(&root, "m1", "merge").unwrap(), MergeOutcome::Conflict { .. }));
    repo.abort_merge(&root).unwrap();
    assert!(!merging(&root).unwrap());
    assert_eq!(head(&root), ours);
    assert_eq!(fs::read_to_string(root.join("README")).unwrap(), "ours\n");
}

#[test]
fn an_interrupted_merge_is_aborted_and_redone() {
    let (_temp, repo) = repo();
    let root = repo.root().to_path_buf();
    let tip = branch_with(&repo, "m1", "a", "a\n");
    let before = count(&root);
    // A driver died after `git merge` started but before the merge commit.
    sh(&root, &["merge", "-q", "--no-ff", "--no-commit", "m1"]);
    assert!(merging(&root).unwrap());
    let MergeOutcome::Merged { commit } = repo.merge(&root, "m1", "merge m1").unwrap() else { panic!("not merged") };
    assert_eq!(parents(&root, &commit)[1], tip);
    assert_eq!(count(&root), before + 2);
    assert!(!merging(&root).unwrap());

    // A conflicted merge of another branch left behind does not block the next one either.
    branch_with(&repo, "m2", "README", "theirs\n");
    let tip3 = branch_with(&repo, "m3", "b", "b\n");
    commit_file(&root, "README", "ours\n");
    let raw = Command::new("git").arg("-C").arg(&root).args(["merge", "-q", "m2"]).output().unwrap();
    assert!(!raw.status.success() && merging(&root).unwrap());
    let MergeOutcome::Merged { commit } = repo.merge(&root, "m3", "merge m3").unwrap() else { panic!("not merged") };
    assert_eq!(parents(&root, &commit)[1], tip3);
    assert_eq!(fs::read_to_string(root.join("README")).unwrap(), "ours\n");
}

#[test]
fn remove_and_prune_leave_only_the_main_worktree() {
    let (_temp, repo) = repo();
    let (one, two) = (repo.root().join("wt1"), repo.root().join("wt2"));
    repo.worktree(&one, "m1", "main", false).unwrap();
    repo.worktree(&two, "m2", "main", false).unwrap();
    write(&one, "uncommitted", "u");
    repo.remove_worktree(&one).unwrap();
    assert!(!one.exists());
    repo.remove_worktree(&one).unwrap();
    fs::remove_dir_all(&two).unwrap();
    assert!(repo.worktrees().unwrap().iter().any(|entry| entry.path == two && entry.prunable));
    repo.prune().unwrap();
    let list = repo.worktrees().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!((list[0].path.as_path(), list[0].branch.as_deref()), (repo.root(), Some("main")));
    assert_eq!(sh(repo.root(), &["worktree", "list"]).lines().count(), 1);
    assert!(repo.branch_commit("m1").unwrap().is_some(), "removing a worktree keeps its branch");
}

#[test]
fn the_lock_holds_other_processes_off() {
    let (_temp, repo) = repo();
    let lock_file = repo.common_dir.join("tutti.lock");
    let try_lock = || Command::new("flock").arg("-n").arg(&lock_file).arg("true").status().unwrap().success();
    let guard = repo.lock().unwrap();
    assert!(!try_lock(), "another process took the lock while it was held");
    drop(guard);
    assert!(try_lock());
}

#[test]
fn the_lock_holds_other_threads_off() {
    let (_temp, repo) = repo();
    let reopened = Repo::open(repo.root()).unwrap();
    let guard = repo.lock().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = thread::spawn(move || {
        let _guard = reopened.lock().unwrap();
        tx.send(()).unwrap();
    });
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "another thread took the lock while it was held");
    drop(guard);
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    waiter.join().unwrap();
}

#[test]
fn a_taken_index_lock_is_waited_for() {
    let (_temp, repo) = repo();
    let index_lock = repo.root().join(".git/index.lock");
    fs::write(&index_lock, "").unwrap();
    write(repo.root(), "a", "a");
    let remover = {
        let index_lock = index_lock.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(150));
            fs::remove_file(index_lock).unwrap();
        })
    };
    let commit = repo.commit_all(repo.root(), "a").unwrap();
    remover.join().unwrap();
    assert_eq!(sh(repo.root(), &["show", "--name-only", "--format=", &commit]), "a");
}

#[test]
fn sixteen_threads_and_a_merger_share_one_repository() {
    let (_temp, repo) = repo();
    let repo = Arc::new(repo);
    let to_merge: Vec<String> = (0..8).map(|i| format!("ready{i}")).collect();
    for (i, name) in to_merge.iter().enumerate() {
        branch_with(&repo, name, &format!("ready{i}"), "r\n");
    }
    let integration = repo.root().join(".tutti/integration");
    repo.worktree(&integration, "tutti/integration", "main", false).unwrap();
    let workers: Vec<_> = (0..16)
        .map(|i| {
            let repo = Arc::clone(&repo);
            thread::spawn(move || {
                let path = repo.root().join(format!(".tutti/worktrees/w{i}"));
                let worktree = repo.worktree(&path, &format!("w{i}"), "main", false).unwrap();
                write(&path, &format!("file{i}"), "w\n");
                let commit = repo.commit_all(&path, &format!("w{i}")).unwrap();
                assert_ne!(commit, worktree.head);
                assert_eq!(repo.changed_files(&path, "main").unwrap(), [format!("file{i}")]);
                assert!(!repo.worktree(&path, &format!("w{i}"), "main", false).unwrap().created);
                if i % 2 == 0 {
                    repo.remove_worktree(&path).unwrap();
                }
            })
        })
        .collect();
    let merger = {
        let repo = Arc::clone(&repo);
        let integration = integration.clone();
        thread::spawn(move || {
            for name in &to_merge {
                let outcome = repo.merge(&integration, name, &format!("merge {name}")).unwrap();
                assert!(matches!(outcome, MergeOutcome::Merged { .. }), "{outcome:?}");
            }
        })
    };
    for worker in workers {
        worker.join().unwrap();
    }
    merger.join().unwrap();
    assert_eq!(count(&integration), 1 + 2 * 8);
    assert_eq!(repo.worktrees().unwrap().len(), 2 + 8);
    for i in 0..16 {
        assert!(repo.branch_commit(&format!("w{i}")).unwrap().is_some());
    }
}

#[test]
fn timings_of_the_main_operations() {
    let (_temp, repo) = repo();
    let timed = |what: &str, run: &mut dyn FnMut()| {
        let start = Instant::now();
        run();
        let took = start.elapsed();
        writeln!(io::stderr(), "git layer: {what}: {took:?}").unwrap();
        assert!(took < Duration::from_secs(10), "{what} took {took:?}");
    };
    let path = repo.root().join("wt");
    timed("worktree add", &mut || drop(repo.worktree(&path, "m1", "main", false).unwrap()));
    timed("worktree reuse", &mut || drop(repo.worktree(&path, "m1", "main", false).unwrap()));
    write(&path, "a", "a");
    timed("commit_all", &mut || drop(repo.commit_all(&path, "a").unwrap()));
    timed("commit_all (nothing)", &mut || drop(repo.commit_all(&path, "a").unwrap()));
    timed("merge", &mut || drop(repo.merge(repo.root(), "m1", "merge").unwrap()));
    timed("merge (already merged)", &mut || drop(repo.merge(repo.root(), "m1", "merge").unwrap()));
    timed("worktree remove", &mut || repo.remove_worktree(&path).unwrap());
}
