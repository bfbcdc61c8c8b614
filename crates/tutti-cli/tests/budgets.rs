//! Budgets: a group's, a run's and a harness's spend is held to its limit across parallel members, restarts
//! and `onExceed: "cancel"`; every decision is journaled; refused effects fail with a catchable
//! `BudgetExceeded`; bad budgets are refused with exit 2 before anything starts.

use std::time::Duration;

use serde_json::{Value, json};
use tutti_testkit::{Project, of_kind, show};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

/// A command harness standing in for a paid agent: each attempt takes `seconds`, reports `usd` as its cost,
/// and with `child` leaves a grandchild (`sleep 60`) running; the pids go to `pids/NAME`.
const WORKER: &str = r#"
import json, os, subprocess, sys, time
job = json.load(sys.stdin)
args = job.get("args") or {}
name = args.get("name", job["effectId"])
os.makedirs("pids", exist_ok=True)
children = [subprocess.Popen(["sleep", "60"]).pid] if args.get("child") else []
with open(f"pids/{name}", "w") as f:
    f.write(" ".join(str(p) for p in [os.getpid(), *children]))
time.sleep(args.get("seconds", 0.2))
if args.get("fail"):
    sys.exit("failed on purpose")
with open(os.environ["TUTTI_USAGE_FILE"], "w") as f:
    json.dump({"input_tokens": 1000, "output_tokens": 100, "cost_usd": args.get("usd", 0.15)}, f)
with open("done.log", "a") as f:
    f.write(name + "\n")
print(json.dumps({"name": name}))
"#;

const TOML: &str = r#"
[defaults]
max_parallel = 8

[harness.worker]
command = ["python3", "worker.py"]
"#;

/// Ten tasks of $0.15 over a group of four members with `budget`; each outcome as `ok` or the error's name
/// and scope.
const GROUP: &str = r#"
import { defineTask } from "tutti";
const work = defineTask("work", (args) => ({ kind: "agent", harness: "worker", title: `item ${args.name}`, agent: { prompt: "work" } }));
export async function process(inputs, ctx) {
  const team = ctx.group("team", { members: 4, budget: inputs.budget });
  const items = inputs.items;
  const settled = await Promise.allSettled(items.map((item, i) => team.members[i % 4].task(work, item)));
  return settled.map((s) => (s.status === "fulfilled" ? "ok" : `${s.reason.name} ${s.reason.scope}`));
}
"#;

fn project() -> Project {
    let project = Project::new(TUTTI);
    project.write("tutti.toml", TOML);
    project.write("worker.py", WORKER);
    project.write("group.js", GROUP);
    project
}

fn spent(events: &[Value], harness: Option<&str>) -> f64 {
    of_kind(events, "effect_usage")
        .iter()
        .filter(|e| harness.is_none_or(|h| e["event"]["harness"] == h))
        .filter_map(|e| e["event"]["usage"]["cost_usd"].as_f64())
        .sum()
}

fn inputs(budget: Value, items: Value) -> String {
    json!({ "budget": budget, "items": items }).to_string()
}

fn items(n: usize, usd: f64, seconds: f64) -> Value {
    (0..n).map(|i| json!({ "name": format!("i{i}"), "usd": usd, "seconds": seconds })).collect()
}

#[test]
fn a_group_budget_holds_over_four_parallel_members_and_the_tasks_over_it_fail_with_budget_exceeded() {
    let project = project();
    let out = project.run(&["run", "group.js", "--inputs", &inputs(json!({ "usd": 1.0 }), items(10, 0.15, 0.3))]);
    assert_eq!(out.code, 0, "{out}");
    let run = out.run_id();
    let results: Vec<String> = serde_json::from_value(out.json()).expect("strings");
    let ok = results.iter().filter(|r| *r == "ok").count();
    let refused = results.iter().filter(|r| *r == "BudgetExceeded group team").count();
    assert_eq!(ok + refused, 10, "{results:?}");
    let events = project.events(&run);
    let total = spent(&events, None);
    assert!(total <= 1.0 + 0.15 + 1e-9, "at most $1.00 plus one reservation: ${total}");
    assert!((total - ok as f64 * 0.15).abs() < 1e-9, "every finished task cost $0.15");
    assert!(ok >= 6, "the budget is used, not left idle: {results:?}");

    // Every decision is journaled: a reservation per admitted attempt after the first, a refusal per task
    // that could not start.
    let refusals = of_kind(&events, "budget_exceeded");
    assert_eq!(refusals.len(), refused, "{}", show(&events));
    assert!(refusals.iter().all(|r| r["event"]["scope"] == "group team" && r["event"]["action"] == "refused"));
    assert_eq!(of_kind(&events, "budget_reserved").len(), ok, "{}", show(&events));
    let logs: Vec<&str> = of_kind(&events, "log").iter().filter_map(|e| e["event"]["message"].as_str()).collect();
    assert!(logs.iter().any(|l| l.starts_with("warning: group team has spent $0.")), "warned at 80 %: {logs:?}");

    let status = project.run(&["status", &run]);
    let line = format!("group team             ${:.2} of $1.00", total);
    assert!(
        status.stdout.contains(&line) && status.stdout.contains(&format!("{refused} effect(s) refused")),
        "{status}"
    );
    let json = project.status(&run);
    assert_eq!(json["budgets"][0]["scope"], "group team", "{json}");
    assert_eq!(json["budgets"][0]["limits"]["usd"], 1.0);
    let groups = project.run(&["groups", &run, "--json"]).json();
    assert_eq!(groups[0]["budget"]["refused"], refused as u64, "{groups}");
    let text = project.run(&["groups", &run]);
    assert!(text.stdout.contains("  budget           $"), "{text}");
    assert!(out.stderr.contains("budget  group team"), "the end-of-run summary shows it: {out}");
}

#[test]
fn on_exceed_cancel_stops_the_running_attempts_and_their_process_trees_as_the_budget_is_crossed() {
    let project = project();
    // Every attempt is expected to cost $0.10, so four start at once; the fast one reports $0.60 and
    // crosses the $0.50 budget while the three slow ones (each with a grandchild) still run.
    project.write("tutti.toml", format!("{TOML}reserve_usd = 0.1\n"));
    let mut work = items(4, 0.10, 60.0);
    work[0] = json!({ "name": "fast", "usd": 0.60, "seconds": 0.5 });
    for slow in work.as_array_mut().into_iter().flatten().skip(1) {
        slow["child"] = json!(true);
    }
    let started = std::time::Instant::now();
    let out = project.run(&["run", "group.js", "--inputs", &inputs(json!({ "usd": 0.5, "onExceed": "cancel" }), work)]);
    assert_eq!(out.code, 0, "{out}");
    assert!(started.elapsed() < Duration::from_secs(30), "the slow attempts did not run their minute");
    let results: Vec<String> = serde_json::from_value(out.json()).expect("strings");
    assert_eq!(results, ["ok", "BudgetExceeded group team", "BudgetExceeded group team", "BudgetExceeded group team"]);
    let events = project.events(&out.run_id());
    let crossing = of_kind(&events, "budget_exceeded");
    assert_eq!(crossing.len(), 1, "{}", show(&events));
    assert_eq!(crossing[0]["event"]["action"], "cancel");
    assert!(crossing[0]["event"].get("effect").is_none(), "a crossing, not a refusal");
    // The slow attempts were stopped, process trees and all.
    for name in ["i1", "i2", "i3"] {
        let pids = project.read(&format!("pids/{name}")).unwrap_or_else(|| panic!("{name} started"));
        for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let gone = (0..50).any(|_| {
                std::thread::sleep(Duration::from_millis(100));
                // SAFETY: signal 0 only asks whether the process exists.
                unsafe { libc::kill(pid, 0) != 0 }
            });
            assert!(gone, "{name}: process {pid} outlived its cancelled attempt");
        }
    }
    assert_eq!(project.read("done.log").as_deref(), Some("fast\n"), "no slow attempt finished");
}

/// Ten tasks of $0.20 one after the other under a run budget; stops at the first refusal.
const SEQUENTIAL: &str = r#"
import { defineTask } from "tutti";
const work = defineTask("work", (args) => ({ kind: "agent", harness: "worker", title: `item ${args.name}`, agent: { prompt: "work" } }));
export async function process(inputs, ctx) {
  const done = [];
  for (let i = 0; i < 10; i++) {
    try {
      await ctx.task(work, { name: `i${i}`, usd: 0.2, seconds: 0.4 });
      done.push(i);
    } catch (e) {
      if (e.name !== "BudgetExceeded") throw e;
      return { done, refused: { scope: e.scope, limit: e.limit, spent: e.spent } };
    }
  }
  return { done };
}
"#;

#[test]
fn a_run_budget_holds_across_a_kill_9_and_resume_without_counting_anything_twice() {
    let project = project();
    project.write("seq.js", SEQUENTIAL);
    let driver = project.spawn(&["run", "seq.js", "--budget-usd", "1"]);
    let run = driver.run_id();
    project.wait_for_event(&run, "60 % of the budget spent", |e| {
        e["event"]["type"] == "effect_usage" && e["event"]["effect"] == "root/2"
    });
    driver.signal(libc::SIGKILL);
    drop(driver.wait(Duration::from_secs(30)));
    let before = spent(&project.events(&run), None);
    assert!(before >= 0.6 - 1e-9, "${before} spent before the crash");
    let status = project.run(&["status", &run]);
    assert!(status.stdout.contains(&format!("run                    ${before:.2} of $1.00")), "{status}");

    let out = project.run(&["resume", &run, "--json"]);
    assert_eq!(out.code, 0, "{out}");
    let result = &out.json()["output"];
    let events = project.events(&run);
    let total = spent(&events, None);
    assert!(total <= 1.0 + 0.2 + 1e-9, "the limit held across the restart: ${total}");
    assert_eq!(result["refused"]["scope"], "run", "{result}");
    assert_eq!(result["refused"]["limit"], 1.0, "{result}");
    // Each finished task was paid for once; an attempt the crash cut short ran again and is shown as a re-run.
    let finished = result["done"].as_array().map_or(0, Vec::len);
    let reruns = of_kind(&events, "effect_redispatched").len();
    let paid = of_kind(&events, "effect_usage").len();
    assert_eq!(paid, finished, "one usage per finished task, none counted twice: {}", show(&events));
    assert!((total - 0.2 * finished as f64).abs() < 1e-9);
    let budgets = &out.json()["budgets"];
    assert_eq!(budgets[0]["scope"], "run", "{budgets}");
    assert!((budgets[0]["spent"]["usd"].as_f64().unwrap_or(0.0) - total).abs() < 1e-9, "{budgets}");
    assert_eq!(budgets[0]["spent"]["rerunTurns"], reruns as u64, "{budgets}");
}

#[test]
fn bad_budgets_are_refused_with_exit_2_before_anything_starts() {
    let project = project();
    let no_run = |args: &[&str], says: &str| {
        let out = project.run(args);
        assert_eq!(out.code, 2, "{args:?}: {out}");
        assert!(out.stderr.contains(says), "{args:?} should say {says:?}: {out}");
        assert!(project.read("done.log").is_none(), "{args:?}: nothing may run");
    };
    let group = |budget: Value| inputs(budget, items(2, 0.1, 0.1));
    no_run(&["run", "group.js", "--budget-usd=-1"], "is not an amount of US dollars");
    no_run(&["run", "group.js", "--budget-usd", "five"], "is not an amount of US dollars");
    no_run(&["run", "group.js", "--budget-time", "soon"], "is not a duration");
    no_run(
        &["run", "group.js", "--inputs", &group(json!({ "eur": 5 }))],
        "budget.eur: budgets are in US dollars; use `usd`",
    );
    no_run(&["run", "group.js", "--inputs", &group(json!({ "usd": -1 }))], "budget.usd must be a number of at least 0");
    project.write("member.js", GROUP.replace("budget: inputs.budget", "budget: { usd: 1 }, memberBudget: { usd: 2 }"));
    no_run(
        &["run", "member.js", "--inputs", &group(json!(null))],
        "memberBudget.usd ($2.00) is larger than the group's budget.usd ($1.00)",
    );
    project.write(
        "task.js",
        SEQUENTIAL
            .replace("{ name: `i${i}`, usd: 0.2, seconds: 0.4 }", "{ name: `i${i}` }, { budget: { usd: \"lots\" } }"),
    );
    no_run(&["run", "task.js"], "budget.usd must be a number of at least 0, not \"lots\"");
    for (toml, says) in [
        ("[budget]\nusd = -3\n", "tutti.toml: [budget]: usd must be a number of at least 0"),
        ("[budget]\npounds = 3\n", "tutti.toml: [budget]: pounds is not a budget field"),
        ("[budget]\ntime = \"forever\"\n", "is not a duration"),
        (
            "[prices.\"m\"]\ninput = -1\noutput = 2\n",
            "tutti.toml: [prices.\"m\"]: prices must be numbers of at least 0",
        ),
    ] {
        project.write("tutti.toml", format!("{TOML}{toml}"));
        no_run(&["run", "group.js", "--inputs", &group(json!(null))], says);
    }
    project.write("tutti.toml", format!("{TOML}budget_usd = \"x\"\n"));
    no_run(
        &["run", "group.js", "--inputs", &group(json!(null))],
        "[harness.worker]: budget_usd must be a number of at least 0",
    );
}

#[test]
fn doctor_lists_the_price_table_with_where_each_price_comes_from() {
    let project = project();
    project.write(
        "tutti.toml",
        format!(
            "{TOML}\n[prices.\"gpt-5.5\"]\ninput = 1.5\noutput = 6\n\n[prices.\"local-llm\"]\ninput = 0\noutput = 0\n"
        ),
    );
    let report = project.run(&["doctor", "--json"]).json();
    let price = |model: &str| report["prices"].as_array().and_then(|p| p.iter().find(|p| p["model"] == model)).cloned();
    let gpt = price("gpt-5.5").expect("gpt-5.5 priced");
    assert_eq!((gpt["input"].as_f64(), gpt["output"].as_f64()), (Some(1.5), Some(6.0)), "{gpt}");
    assert_eq!(gpt["source"], "tutti.toml [prices.\"gpt-5.5\"]");
    assert_eq!(price("local-llm").map(|p| p["source"].clone()), Some(json!("tutti.toml [prices.\"local-llm\"]")));
    let opus = price("claude-opus-5-5").expect("claude's default model has a default price");
    assert_eq!(opus["source"], "default prices (2026-12-02)");
    let text = project.run(&["doctor"]);
    assert!(text.stdout.contains("gpt-5.5            1.5 / 6 / 0 / 0  (tutti.toml [prices.\"gpt-5.5\"])"), "{text}");
}

/// A task with a long description (kept out of line in the journal) and a budget of one turn.
const TASK_BUDGET: &str = r#"
import { defineTask } from "tutti";
const big = defineTask("big", (args) => ({ kind: "agent", harness: "worker", title: "big", agent: { prompt: "x".repeat(6000) },
  budget: { turns: 1 }, retry: { max: 3, backoffMs: 10 } }));
export async function process(inputs, ctx) {
  try { await ctx.task(big, { name: "big", fail: true }); } catch (e) { return { name: e.name, scope: e.scope, spent: e.spent }; }
}
"#;

#[test]
fn a_task_budget_stops_its_retries_and_is_read_back_from_a_task_kept_out_of_line() {
    let project = project();
    project.write("big.js", TASK_BUDGET);
    let out = project.run(&["run", "big.js"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), json!({ "name": "BudgetExceeded", "scope": "task root/0", "spent": 1 }), "{out}");
    let run = out.run_id();
    let events = project.events(&run);
    assert_eq!(of_kind(&events, "effect_started").len(), 1, "its retry was refused: {}", show(&events));
    let status = project.status(&run);
    assert_eq!(status["budgets"][0]["scope"], "task root/0", "the budget of a task stored as a blob: {status}");
    assert_eq!(status["budgets"][0]["spent"]["turns"], 1);
}

#[test]
fn a_money_budget_runs_shell_tasks_side_by_side_once_one_has_shown_they_cost_nothing() {
    let project = Project::with_examples(TUTTI);
    let out = project.run(&["run", "fanout.js", "--budget-usd", "5"]);
    assert_eq!(out.code, 0, "{out}");
    let events = project.events(&out.run_id());
    let (mut running, mut most) = (0i32, 0i32);
    for e in &events {
        match e["event"]["type"].as_str() {
            Some("effect_started") => running += 1,
            Some("effect_resolved") => running -= 1,
            _ => continue,
        }
        most = most.max(running);
    }
    assert!(most >= 4, "the fan-out ran at most {most} at once under a budget:\n{}", show(&events));
    assert_eq!(of_kind(&events, "budget_exceeded").len(), 0);
    let budgets = project.status(&out.run_id())["budgets"].clone();
    let run = budgets.as_array().and_then(|b| b.iter().find(|b| b["scope"] == "run")).cloned().unwrap_or_default();
    assert_eq!((run["spent"]["usd"].as_f64(), run["spent"]["turns"].as_u64()), (Some(0.0), Some(24)), "{budgets}");
}

#[test]
fn a_time_budget_is_wall_clock_from_the_runs_start_and_refuses_what_would_start_after_it() {
    let project = project();
    project.write("seq.js", SEQUENTIAL);
    let out = project.run(&["run", "seq.js", "--budget-time", "1s", "--budget-usd", "100"]);
    assert_eq!(out.code, 0, "{out}");
    let result = out.json();
    assert_eq!(result["refused"]["scope"], "run", "{result}");
    let done = result["done"].as_array().map_or(0, Vec::len);
    assert!((1..=3).contains(&done), "0.4 s a task: a few fit in one second: {result}");
    let events = project.events(&out.run_id());
    let refusal = of_kind(&events, "budget_exceeded").into_iter().find(|e| e["event"]["effect"].is_string());
    let refusal = refusal.unwrap_or_else(|| panic!("a refusal: {}", show(&events)));
    assert_eq!(refusal["event"]["measure"], "timeMs");
    assert_eq!(refusal["event"]["limit"], 1000.0);
    let created = events[0]["ts_ms"].as_i64().unwrap_or(0);
    assert!(refusal["ts_ms"].as_i64().unwrap_or(0) - created >= 1000, "refused only once the second had passed");
}
