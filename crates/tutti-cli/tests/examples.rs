//! The example processes in `examples/` run to completion in a copy of that folder (its `tutti.toml` and
//! scripted agent included) and return what their comments promise; their journals account for every effect.

use serde_json::{Value, json};
use tutti_testkit::{Project, kind, of_kind, show};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

/// Run an example to its end; it must exit 0. Returns its output and its journal.
fn run_example(project: &Project, args: &[&str]) -> (Value, Vec<Value>) {
    let mut full = vec!["run"];
    full.extend_from_slice(args);
    let out = project.run(&full);
    assert_eq!(out.code, 0, "{out}");
    let run = out.run_id();
    assert!(out.stderr.contains(&format!("run {run} completed")), "{out}");
    let events = project.events(&run);
    assert_every_effect_resolved_once(&events);
    (out.json(), events)
}

/// Nothing lost: each requested effect was started (unless a breakpoint) and resolved exactly once, and the
/// run ended with run_completed.
fn assert_every_effect_resolved_once(events: &[Value]) {
    for requested in of_kind(events, "effect_requested") {
        let effect = &requested["event"]["effect"];
        let resolved =
            of_kind(events, "effect_resolved").into_iter().filter(|e| &e["event"]["effect"] == effect).count();
        assert_eq!(resolved, 1, "effect {effect} resolved {resolved} times:\n{}", show(events));
    }
    assert_eq!(events.last().map(kind), Some("run_completed"), "{}", show(events));
}

#[test]
fn sequential_chain_doubles_five_times() {
    let project = Project::with_examples(TUTTI);
    let (output, events) = run_example(&project, &["sequential.js"]);
    assert_eq!(output, json!({ "value": 32, "steps": 5 }));
    let logs: Vec<&str> = of_kind(&events, "log").iter().map(|e| e["event"]["message"].as_str().unwrap()).collect();
    assert_eq!(logs, ["step 1: 2", "step 2: 4", "step 3: 8", "step 4: 16", "step 5: 32"]);
}

#[test]
fn fanout_squares_twenty_four_items_at_most_six_at_once() {
    let project = Project::with_examples(TUTTI);
    let (output, events) = run_example(&project, &["fanout.js"]);
    assert_eq!(output, json!({ "count": 24, "sum": 4900 }));
    assert_eq!(of_kind(&events, "effect_started").len(), 24);
    let (mut running, mut most) = (0i32, 0i32);
    for e in &events {
        match kind(e) {
            "effect_started" => running += 1,
            "effect_resolved" => running -= 1,
            _ => continue,
        }
        most = most.max(running);
    }
    assert!(most <= 6, "{most} items ran at once, above maxConcurrency 6:\n{}", show(&events));
    assert!(most >= 2, "the fan-out never ran two items at once:\n{}", show(&events));
}

#[test]
fn interleaving_branches_each_run_their_own_chain() {
    let project = Project::with_examples(TUTTI);
    let (output, events) = run_example(&project, &["interleaving.js"]);
    assert_eq!(
        output,
        json!({
            "chains": [["a-0", "a-1", "a-2"], ["b-0", "b-1", "b-2"], ["c-0", "c-1", "c-2"]],
            "joined": "join-9",
        })
    );
    // Identities are per branch; the join is the root scope's first call.
    let requested: Vec<&str> =
        of_kind(&events, "effect_requested").iter().map(|e| e["event"]["effect"].as_str().unwrap()).collect();
    for branch in 0..3 {
        for stage in 0..3 {
            let id = format!("root/parallel:{branch}/{stage}");
            assert!(requested.contains(&id.as_str()), "{id} missing from {requested:?}");
        }
    }
    assert_eq!(requested.last(), Some(&"root/0"));
}

#[test]
fn breakpoint_approves_itself_when_non_interactive() {
    let project = Project::with_examples(TUTTI);
    let (output, events) = run_example(&project, &["breakpoint.js", "--non-interactive"]);
    assert_eq!(output["deployed"], true, "{output}");
    assert_eq!(output["output"], "deployed");
    let breakpoint = of_kind(&events, "effect_requested").into_iter().find(|e| e["event"]["kind"] == "breakpoint");
    assert!(breakpoint.is_some(), "no breakpoint in the journal:\n{}", show(&events));
}

#[test]
fn babysitter_process_runs_unchanged_on_the_scripted_agent() {
    let project = Project::with_examples(TUTTI);
    let (output, events) = run_example(&project, &["babysitter-review.js", "--non-interactive"]);
    assert_eq!(output["success"], true, "{output}");
    assert_eq!(output["approved"], true);
    assert_eq!(output["modules"], 3);
    assert_eq!(output["risks"], json!(["Analyze parser.risk", "Analyze scheduler.risk", "Analyze journal.risk"]));
    assert_eq!(output["summary"], "Summarize the review.summary");
    // The agent tasks went to the command harness that examples/tutti.toml configures.
    let harnesses: Vec<&Value> = of_kind(&events, "effect_started").iter().map(|e| &e["event"]["harness"]).collect();
    assert_eq!(harnesses, [&json!("scripted"); 4]);
}

/// Run an example whose fan-ins may cancel effects: each requested effect ends exactly once, resolved or
/// cancelled. Returns its output and its journal.
fn run_group_example(project: &Project, file: &str) -> (Value, Vec<Value>) {
    let out = project.run(&["run", file]);
    assert_eq!(out.code, 0, "{out}");
    let events = project.events(&out.run_id());
    for requested in of_kind(&events, "effect_requested") {
        let effect = &requested["event"]["effect"];
        let ends = events
            .iter()
            .filter(|e| matches!(kind(e), "effect_resolved" | "effect_cancelled") && &e["event"]["effect"] == effect)
            .count();
        assert_eq!(ends, 1, "effect {effect} ended {ends} times:\n{}", show(&events));
    }
    assert_eq!(events.last().map(kind), Some("run_completed"), "{}", show(&events));
    (out.json(), events)
}

#[test]
fn group_rounds_keep_each_member_on_its_harness() {
    let project = Project::with_examples(TUTTI);
    let (output, events) = run_group_example(&project, "group-rounds.js");
    let agents = json!(["scripted", "scripted-b", "scripted-c"]);
    assert_eq!(output, json!({ "round1": agents, "round2": agents }));
    assert_eq!(of_kind(&events, "group_opened").len(), 1);
}

#[test]
fn checkpointed_map_journals_partial_results_and_ends_early() {
    let project = Project::with_examples(TUTTI);
    let (output, events) = run_group_example(&project, "checkpointed-map.js");
    assert_eq!(output, json!({ "all": (1..=12).collect::<Vec<_>>(), "early": { "succeeded": 8, "cancelled": 4 } }));
    let checkpoints = of_kind(&events, "group_checkpoint");
    let completed: Vec<u64> = checkpoints.iter().map(|e| e["event"]["completed"].as_u64().unwrap()).collect();
    assert_eq!(completed, [5, 10], "{}", show(&events));
    assert!(of_kind(&events, "effect_cancelled").len() <= 4);
}

#[test]
fn coordinator_reassigns_every_failed_job() {
    let project = Project::with_examples(TUTTI);
    let (output, events) = run_group_example(&project, "coordinator.js");
    for job in 1..=6 {
        let line = output[job.to_string()].as_str().unwrap_or_else(|| panic!("job {job} missing: {output}"));
        assert!(line.starts_with(&format!("done-{job} by ")), "{output}");
    }
    // Odd jobs failed once and ran again.
    assert_eq!(of_kind(&events, "effect_requested").len(), 9, "{}", show(&events));
    assert_eq!(of_kind(&events, "group_closed").len(), 1);
}

#[test]
fn budget_fallback_gives_the_cheap_member_what_the_expensive_harness_has_no_room_for() {
    let project = Project::with_examples(TUTTI);
    let (output, events) = run_group_example(&project, "budget-fallback.js");
    let by = |who: &str| json!(who);
    assert_eq!(
        output,
        json!({ "parser.rs": by("senior"), "lexer.rs": by("senior"), "eval.rs": by("junior"), "gc.rs": by("junior"),
                "repl.rs": by("junior") }),
        "$0.40 a turn: two fit in $1.00, a third would not"
    );
    let refusals = of_kind(&events, "budget_exceeded");
    assert_eq!(refusals.len(), 3, "{}", show(&events));
    for r in &refusals {
        assert_eq!(
            (r["event"]["scope"].as_str(), r["event"]["action"].as_str()),
            (Some("harness pricey"), Some("refused"))
        );
    }
    let pricey: f64 = of_kind(&events, "effect_usage")
        .iter()
        .filter(|e| e["event"]["harness"] == "pricey")
        .filter_map(|e| e["event"]["usage"]["cost_usd"].as_f64())
        .sum();
    assert!((pricey - 0.8).abs() < 1e-9, "the expensive harness spent {pricey}, within its $1.00");
    let logs: Vec<&str> = of_kind(&events, "log").iter().filter_map(|e| e["event"]["message"].as_str()).collect();
    assert!(logs.iter().any(|l| l.starts_with("eval.rs: harness pricey has spent $0.80 of $1.00")), "{logs:?}");
    let status = project.run(&["status"]);
    assert!(status.stdout.contains("harness pricey") && status.stdout.contains("$0.80 of $1.00 (80%)"), "{status}");
}

#[test]
fn background_effects_overlap_and_races_cancel_the_loser() {
    let project = Project::with_examples(TUTTI);
    let (output, events) = run_group_example(&project, "background.js");
    assert_eq!(output, json!({ "foreground": ["lint", "test"], "background": "index", "mirror": "mirror-eu" }));
    let cancelled: Vec<&str> =
        of_kind(&events, "effect_cancelled").iter().map(|e| e["event"]["effect"].as_str().unwrap()).collect();
    assert_eq!(cancelled, ["root/4"], "the slow mirror is cancelled: {}", show(&events));
}

#[test]
fn fork_join_branches_read_the_parents_values() {
    let project = Project::with_examples(TUTTI);
    let (output, _) = run_group_example(&project, "fork-join.js");
    let built = json!(["alpha-built-with-stable", "beta-built-with-stable", "gamma-built-with-stable"]);
    assert_eq!(output, json!({ "branches": built, "members": built }));
}

#[test]
fn members_resume_their_own_sessions_even_across_a_restart() {
    let project = Project::with_examples(TUTTI);
    let driver = project.spawn(&["run", "sessions.js", "--inputs", r#"{"pause": true}"#]);
    let run = driver.run_id();
    project.wait_for_event(&run, "the pause between rounds", |e| e["event"]["kind"] == "breakpoint");
    driver.signal(libc::SIGINT);
    assert_eq!(driver.wait(std::time::Duration::from_secs(30)).code, 130);

    let out = project.run(&["resume", &run, "--non-interactive"]);
    assert_eq!(out.code, 0, "{out}");
    let output = out.json();
    assert_eq!(output["sameSession"], json!([true, true, true]), "{output}");
    assert_eq!(output["agents"], json!(["memory-a", "memory-b", "memory-c"]));
    for remembered in output["remembered"].as_array().unwrap() {
        assert_eq!(remembered, &json!(["Round 1: the retry policy"]), "{output}");
    }
    let events = project.events(&run);
    let bound = of_kind(&events, "member_bound");
    assert_eq!(bound.len(), 3, "one session per member across both rounds:\n{}", show(&events));
    let groups = project.run(&["groups", &run, "--json"]).json();
    for (i, m) in groups[0]["members"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            m["session"],
            bound.iter().find(|b| b["event"]["member"] == m["name"]).unwrap()["event"]["session"],
            "member {i}: {groups}"
        );
    }
}
