//! Execution strategies: a task's retry policy retries failed attempts after a growing backoff, each attempt
//! and each decision journaled, and the backoff is durable: a driver killed during it waits for the rest of it
//! on resume. (Priorities and fair shares between groups are in `concurrency.rs`.)

use std::time::Duration;

use serde_json::Value;
use tutti_testkit::{Project, of_kind, show};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

/// A command harness whose first two attempts exit 69 (EX_UNAVAILABLE); the third answers.
const FLAKY: &str = r#"
[harness.flaky]
command = ["sh", "-c", "cat > /dev/null; n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; if [ $n -le 2 ]; then echo 'service unavailable' >&2; exit 69; fi; echo '{\"ok\": true, \"attempt\": '$n'}'"]
"#;

const PROCESS: &str = r#"
import { defineTask } from "tutti";
const ask = defineTask("ask", () => ({ kind: "agent", harness: "flaky", title: "flaky ask", agent: { prompt: "hi" },
  retry: { max: 3, backoffMs: 500, factor: 2 } }));
export async function process(inputs, ctx) { return await ctx.task(ask, {}); }
"#;

fn project() -> Project {
    let project = Project::new(TUTTI);
    project.write("tutti.toml", FLAKY);
    project.write("p.js", PROCESS);
    project
}

fn times(events: &[Value], kind: &str) -> Vec<i64> {
    of_kind(events, kind).iter().filter_map(|e| e["ts_ms"].as_i64()).collect()
}

#[test]
fn a_flaky_task_is_retried_after_a_growing_backoff_and_every_attempt_is_journaled() {
    let project = project();
    let out = project.run(&["run", "p.js"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), serde_json::json!({ "ok": true, "attempt": 3 }));
    let events = project.events(&out.run_id());
    let started = of_kind(&events, "effect_started");
    let attempts: Vec<u64> = started.iter().filter_map(|e| e["event"]["attempt"].as_u64()).collect();
    assert_eq!(attempts, [1, 2, 3], "{}", show(&events));
    let retrying = of_kind(&events, "effect_retrying");
    assert_eq!(retrying.len(), 2, "{}", show(&events));
    assert_eq!(retrying[0]["event"]["error"]["name"], "HarnessError", "{}", show(&events));
    let at = times(&events, "effect_started");
    let (first_gap, second_gap) = (at[1] - at[0], at[2] - at[1]);
    assert!((500..900).contains(&first_gap), "the first retry comes about 0.5 s later: {first_gap} ms");
    assert!((1000..1500).contains(&second_gap), "the second about 1 s after that: {second_gap} ms");
    let text = project.run(&["events", &out.run_id()]);
    assert!(text.stdout.contains("attempt 1 failed (HarnessError") && text.stdout.contains("retry 1 at"), "{text}");
}

#[test]
fn a_driver_killed_during_a_backoff_waits_for_the_rest_of_it_on_resume() {
    let project = project();
    let driver = project.spawn(&["run", "p.js"]);
    let run = driver.run_id();
    let second = project.wait_for_event(&run, "the second retry decision", |e| {
        e["event"]["type"] == "effect_retrying" && e["event"]["retry"] == 2
    });
    driver.signal(libc::SIGKILL);
    drop(driver.wait(Duration::from_secs(30)));
    let wake_ms = second["event"]["wake_ms"].as_i64().expect("a wake time");
    let status = project.run(&["status", &run]);
    assert!(status.stdout.contains("queued   root/0 \"flaky ask\" [agent]: retrying: its backoff ends at"), "{status}");
    assert_eq!(project.status(&run)["queued"][0]["effect"], "root/0");

    let out = project.run(&["resume", &run]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), serde_json::json!({ "ok": true, "attempt": 3 }));
    let events = project.events(&run);
    let third = of_kind(&events, "effect_started")
        .into_iter()
        .find(|e| e["event"]["attempt"] == 3)
        .unwrap_or_else(|| panic!("a third attempt: {}", show(&events)));
    let started = third["ts_ms"].as_i64().expect("ts");
    assert!(started >= wake_ms, "the third attempt started {} ms before its backoff ended", wake_ms - started);
    assert_eq!(of_kind(&events, "effect_retrying").len(), 2, "no retry was granted twice: {}", show(&events));
    assert_eq!(project.read("count").as_deref().map(str::trim), Some("3"), "three attempts in all");
}

#[test]
fn a_bad_retry_policy_fails_its_task_naming_the_field() {
    let project = project();
    project.write("bad.js", PROCESS.replace("max: 3", "max: -1"));
    let out = project.run(&["run", "bad.js"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("InvalidRetry") && out.stderr.contains("retry.max must be a number of at least 0"),
        "{out}"
    );
    assert!(project.read("count").is_none(), "nothing ran");
}

#[test]
fn a_harness_retry_default_covers_its_tasks_that_set_none_and_a_bad_one_is_refused() {
    let project = Project::new(TUTTI);
    project.write("tutti.toml", format!("{FLAKY}retry = {{ max = 2, backoffMs = 100 }}\n"));
    project.write("p.js", PROCESS.replace("\n  retry: { max: 3, backoffMs: 500, factor: 2 } }));", " }));"));
    assert!(!project.read("p.js").unwrap_or_default().contains("retry"), "the task sets no policy of its own");
    let out = project.run(&["run", "p.js"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), serde_json::json!({ "ok": true, "attempt": 3 }));
    assert_eq!(of_kind(&project.events(&out.run_id()), "effect_retrying").len(), 2);

    project.write("tutti.toml", format!("{FLAKY}retry = {{ max = 2, on = [\"sometimes\"] }}\n"));
    let bad = project.run(&["run", "p.js"]);
    assert_eq!(bad.code, 2, "{bad}");
    assert!(
        bad.stderr.contains("tutti.toml: [harness.flaky] retry:") && bad.stderr.contains("not a failure class"),
        "{bad}"
    );
}
