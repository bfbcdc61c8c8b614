//! Worktree isolation and durable merges, from outside: isolated effects in their own git worktrees merged back
//! by `ctx.merge` with a conflict resolver, many times in a row with nothing lost or left behind; a kill -9 at
//! every commit of a merge queue; members keeping one worktree across rounds and a restart; git failures and bad
//! input named, with the right exit status.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use tutti_testkit::{DEADLINE, Output, Project, kind, show};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

/// An agent (a command harness) that writes its own file and appends a line to a shared one, in its cwd.
const WRITER: &str = r#"
const fs = require("fs");
const job = JSON.parse(fs.readFileSync(0, "utf8"));
const i = job.args.i;
fs.writeFileSync(`item-${i}.txt`, `item ${i}\n`);
fs.appendFileSync("shared.txt", `line from ${i}\n`);
console.log(JSON.stringify({ i, cwd: process.cwd() }));
"#;

/// A conflict resolver that keeps both sides: it drops the marker lines of every conflicted file.
const RESOLVER: &str = r#"
const fs = require("fs");
const job = JSON.parse(fs.readFileSync(0, "utf8"));
for (const f of job.args.files) {
  const kept = fs.readFileSync(f, "utf8").split("\n").filter((l) => !/^(<<<<<<<|=======|>>>>>>>)/.test(l));
  fs.writeFileSync(f, kept.join("\n"));
}
console.log(JSON.stringify({ resolved: job.args.files, cwd: process.cwd() }));
"#;

const MERGE_ALL: &str = r#"
import { defineTask } from "tutti";
const write = defineTask("write", (a) => ({ kind: "agent", harness: "writer", isolation: "worktree", title: `write ${a.i}`, agent: { prompt: "write" } }));
const resolve = defineTask("resolve", (a) => ({ kind: "agent", harness: "resolver", title: `resolve ${a.branch}`, agent: { prompt: "resolve" } }));
export async function process(inputs, ctx) {
  const n = inputs?.n ?? 8;
  const results = await ctx.parallel.map([...Array(n).keys()], (i) => ctx.task(write, { i }));
  const merged = await ctx.merge(results.concat(inputs?.extra ?? []), { onConflict: resolve });
  return { merged: merged.merged.length, resolved: merged.resolved.length, failed: merged.failed, branch: merged.branch,
           items: results.map((r) => ({ branch: r.worktree.branch, files: r.worktree.files })) };
}
"#;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").arg("-C").arg(dir).args(args).env("LC_ALL", "C").output().expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A project that is a git repository with one commit holding the process, the agents and `tutti.toml`.
fn repo_project(process: &str) -> Project {
    let project = Project::new(TUTTI);
    let root = project.root().to_path_buf();
    project.write("writer.js", WRITER);
    project.write("resolver.js", RESOLVER);
    project.write("p.js", process);
    project.write("README.md", "# demo\n");
    project.write(
        "tutti.toml",
        format!(
            "[harness.writer]\ncommand = [\"node\", \"{0}/writer.js\"]\n\n[harness.resolver]\ncommand = [\"node\", \"{0}/resolver.js\"]\n",
            root.display()
        ),
    );
    git(&root, &["init", "-q", "-b", "main"]);
    git(&root, &["config", "user.name", "Test"]);
    git(&root, &["config", "user.email", "test@localhost"]);
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "start"]);
    project
}

fn worktree_count(project: &Project) -> usize {
    git(project.root(), &["worktree", "list", "--porcelain"]).lines().filter(|l| l.starts_with("worktree ")).count()
}

fn conflict_markers(project: &Project, branch: &str) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(project.root())
        .args(["grep", "-n", "-E", "^(<<<<<<<|>>>>>>>) ", branch])
        .output()
        .expect("git grep");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn eight_isolated_effects_merge_back_twenty_times_with_nothing_lost_or_left_behind() {
    let project = repo_project(MERGE_ALL);
    for round in 1..=20 {
        let out = project.run(&["run", "p.js"]);
        assert_eq!(out.code, 0, "round {round}: {out}");
        let value = out.json();
        let taken = value["merged"].as_u64().unwrap_or(0) + value["resolved"].as_u64().unwrap_or(0);
        assert_eq!(taken, 8, "round {round}: {value}");
        assert_eq!(value["failed"], json!([]), "round {round}");
        let branch = value["branch"].as_str().expect("integration branch");
        let shared = git(project.root(), &["show", &format!("{branch}:shared.txt")]);
        let lines: BTreeSet<&str> = shared.lines().collect();
        assert_eq!(lines.len(), 8, "round {round}: every item's line is on {branch}:\n{shared}");
        let files = git(project.root(), &["ls-tree", "--name-only", branch]);
        for i in 0..8 {
            assert!(files.lines().any(|f| f == format!("item-{i}.txt")), "round {round}: item {i} missing");
        }
        assert_eq!(conflict_markers(&project, branch), "", "round {round}: markers left on {branch}");
        assert_eq!(worktree_count(&project), 1, "round {round}: worktrees left behind");
        assert!(out.stderr.contains("8 merged") || out.stderr.contains("resolved, 0 failed"), "{}", out.stderr);
        // The user's own tree and branch are untouched.
        assert_eq!(git(project.root(), &["rev-parse", "--abbrev-ref", "HEAD"]), "main");
        assert_eq!(project.read("shared.txt"), None, "round {round}: the user's tree got an item's file");
    }
}

#[test]
fn a_git_failure_for_one_item_fails_the_run_and_names_the_item() {
    let project = repo_project(MERGE_ALL);
    let out = project.run(&["run", "p.js", "--inputs", r#"{"n": 2, "extra": ["no-such-branch"]}"#]);
    assert_eq!(out.code, 1, "{out}");
    let value = out.json();
    let failed = value["failed"].as_array().expect("failed list");
    assert_eq!(failed.len(), 1, "{value}");
    assert_eq!(failed[0]["branch"], "no-such-branch");
    assert!(out.stderr.contains("FAILED no-such-branch"), "the summary names the item: {}", out.stderr);
    assert!(out.stderr.contains("merge(s) FAILED"), "{}", out.stderr);
}

#[test]
fn two_effects_changing_one_line_are_resolved_by_the_resolver_with_no_markers_left() {
    let process = r#"
import { defineTask } from "tutti";
const edit = defineTask("edit", (a) => ({ kind: "shell", isolation: "worktree", title: `edit ${a.to}`,
  shell: { command: `printf '# ${a.to}\n' > README.md` } }));
const pick = defineTask("pick", (a) => ({ kind: "shell", title: "resolve",
  shell: { command: "printf '# both\n' > README.md" } }));
export async function process(inputs, ctx) {
  const a = await ctx.task(edit, { to: "left" });
  const b = await ctx.task(edit, { to: "right" });
  return await ctx.merge([a, b], { onConflict: pick });
}
"#;
    let project = repo_project(process);
    let out = project.run(&["run", "p.js"]);
    assert_eq!(out.code, 0, "{out}");
    let value = out.json();
    assert_eq!(
        (value["merged"].as_array().map(Vec::len), value["resolved"].as_array().map(Vec::len)),
        (Some(1), Some(1)),
        "{value}"
    );
    let branch = value["branch"].as_str().expect("branch");
    assert_eq!(git(project.root(), &["show", &format!("{branch}:README.md")]), "# both");
    assert_eq!(conflict_markers(&project, branch), "");
    // The resolution is a merge commit with two parents.
    let parents = git(project.root(), &["rev-list", "--parents", "-n", "1", branch]);
    assert_eq!(parents.split_whitespace().count(), 3, "{parents}");
}

#[test]
fn kill_9_at_every_commit_of_a_merge_queue_then_resume_gives_the_same_tree() {
    let reference = repo_project(MERGE_ALL);
    let out = reference.run(&["run", "p.js", "--inputs", r#"{"n": 6}"#]);
    assert_eq!(out.code, 0, "{out}");
    let expected = work_on(&reference, out.json()["branch"].as_str().expect("branch"));
    let mut kills = 0;
    for k in 1.. {
        let project = repo_project(MERGE_ALL);
        let mut command = project.tutti();
        command.args(["run", "p.js", "--inputs", r#"{"n": 6}"#]).env("TUTTI_FAULT_KILL_AFTER_COMMITS", k.to_string());
        let first = command.output().expect("run tutti");
        let first = Output {
            code: first.status.code().unwrap_or(128 + first.status.signal().unwrap_or(0)),
            stdout: String::from_utf8_lossy(&first.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&first.stderr).into_owned(),
        };
        let outlived = first.code == 0;
        let end = if outlived {
            first
        } else {
            assert_eq!(first.code, 128 + libc::SIGKILL, "kill point {k}: {first}");
            kills += 1;
            let resumed = project.run(&["resume", &first.run_id()]);
            assert_eq!(resumed.code, 0, "kill point {k}: {resumed}");
            resumed
        };
        let value = end.json();
        let branch = value["branch"].as_str().expect("branch").to_string();
        assert_eq!(work_on(&project, &branch), expected, "kill point {k}: the integration tree differs\n{value}");
        let subjects = git(project.root(), &["log", "--merges", "--format=%s", &branch]);
        let all: Vec<&str> = subjects.lines().collect();
        let unique: BTreeSet<&str> = all.iter().copied().collect();
        assert_eq!(all.len(), unique.len(), "kill point {k}: a merge commit appears twice:\n{subjects}");
        assert_eq!(all.len(), 6, "kill point {k}: one merge commit per item:\n{subjects}");
        let listed = git(project.root(), &["worktree", "list"]);
        assert_eq!(worktree_count(&project), 1, "kill point {k}: stray worktrees\n{listed}");
        if outlived {
            break;
        }
    }
    assert!(kills >= 10, "only {kills} kill points");
}

/// What the items put on `branch`: each file they write and its content (the projects' own files differ: their
/// `tutti.toml` names the project's folder).
fn work_on(project: &Project, branch: &str) -> Vec<(String, String)> {
    let files = git(project.root(), &["ls-tree", "--name-only", branch]);
    files
        .lines()
        .filter(|f| f.starts_with("item-") || *f == "shared.txt")
        .map(|f| (f.to_string(), git(project.root(), &["show", &format!("{branch}:{f}")])))
        .collect()
}

#[test]
fn members_keep_one_worktree_and_branch_across_rounds_and_a_kill() {
    let process = r#"
import { defineTask } from "tutti";
const work = defineTask("work", (a) => ({ kind: "shell", title: `round ${a.round}`,
  shell: { command: `echo r${a.round} > round-${a.round}.txt; echo "$(pwd) $(git rev-parse --abbrev-ref HEAD) $(ls round-*.txt | tr '\n' ',')"` } }));
export async function process(inputs, ctx) {
  const team = ctx.group("team", { members: ["a", "b", "c"], isolation: "worktree" });
  const r1 = await team.all((m) => m.task(work, { round: 1 }));
  await ctx.breakpoint({ question: "round 2?" });
  const r2 = await team.all((m) => m.task(work, { round: 2 }));
  return { r1: r1.map((r) => r.stdout.trim()), r2: r2.map((r) => r.stdout.trim()) };
}
"#;
    let project = repo_project(process);
    let driver = project.spawn(&["run", "p.js"]);
    let run = driver.run_id();
    project.wait_for_event(&run, "the breakpoint", |e| {
        kind(e) == "effect_requested" && e["event"]["kind"] == "breakpoint"
    });
    driver.signal(libc::SIGKILL);
    drop(driver.wait(DEADLINE));
    let out = project.run(&["resume", &run, "--non-interactive"]);
    assert_eq!(out.code, 0, "{out}");
    let value = out.json();
    for i in 0..3 {
        let r1: Vec<&str> = value["r1"][i].as_str().expect("r1").split(' ').collect();
        let r2: Vec<&str> = value["r2"][i].as_str().expect("r2").split(' ').collect();
        assert_eq!((r1[0], r1[1]), (r2[0], r2[1]), "member {i}: same worktree and branch in round 2\n{value}");
        assert!(r1[1].contains("/members/team/"), "{value}");
        assert!(r2[2].contains("round-1.txt") && r2[2].contains("round-2.txt"), "round 2 sees round 1's work: {value}");
    }
    let events = project.events(&run);
    let paths: BTreeSet<&str> = events
        .iter()
        .filter(|e| kind(e) == "effect_resolved")
        .filter_map(|e| e["event"]["outcome"]["value"]["inline"]["worktree"]["path"].as_str())
        .collect();
    assert_eq!(paths.len(), 3, "one worktree per member over both rounds\n{}", show(&events));
    // Each member's binding to its worktree and branch is journaled once, not again after the restart.
    let bound: Vec<&Value> =
        events.iter().filter(|e| kind(e) == "member_bound" && e["event"]["branch"].is_string()).collect();
    assert_eq!(bound.len(), 3, "{}", show(&events));
    let members: BTreeSet<&str> = bound.iter().filter_map(|e| e["event"]["member"].as_str()).collect();
    assert_eq!(members, ["a", "b", "c"].into());
    let groups = project.run(&["groups", &run, "--json"]).json();
    assert!(groups[0]["members"][0]["branch"].as_str().is_some_and(|b| b.ends_with("/members/team/a")), "{groups}");
}

#[test]
fn bad_input_is_named_with_exit_2() {
    let isolated = r#"
import { defineTask } from "tutti";
const t = defineTask("t", (a) => ({ kind: "shell", isolation: a.isolation ?? "worktree", shell: { command: "echo hi" } }));
export async function process(inputs, ctx) { return await ctx.task(t, inputs ?? {}); }
"#;
    // Not a git repository.
    let plain = Project::new(TUTTI);
    plain.write("p.js", isolated);
    let out = plain.run(&["run", "p.js"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("NotAGitRepository") && out.stderr.contains("not a git repository"), "{out}");

    // A repository with no commit yet.
    let empty = Project::new(TUTTI);
    empty.write("p.js", isolated);
    git(empty.root(), &["init", "-q"]);
    let out = empty.run(&["run", "p.js"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("NoCommit"), "{out}");

    // An unknown isolation.
    let project = repo_project(isolated);
    let out = project.run(&["run", "p.js", "--inputs", r#"{"isolation": "container"}"#]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("IsolationError") && out.stderr.contains("\"container\""), "{out}");

    // A dirty tree: the base is HEAD, and the user is told the changes are not in the worktree.
    project.write("README.md", "# local edit\n");
    let out = project.run(&["run", "p.js"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stderr.contains("uncommitted changes are not in them"), "{out}");
    let head = git(project.root(), &["rev-parse", "HEAD"]);
    assert_eq!(out.json()["worktree"]["base"], head.as_str());

    // A detached HEAD: the base is the commit checked out.
    git(project.root(), &["checkout", "-q", "README.md"]);
    git(project.root(), &["checkout", "-q", "--detach"]);
    let out = project.run(&["run", "p.js"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json()["worktree"]["base"], head.as_str());
    git(project.root(), &["checkout", "-q", "main"]);

    // Merging into the checked-out branch while its tree is dirty.
    let into_main = r#"
import { defineTask } from "tutti";
const t = defineTask("t", () => ({ kind: "shell", isolation: "worktree", shell: { command: "echo x > x.txt" } }));
export async function process(inputs, ctx) { return await ctx.merge([await ctx.task(t, {})], { into: "main" }); }
"#;
    let project = repo_project(into_main);
    project.write("README.md", "# local edit\n");
    let out = project.run(&["run", "p.js"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("MergeTarget") && out.stderr.contains("uncommitted"), "{out}");
    let value: Value = out.json();
    assert_eq!(value["failed"][0]["branch"].as_str().map(|b| b.contains("root")), Some(true), "{value}");
}

#[test]
fn tutti_worktrees_lists_what_a_run_kept_and_prune_removes_it_keeping_the_branches() {
    let project = repo_project(MERGE_ALL);
    let toml = project.read("tutti.toml").expect("tutti.toml");
    project.write("tutti.toml", format!("{toml}\n[worktrees]\nkeep = \"all\"\n"));
    let out = project.run(&["run", "p.js", "--inputs", r#"{"n": 3}"#]);
    assert_eq!(out.code, 0, "{out}");
    let run = out.run_id();
    let listed = project.run(&["worktrees", &run, "--json"]);
    assert_eq!(listed.code, 0, "{listed}");
    let rows = listed.json();
    let rows = rows.as_array().expect("a list");
    assert_eq!(rows.len(), 4, "3 effects and the merge queue: {rows:#?}");
    let states: BTreeSet<&str> = rows.iter().filter_map(|r| r["state"].as_str()).collect();
    assert_eq!(states, ["integration", "merged"].into(), "{rows:#?}");
    assert!(rows.iter().all(|r| r["run"] == run.as_str() && r["base"].as_str().is_some_and(|b| b.len() == 40)));
    let effects: BTreeSet<&str> = rows.iter().filter_map(|r| r["effect"].as_str()).collect();
    assert!(effects.contains("root/parallel-0/0"), "{effects:?}");
    let plain = project.run(&["worktrees"]);
    assert!(plain.stdout.contains("merged") && plain.stdout.contains(&run), "{plain}");

    let pruned = project.run(&["worktrees", "prune", "--json"]);
    assert_eq!(pruned.code, 0, "{pruned}");
    assert_eq!(pruned.json()["removed"].as_array().map(Vec::len), Some(4), "{pruned}");
    assert_eq!(worktree_count(&project), 1);
    for row in rows {
        let branch = row["branch"].as_str().expect("branch");
        git(project.root(), &["rev-parse", "--verify", "--quiet", &format!("refs/heads/{branch}")]);
    }
    assert_eq!(project.run(&["worktrees", "--json"]).json(), json!([]));
}
