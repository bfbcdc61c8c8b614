//! Reading runs back: `tutti status`, `tutti ls` and `tutti events`, as text and as JSON, by full run id or
//! by a unique prefix of one.

use serde_json::json;
use tutti_testkit::{DEADLINE, Output, Project, kind};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

/// A project with one finished run of `sequential.js`; returns its run id.
fn finished_sequential(project: &Project) -> String {
    let out = project.run(&["run", "sequential.js", "--inputs", r#"{"start": 3, "steps": 2}"#]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), json!({ "value": 12, "steps": 2 }));
    out.run_id()
}

#[test]
fn status_reports_a_finished_run_as_json_and_text() {
    let project = Project::with_examples(TUTTI);
    let run = finished_sequential(&project);

    let status = project.status(&run);
    assert_eq!(status["runId"], run.as_str());
    assert_eq!(status["status"], "completed");
    assert_eq!(status["driverLive"], false);
    assert_eq!(status["effects"], json!({ "ok": 2 }));
    assert_eq!(status["output"], json!({ "value": 12, "steps": 2 }));
    assert_eq!(status["error"], serde_json::Value::Null);
    assert!(status["process"].as_str().unwrap().ends_with("sequential.js"), "{status}");
    assert_eq!(status["events"].as_u64().unwrap() as usize, project.events(&run).len());

    let text = project.run(&["status", &run]);
    assert_eq!(text.code, 0, "{text}");
    assert!(text.stdout.contains(&run) && text.stdout.contains("completed"), "{text}");

    // Without a run id: the latest run.
    let latest = project.run(&["status", "--json"]);
    assert_eq!(latest.code, 0, "{latest}");
    assert_eq!(latest.json()["runId"], run.as_str());
}

#[test]
fn ls_lists_every_run_oldest_first() {
    let project = Project::with_examples(TUTTI);
    let empty = project.run(&["ls"]);
    assert_eq!(empty.code, 0, "{empty}");
    assert!(empty.stderr.contains("no runs yet"), "{empty}");

    let first = finished_sequential(&project);
    let second = finished_sequential(&project);
    let runs = project.runs();
    let ids: Vec<&str> = runs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
    for r in &runs {
        assert_eq!(r["status"], "completed", "{r}");
        assert!(r["process"].as_str().unwrap().ends_with("sequential.js"), "{r}");
    }

    let text = project.run(&["ls"]);
    assert_eq!(text.code, 0, "{text}");
    assert!(text.stdout.contains(&first) && text.stdout.contains(&second), "{text}");
}

#[test]
fn events_print_the_journal_in_order_as_text_and_json() {
    let project = Project::with_examples(TUTTI);
    let run = finished_sequential(&project);

    let events = project.events(&run);
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>(), "seq counts up from 1");
    assert!(events.iter().all(|e| e["ts_ms"].is_i64()), "every event has a time");
    assert_eq!(events.first().map(kind), Some("run_created"));
    assert_eq!(events.last().map(kind), Some("run_completed"));
    assert_eq!(events[0]["event"]["inputs"], json!({ "inline": { "start": 3, "steps": 2 } }));

    let text = project.run(&["events", &run]);
    assert_eq!(text.code, 0, "{text}");
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), events.len(), "{text}");
    assert!(lines[0].contains("run_created"), "{text}");
    assert!(text.stdout.contains("root/0 shell task=step \"step 1\""), "{text}");
    assert!(lines.last().unwrap().contains("run_completed"), "{text}");
}

#[test]
fn run_ids_may_be_given_by_unique_prefix_in_any_case() {
    let project = Project::with_examples(TUTTI);
    let first = finished_sequential(&project);
    let second = finished_sequential(&project);

    // ULIDs made in the same second share their leading time digits; 20 characters are unique.
    for prefix in [first[..20].to_string(), first[..20].to_ascii_lowercase()] {
        let status = project.run(&["status", &prefix, "--json"]);
        assert_eq!(status.code, 0, "{status}");
        assert_eq!(status.json()["runId"], first.as_str());
        let events = project.run(&["events", &prefix, "--json"]);
        assert_eq!(events.code, 0, "{events}");
        assert_eq!(events.stdout, project.run(&["events", &first, "--json"]).stdout);
    }

    let common: String = first.chars().zip(second.chars()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect();
    let ambiguous = project.run(&["status", &common]);
    expect_usage_error(&ambiguous, "ambiguous");
    assert!(ambiguous.stderr.contains(&first) && ambiguous.stderr.contains(&second), "{ambiguous}");

    expect_usage_error(&project.run(&["status", "ZZZZ"]), "ZZZZ not found");
    expect_usage_error(&project.run(&["events", "ZZZZ"]), "ZZZZ not found");
}

#[test]
fn events_follow_streams_a_live_run_until_it_ends() {
    let project = Project::with_examples(TUTTI);
    let driver = project.spawn(&["run", "breakpoint.js"]);
    let run = driver.run_id();
    let breakpoint = project.wait_for_event(&run, "breakpoint request", |e| e["event"]["kind"] == "breakpoint");
    let follower = project.spawn(&["events", &run, "--follow", "--json"]);

    let approve = project.run(&["approve", &run, breakpoint["event"]["effect"].as_str().unwrap()]);
    assert_eq!(approve.code, 0, "{approve}");
    assert_eq!(driver.wait(DEADLINE).code, 0);

    let followed = follower.wait(DEADLINE);
    assert_eq!(followed.code, 0, "--follow ends with the run:\n{followed}");
    let lines: Vec<serde_json::Value> = followed.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines, project.events(&run), "--follow printed the whole journal, each event once");
    assert_eq!(lines.last().map(kind), Some("run_completed"));
}

fn expect_usage_error(out: &Output, needle: &str) {
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains(needle), "expected {needle:?} on stderr:\n{out}");
}
