//! What worktree isolation costs, through tutti's git layer (the `git` CLI behind one lock per repository):
//! one isolated effect's worktree cycle (create from the base, the agent's file, commit what it left, list the
//! changed files, remove) in a small repository and in one of 10,000 files, 16 at once and one after another;
//! and the merge queue's time per item (16 branches merged into an integration worktree, one after another).
//!
//! `cargo bench -p tutti-harness --bench worktrees` (`-- --quick` for 4 items instead of 16).

#![expect(clippy::print_stdout, reason = "a benchmark prints its report")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tutti_harness::git::{MergeOutcome, Repo};

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git").arg("-C").arg(dir).args(args).status().expect("run git");
    assert!(status.success(), "git {args:?}");
}

/// A repository with `files` files (in folders of 100) and one commit; returns its root and the commit.
fn repository(dir: &Path, files: usize) -> (PathBuf, String) {
    let root = dir.join(format!("repo-{files}"));
    std::fs::create_dir_all(&root).expect("mkdir");
    git(&root, &["init", "-q", "-b", "main"]);
    git(&root, &["config", "user.name", "bench"]);
    git(&root, &["config", "user.email", "bench@localhost"]);
    for i in 0..files {
        let folder = root.join(format!("d{:03}", i / 100));
        std::fs::create_dir_all(&folder).expect("mkdir");
        std::fs::write(folder.join(format!("f{i:05}.txt")), format!("file {i}\n")).expect("write");
    }
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "base"]);
    let repo = Repo::open(&root).expect("open");
    let base = repo.head().expect("head").commit;
    (root, base)
}

/// One isolated effect's worktree cycle; returns how long it took.
fn cycle(repo: &Repo, root: &Path, base: &str, name: &str) -> Duration {
    let started = Instant::now();
    let path = root.join(".tutti/worktrees/bench").join(name);
    let branch = format!("tutti/bench/{name}");
    repo.worktree(&path, &branch, base, false).expect("worktree");
    std::fs::write(path.join(format!("{name}.txt")), "work\n").expect("write");
    repo.commit_all(&path, &format!("tutti: {name}")).expect("commit");
    let files = repo.changed_files(&path, base).expect("files");
    assert_eq!(files.len(), 1);
    repo.remove_worktree(&path).expect("remove");
    started.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn isolated(dir: &Path, files: usize, n: usize) {
    let (root, base) = repository(dir, files);
    let repo = Arc::new(Repo::open(&root).expect("open"));
    let mut one_by_one: Vec<f64> = (0..n).map(|i| ms(cycle(&repo, &root, &base, &format!("seq-{i}")))).collect();
    one_by_one.sort_by(f64::total_cmp);
    let started = Instant::now();
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (repo, root, base) = (Arc::clone(&repo), root.clone(), base.clone());
            std::thread::spawn(move || ms(cycle(&repo, &root, &base, &format!("par-{i}"))))
        })
        .collect();
    let mut each: Vec<f64> = threads.into_iter().map(|t| t.join().expect("thread")).collect();
    let wall = ms(started.elapsed());
    each.sort_by(f64::total_cmp);
    println!(
        "isolated effect, repo of {files:>6} files: one by one median {:7.1} ms (min {:.1}, max {:.1}); {n} at once: \
         wall {:7.1} ms = {:6.1} ms per item, each {:.1}–{:.1} ms",
        one_by_one[n / 2],
        one_by_one[0],
        one_by_one[n - 1],
        wall,
        wall / n as f64,
        each[0],
        each[n - 1]
    );
}

fn merge_queue(dir: &Path, n: usize) {
    let (root, base) = repository(dir, 10);
    let repo = Repo::open(&root).expect("open");
    let branches: Vec<String> = (0..n)
        .map(|i| {
            let path = root.join(".tutti/worktrees/bench").join(format!("item-{i}"));
            let branch = format!("tutti/bench/item-{i}");
            repo.worktree(&path, &branch, &base, false).expect("worktree");
            std::fs::write(path.join(format!("item-{i}.txt")), "work\n").expect("write");
            repo.commit_all(&path, "item").expect("commit");
            repo.remove_worktree(&path).expect("remove");
            branch
        })
        .collect();
    let into = root.join(".tutti/worktrees/bench/merge");
    repo.worktree(&into, "tutti/bench/merge", &base, false).expect("integration");
    let started = Instant::now();
    for branch in &branches {
        match repo.merge(&into, branch, &format!("merge {branch}")).expect("merge") {
            MergeOutcome::Merged { .. } => {}
            other => panic!("{branch}: {other:?}"),
        }
    }
    let merged = started.elapsed();
    let started = Instant::now();
    for branch in &branches {
        assert!(matches!(repo.merge(&into, branch, "again").expect("merge"), MergeOutcome::AlreadyMerged { .. }));
    }
    let again = started.elapsed();
    println!(
        "merge queue of {n}: {:7.1} ms per item merged; {:6.1} ms per item found already merged (a resumed queue)",
        ms(merged) / n as f64,
        ms(again) / n as f64
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 4 } else { 16 };
    let dir = tempfile::Builder::new()
        .prefix("tutti-bench-wt-")
        .tempdir_in(std::env::current_dir().expect("cwd"))
        .expect("tempdir");
    println!(
        "tutti worktree bench: {} cores, repositories in {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        dir.path().display()
    );
    isolated(dir.path(), 3, n);
    isolated(dir.path(), if quick { 1_000 } else { 10_000 }, n);
    merge_queue(dir.path(), n);
}
