//! Tests that guard the product's rules from outside, each written so that breaking its rule in the code makes
//! it fail: a kill between a harness start and its commit, a quorum that cancels its losers at once (not at the
//! run's end), a leftover process of a dead driver killed before its effect runs again; and behaviours nothing
//! else covers: durable sleeps across a resume, completion policies and `ctx.any`, `ctx.halt`, a compatible
//! edit before resume, `GROUP/*` broadcasts, `tutti post --error`, `tutti run --json`, `ctx.hook`, `ctx.runDir`
//! and `ctx.artifactsDir`.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tutti_testkit::{DEADLINE, Output, Project, kind, of_kind, process_is_gone, show, wait_for};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

fn field<'a>(e: &'a Value, key: &str) -> &'a str {
    e["event"][key].as_str().unwrap_or("")
}

fn output_of(out: std::process::Output) -> Output {
    Output {
        code: out.status.code().unwrap_or(128 + out.status.signal().unwrap_or(0)),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Three parallel shell tasks. Each first notes whether an earlier attempt of its effect is still alive
/// (`overlap.log`), then leaves its pid, and sleeps 30 s when the file `slow` existed as it began.
const STARTS: &str = r#"
import { defineTask } from "tutti";
const work = defineTask("work", (a) => ({
  kind: "shell",
  title: `work ${a.i}`,
  shell: { command: `
    id=$(echo "$TUTTI_EFFECT_ID" | tr '/:' '__')
    [ -f slow ] && s=1
    state=$( [ -f "pid-$id" ] && sed 's/.*) //' "/proc/$(cat "pid-$id")/stat" 2>/dev/null | cut -d' ' -f1 )
    if [ -n "$state" ] && [ "$state" != Z ]; then echo "$TUTTI_EFFECT_ID" >> overlap.log; fi
    echo $$ > "pid-$id"
    echo "$TUTTI_EFFECT_ID $TUTTI_ATTEMPT" >> ran.log
    if [ -n "$s" ]; then sleep 30; fi
    echo ${a.i}` },
}));
export async function process(inputs, ctx) {
  const out = await ctx.parallel.map([1, 2, 3], (i) => ctx.task(work, { i }));
  return out.map((r) => r.stdout.trim());
}
"#;

fn pid_files(project: &Project) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(project.root())
        .expect("project dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("pid-"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_kill_between_a_start_and_its_commit_is_recovered_by_killing_the_leftover_first() {
    for k in 1..=3u64 {
        let project = Project::new(TUTTI);
        project.write("p.js", STARTS);
        project.write("slow", "");
        let mut command = project.tutti();
        command.args(["run", "p.js"]).env("TUTTI_FAULT_KILL_AFTER_STARTS", k.to_string());
        let first = output_of(command.output().expect("run tutti"));
        assert_eq!(first.code, 128 + libc::SIGKILL, "kill point {k}: {first}");
        let run = first.run_id();
        // The killed driver's attempts live on; the kth one's start never reached the journal.
        wait_for(DEADLINE, "the started attempts to leave their pids", || pid_files(&project).len() as u64 >= k);
        let leftovers: Vec<u32> =
            pid_files(&project).iter().filter_map(|f| project.read(f).and_then(|p| p.trim().parse().ok())).collect();
        let before = project.events(&run);
        let started: usize = of_kind(&before, "effect_started").len();
        assert_eq!(started as u64, k - 1, "kill point {k}: the kth start is not journaled\n{}", show(&before));
        assert_eq!(of_kind(&before, "effect_requested").len(), 3, "kill point {k}: requests commit first");

        std::fs::remove_file(project.path("slow")).expect("remove slow");
        let resumed = project.run(&["resume", &run]);
        assert_eq!(resumed.code, 0, "kill point {k}: {resumed}");
        assert_eq!(resumed.json(), json!(["1", "2", "3"]), "kill point {k}");
        for pid in &leftovers {
            assert!(process_is_gone(*pid), "kill point {k}: the dead driver's attempt {pid} still runs");
        }
        assert_eq!(project.read("overlap.log"), None, "kill point {k}: two attempts of one effect ran at once");
        let events = project.events(&run);
        let unjournaled: Vec<&Value> = of_kind(&events, "effect_redispatched")
            .into_iter()
            .filter(|e| field(e, "reason").contains("without a journaled start"))
            .collect();
        assert_eq!(unjournaled.len(), 1, "kill point {k}: {}", show(&events));
        assert!(field(unjournaled[0], "reason").contains("killed"), "kill point {k}: {}", show(&events));
        // Every effect that ran twice has its re-dispatch journaled.
        let redispatched: BTreeSet<&str> =
            of_kind(&events, "effect_redispatched").iter().map(|e| field(e, "effect")).collect();
        let log = project.read("ran.log").unwrap_or_default();
        for effect in log.lines().filter_map(|l| l.split(' ').next()).collect::<BTreeSet<_>>() {
            let runs = log.lines().filter(|l| l.starts_with(&format!("{effect} "))).count();
            assert!(runs == 1 || redispatched.contains(effect), "kill point {k}: {effect} ran {runs} times\n{log}");
        }
    }
}

#[test]
fn a_quorum_cancels_its_slow_members_as_soon_as_it_is_decided() {
    let project = Project::new(TUTTI);
    project.write(
        "quorum.js",
        r#"
import { defineTask } from "tutti";
const work = defineTask("work", (a) => ({ kind: "shell", title: `item ${a.i}`,
  shell: { command: a.fast ? "echo fast" : `echo $$ > pid-${a.i}; exec sleep 60` } }));
const after = defineTask("after", () => ({ kind: "shell", title: "after",
  shell: { command: "for f in pid-*; do [ -f \"$f\" ] && kill -0 $(cat $f) 2>/dev/null && echo $f; done; sleep 1; true" } }));
export async function process(inputs, ctx) {
  const pool = ctx.group("pool", { members: 5 });
  const r = await pool.map([0, 1, 2, 3, 4], (i, m) => m.task(work, { i, fast: i < 2 }), { completion: { minSuccessful: 2 } });
  // The process goes on working after the fan-in: its losers must not wait for the run's end.
  const alive = (await ctx.task(after, {})).stdout.trim();
  return { statuses: r.items.map((x) => x.status), alive };
}
"#,
    );
    let out = project.run(&["run", "quorum.js"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), json!({"statuses": ["ok", "ok", "cancelled", "cancelled", "cancelled"], "alive": ""}));
    let events = project.events(&out.run_id());
    let cancelled = of_kind(&events, "effect_cancelled");
    assert_eq!(cancelled.len(), 3, "{}", show(&events));
    for e in &cancelled {
        assert_eq!(field(e, "reason"), "cancelled by the process", "{}", show(&events));
    }
    let at = |pred: &dyn Fn(&Value) -> bool| events.iter().position(pred).expect("event");
    let last_cancel = events.iter().rposition(|e| kind(e) == "effect_cancelled").expect("cancelled");
    let after_requested = at(&|e| kind(e) == "effect_requested" && e["event"]["task_id"] == "after");
    assert!(last_cancel < after_requested, "the losers were cancelled before the process went on\n{}", show(&events));
}

#[test]
fn a_durable_sleep_keeps_its_wake_time_across_a_resume() {
    let project = Project::new(TUTTI);
    project.write(
        "sleep.js",
        r#"
export async function process(inputs, ctx) {
  const target = ctx.now().getTime() + 2500;
  await ctx.sleepUntil(target);
  return { target, late: ctx.now().getTime() - target };
}
"#,
    );
    let started = Instant::now();
    let driver = project.spawn(&["run", "sleep.js"]);
    let run = driver.run_id();
    project.wait_for_event(&run, "the sleep", |e| kind(e) == "effect_requested" && e["event"]["kind"] == "sleep");
    driver.signal(libc::SIGKILL);
    drop(driver.wait(DEADLINE));
    let resumed = project.spawn(&["resume", &run]);
    let out = resumed.wait(DEADLINE);
    assert_eq!(out.code, 0, "{out}");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(2400), "woke early: {elapsed:?}");
    assert!(elapsed < Duration::from_millis(4800), "the timer restarted on resume: {elapsed:?}");
    let value = out.json();
    assert!(value["late"].as_i64().is_some_and(|l| (0..2000).contains(&l)), "{value}");
    let events = project.events(&run);
    assert_eq!(of_kind(&events, "effect_resolved").len(), 1, "{}", show(&events));
    assert_eq!(of_kind(&events, "effect_started").len(), 0, "a sleep runs no harness");
}

#[test]
fn completion_policies_and_ctx_any_end_the_fan_in_early_and_cancel_the_rest() {
    let project = Project::new(TUTTI);
    project.write(
        "policies.js",
        r#"
import { defineTask } from "tutti";
// A shell task's non-zero exit is a value; one past its timeout fails.
const work = defineTask("work", (a) => ({ kind: "shell", title: `item ${a.v}`,
  shell: a.v === "fail" ? { command: "exec sleep 5", timeout: 50 } : { command: a.v === "slow" ? "exec sleep 60" : a.v === "late" ? "sleep 0.5; echo won" : `echo ${a.v}` } }));
const summary = (r) => ({ statuses: r.items.map((x) => x.status), succeeded: r.succeeded, failed: r.failed, cancelled: r.cancelled });
export async function process(inputs, ctx) {
  const pool = ctx.group("pool", { members: 3 });
  const tolerated = await pool.map(["ok", "fail", "ok"], (v, m) => m.task(work, { v }), { completion: { toleratedFailures: 1 } });
  const exceeded = await pool.map(["fail", "fail", "slow"], (v, m) => m.task(work, { v }), { completion: { toleratedFailures: 1 } });
  const any = await pool.map(["slow", "first", "slow"], (v, m) => m.task(work, { v }), { completion: "any" });
  const winner = await ctx.any(ctx.task(work, { v: "fail" }), ctx.task(work, { v: "slow" }), ctx.task(work, { v: "late" }));
  return { tolerated: summary(tolerated), exceeded: summary(exceeded), any: summary(any), winner: winner.stdout.trim() };
}
"#,
    );
    let started = Instant::now();
    let out = project.run(&["run", "policies.js"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(started.elapsed() < Duration::from_secs(30), "slow members were waited for");
    assert_eq!(
        out.json(),
        json!({
            "tolerated": {"statuses": ["ok", "error", "ok"], "succeeded": 2, "failed": 1, "cancelled": 0},
            "exceeded": {"statuses": ["error", "error", "cancelled"], "succeeded": 0, "failed": 2, "cancelled": 1},
            "any": {"statuses": ["cancelled", "ok", "cancelled"], "succeeded": 1, "failed": 0, "cancelled": 2},
            "winner": "won",
        })
    );
    let events = project.events(&out.run_id());
    let cancelled = of_kind(&events, "effect_cancelled");
    assert_eq!(
        cancelled.len(),
        4,
        "1 exceeded + 2 any + the slow ctx.any loser (the failed one is not cancelled)\n{}",
        show(&events)
    );
    assert!(cancelled.iter().all(|e| field(e, "reason") == "cancelled by the process"), "{}", show(&events));
}

#[test]
fn ctx_halt_ends_the_run_as_halted_and_stops_what_runs() {
    let project = Project::new(TUTTI);
    project.write(
        "halt.js",
        r#"
import { defineTask } from "tutti";
const slow = defineTask("slow", () => ({ kind: "shell", title: "slow", shell: { command: "echo $$ > pid; exec sleep 60" } }));
const quick = defineTask("quick", () => ({ kind: "shell", title: "quick", shell: { command: "echo quick" } }));
export async function process(inputs, ctx) {
  ctx.spawn(slow, {});
  await ctx.task(quick, {});
  ctx.halt("nothing left to do", { found: 0 });
  await ctx.task(quick, { never: true });
  return "unreachable";
}
"#,
    );
    let out = project.run(&["run", "halt.js", "--json"]);
    assert_eq!(out.code, 0, "{out}");
    let value = out.json();
    assert_eq!(value["status"], "halted", "{value}");
    assert_eq!(value["output"], json!({"halted": "nothing left to do", "payload": {"found": 0}}));
    let events = project.events(value["runId"].as_str().expect("run id"));
    assert_eq!(of_kind(&events, "run_halted").len(), 1, "{}", show(&events));
    assert_eq!(of_kind(&events, "effect_started").len(), 2, "nothing starts after the halt\n{}", show(&events));
    if let Some(pid) = project.read("pid").and_then(|p| p.trim().parse::<u32>().ok()) {
        assert!(process_is_gone(pid), "the spawned task outlived the halt");
    }
}

#[test]
fn a_compatible_edit_before_resume_is_journaled_and_the_run_goes_on() {
    let project = Project::new(TUTTI);
    let process = r#"
import { defineTask } from "tutti";
const step = defineTask("step", (a) => ({ kind: "shell", title: `step ${a.n}`, shell: { command: `echo ${a.n}` } }));
export async function process(inputs, ctx) {
  const a = await ctx.task(step, { n: 1 });
  await ctx.breakpoint({ question: "go on?" });
  const b = await ctx.task(step, { n: 2 });
  return [a.stdout.trim(), b.stdout.trim()];
}
"#;
    project.write("p.js", process);
    let driver = project.spawn(&["run", "p.js"]);
    let run = driver.run_id();
    project.wait_for_event(&run, "the breakpoint", |e| {
        kind(e) == "effect_requested" && e["event"]["kind"] == "breakpoint"
    });
    driver.signal(libc::SIGINT);
    assert_ne!(driver.wait(DEADLINE).code, 0);
    // A comment and a log line: the calls the journal holds are unchanged.
    project.write("p.js", process.replace("const b =", "// reviewed\n  ctx.log(\"resumed\");\n  const b ="));
    let resumed = project.run(&["resume", &run, "--non-interactive"]);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert_eq!(resumed.json(), json!(["1", "2"]));
    let events = project.events(&run);
    let changed = of_kind(&events, "process_code_changed");
    assert_eq!(changed.len(), 1, "{}", show(&events));
    assert_ne!(field(changed[0], "old_hash"), field(changed[0], "new_hash"));
    assert!(resumed.stderr.contains("changed"), "the user is told: {resumed}");
}

#[test]
fn a_broadcast_to_a_group_reaches_every_member_with_its_next_turn() {
    let project = Project::new(TUTTI);
    project.write(
        "tutti.toml",
        r#"
[harness.keeper]
command = ["sh", "-c", "cat > in-$(echo $TUTTI_EFFECT_ID | tr '/:' '__').json; echo '{\"ok\": true}'"]
"#,
    );
    project.write(
        "broadcast.js",
        r#"
import { defineTask } from "tutti";
const work = defineTask("work", () => ({ kind: "agent", title: "work", agent: { prompt: "work" } }));
export async function process(inputs, ctx) {
  const team = ctx.group("team", { members: ["ann", "bob", "cy"], harness: "keeper" });
  ctx.send("team/*", "the plan changed");
  await team.all((m) => m.task(work, {}));
  return "done";
}
"#,
    );
    let out = project.run(&["run", "broadcast.js"]);
    assert_eq!(out.code, 0, "{out}");
    let events = project.events(&out.run_id());
    let sent: BTreeSet<&str> = of_kind(&events, "message_sent").iter().map(|e| field(e, "to")).collect();
    assert_eq!(sent, ["team/ann", "team/bob", "team/cy"].into(), "{}", show(&events));
    assert_eq!(of_kind(&events, "message_delivered").len(), 3, "{}", show(&events));
    for member in ["ann", "bob", "cy"] {
        let input = project.read(&format!("in-group_team_{member}_0.json")).expect("the member's input");
        assert!(input.contains("the plan changed"), "{member} did not get the broadcast: {input}");
    }
}

#[test]
fn post_error_rejects_the_effect_with_that_error() {
    let project = Project::new(TUTTI);
    project.write(
        "gate.js",
        r#"
export async function process(inputs, ctx) {
  try {
    await ctx.breakpoint({ question: "ship?" });
    return "shipped";
  } catch (e) {
    return { name: e.name, message: e.message };
  }
}
"#,
    );
    let driver = project.spawn(&["run", "gate.js"]);
    let run = driver.run_id();
    let requested = project.wait_for_event(&run, "the breakpoint", |e| kind(e) == "effect_requested");
    let effect = field(&requested, "effect").to_string();
    let post = project.run(&["post", &run, &effect, "--error", r#"{"name": "Vetoed", "message": "not this week"}"#]);
    assert_eq!(post.code, 0, "{post}");
    let out = driver.wait(DEADLINE);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), json!({"name": "Vetoed", "message": "not this week"}));
    let events = project.events(&run);
    let resolved = of_kind(&events, "effect_resolved");
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0]["event"]["outcome"]["error"]["name"], "Vetoed", "{}", show(&events));
    let applied = of_kind(&events, "control_applied");
    assert_eq!(applied.first().map(|e| field(e, "action")), Some("post"), "{}", show(&events));
}

#[test]
fn run_json_prints_one_object_with_the_run_id_status_and_output() {
    let project = Project::new(TUTTI);
    project.write("ok.js", "export async function process(inputs) { return { got: inputs }; }");
    project.write("bad.js", "export async function process() { throw new Error(\"no luck\"); }");
    let out = project.run(&["run", "ok.js", "--inputs", r#"{"n": 1}"#, "--json"]);
    assert_eq!(out.code, 0, "{out}");
    let value: Value = serde_json::from_str(&out.stdout).expect("stdout is one JSON value");
    assert_eq!(value["status"], "completed");
    assert_eq!(value["output"], json!({"got": {"n": 1}}));
    assert_eq!(value["error"], Value::Null);
    let run = value["runId"].as_str().expect("runId");
    assert_eq!(project.status(run)["status"], "completed");

    let failed = project.run(&["run", "bad.js", "--json"]);
    assert_eq!(failed.code, 1, "{failed}");
    let value: Value = serde_json::from_str(&failed.stdout).expect("stdout is one JSON value");
    assert_eq!(value["status"], "failed");
    assert_eq!(value["output"], Value::Null);
    assert_eq!(value["error"]["message"], "no luck", "{value}");
}

#[test]
fn ctx_hook_is_journaled_and_run_dir_and_artifacts_dir_name_the_run_folder() {
    let project = Project::new(TUTTI);
    project.write(
        "hook.js",
        r#"
export async function process(inputs, ctx) {
  ctx.hook("review-ready", { files: 2 });
  return { runDir: ctx.runDir, artifactsDir: ctx.artifactsDir, runId: ctx.runId };
}
"#,
    );
    let out = project.run(&["run", "hook.js"]);
    assert_eq!(out.code, 0, "{out}");
    let run = out.run_id();
    let value = out.json();
    assert_eq!(value["runId"], run.as_str());
    assert_eq!(value["runDir"], format!(".tutti/runs/{run}"));
    assert_eq!(value["artifactsDir"], format!(".tutti/runs/{run}/artifacts"));
    let events = project.events(&run);
    let hooks: Vec<&str> = of_kind(&events, "log").iter().map(|e| field(e, "message")).collect();
    assert!(hooks.contains(&r#"hook review-ready {"files":2}"#), "{}", show(&events));
}

#[test]
fn a_failed_run_shows_the_cause_in_plain_text() {
    let project = Project::new(TUTTI);
    project.write(
        "tutti.toml",
        "[harness.flaky]\ncommand = [\"sh\", \"-c\", \"cat > /dev/null; echo 'rate limited by the gateway' >&2; exit 3\"]\n",
    );
    project.write(
        "p.js",
        r#"
import { defineTask } from "tutti";
const ask = defineTask("ask", () => ({ kind: "agent", harness: "flaky", title: "ask", agent: { prompt: "hi" } }));
export async function process(inputs, ctx) { return await ctx.task(ask, {}); }
"#,
    );
    let out = project.run(&["run", "p.js"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("stderr (last lines):") && out.stderr.contains("rate limited by the gateway"), "{out}");
    assert!(out.stderr.contains("raised by effect root/0, requested at ") && out.stderr.contains("p.js:4:"), "{out}");
    assert!(!out.stderr.contains("tutti:runtime"), "tutti's own frames are left out: {out}");
}

#[test]
fn a_run_ends_with_its_account() {
    let project = Project::new(TUTTI);
    project.write(
        "p.js",
        r#"
import { defineTask } from "tutti";
const t = defineTask("t", (a) => ({ kind: "shell", title: `t ${a.i}`, shell: { command: a.i === 2 ? "exit 0" : "sleep 0.2" } }));
export async function process(inputs, ctx) { return await ctx.parallel.map([0, 1, 2], (i) => ctx.task(t, { i })); }
"#,
    );
    let out = project.run(&["run", "p.js"]);
    assert_eq!(out.code, 0, "{out}");
    let account: Vec<&str> = out.stderr.lines().skip_while(|l| !l.contains("summary:")).collect();
    assert!(account.first().is_some_and(|l| l.contains("3 effects (3 ok)") && l.contains("s wall")), "{out}");
    let slowest = account.iter().find(|l| l.trim_start().starts_with("slowest")).expect("the slowest effects");
    assert!(slowest.contains("root/parallel:0/0") || slowest.contains("root/parallel:1/0"), "{slowest}");
}

#[test]
fn a_shell_task_reports_progress_with_tutti_msg_progress_up_to_the_cap() {
    let project = Project::new(TUTTI);
    project.write(
        "p.js",
        r#"
import { defineTask } from "tutti";
const t = defineTask("t", () => ({ kind: "shell", title: "chatty",
  shell: { command: "tutti msg progress 'step one'; i=0; while [ $i -lt 210 ]; do tutti msg progress \"n $i\" || exit 9; i=$((i+1)); done; echo ok" } }));
export async function process(inputs, ctx) { return (await ctx.task(t, {})).stdout.trim(); }
"#,
    );
    let out = project.spawn(&["run", "p.js"]).wait(Duration::from_secs(120));
    assert_eq!(out.code, 0, "{out}");
    let events = project.events(&out.run_id());
    let notes: Vec<&str> =
        of_kind(&events, "effect_progress").iter().filter_map(|e| e["event"]["message"].as_str()).collect();
    assert_eq!(notes.first(), Some(&"step one"), "{}", show(&events));
    assert_eq!(notes.len(), 200, "at most 200 notes per attempt are journaled");
}
