//! Distributed mode with real processes on a real PostgreSQL: `tutti worker` processes and one driver
//! (`tutti run --remote`). Work spreads over the workers; a worker killed with SIGKILL loses its claims,
//! which other workers take after its lease (journaled as re-dispatches) and the run completes with every
//! result once; a stalled worker's late result is refused; a draining worker finishes what it runs and takes
//! nothing new; `tutti workers` and `tutti status` show who runs what.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tutti_testkit::{DEADLINE, Output, Project, Spawned, of_kind, wait_for};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

/// A fan-out of shell tasks that sleep a little and print the worker they ran on; each appends its effect
/// and worker to `$LOG` (the side effect).
const FANOUT: &str = r#"
import { defineTask } from "tutti";
const t = defineTask("t", (a) => ({
  kind: "shell",
  title: `t${a.i}`,
  shell: { command: `sleep ${a.nap}; echo "$TUTTI_EFFECT_ID $TUTTI_WORKER" >> "$LOG"; echo $TUTTI_WORKER` },
}));
export async function process(inputs, ctx) {
  const items = Array.from({ length: inputs.n }, (_, i) => i);
  const out = await ctx.parallel.map(items, (i) => ctx.task(t, { i, nap: inputs.nap }));
  return out.map((r) => r.stdout.trim());
}
"#;

struct Cluster {
    url: String,
    driver: Project,
    log: std::path::PathBuf,
}

impl Cluster {
    fn new(tag: &str) -> Self {
        let driver = Project::new(TUTTI);
        driver.write("fan.js", FANOUT);
        let log = driver.path("side-effects.log");
        Self { url: tutti_testkit::postgres::schema_url(tag), driver, log }
    }

    /// `tutti worker` in a folder of its own.
    fn worker(&self, folder: &Project, id: &str, capacity: u32, lease: &str) -> Spawned {
        let mut command = folder.tutti();
        command.arg("--store").arg(&self.url).args(["worker", "--id", id, "--lease", lease]);
        command.args(["--capacity", &capacity.to_string()]).env("LOG", &self.log);
        folder.spawn_command(command)
    }

    fn run(&self, n: usize, nap: &str) -> Spawned {
        let mut command = self.driver.tutti();
        command.arg("--store").arg(&self.url);
        command.args(["run", "fan.js", "--remote", "--max-parallel", "1000"]);
        command.arg("--inputs").arg(format!(r#"{{"n":{n},"nap":{nap}}}"#));
        self.driver.spawn_command(command)
    }

    fn tutti(&self, args: &[&str]) -> Output {
        let mut command = self.driver.tutti();
        command.arg("--store").arg(&self.url).args(args);
        self.driver.spawn_command(command).wait(DEADLINE)
    }

    fn events(&self, run: &str) -> Vec<Value> {
        self.try_events(run).unwrap_or_else(|out| panic!("tutti events {run} --json failed:\n{out}"))
    }

    /// [`Cluster::events`], or how `tutti events` failed (the run is not journaled yet, while it starts).
    fn try_events(&self, run: &str) -> Result<Vec<Value>, Output> {
        tutti_testkit::events_in(self.tutti(&["events", run, "--json"]))
    }

    /// Lines of the side-effect log: (effect, worker).
    fn side_effects(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter_map(|l| l.split_once(' ').map(|(e, w)| (e.to_string(), w.to_string()))).collect()
    }
}

fn field<'a>(e: &'a Value, key: &str) -> &'a str {
    e["event"][key].as_str().unwrap_or("")
}

#[test]
fn three_workers_share_a_fan_out_and_one_killed_mid_run_loses_its_work_to_the_others() {
    let c = Cluster::new("dist_kill");
    let folders: Vec<Project> = (0..3).map(|_| Project::new(TUTTI)).collect();
    let mut workers: Vec<Spawned> =
        folders.iter().enumerate().map(|(i, f)| c.worker(f, &format!("w{i}"), 4, "2")).collect();
    wait_for(DEADLINE, "three workers registered", || c.tutti(&["workers", "--json"]).stdout.lines().count() == 3);
    let driver = c.run(300, "0.1");
    let run = driver.run_id();
    // Kill w1 two thirds of the way through its share, while it holds claims.
    wait_for(DEADLINE, "w1 to complete its share", || c.side_effects().iter().filter(|(_, w)| w == "w1").count() >= 68);
    workers[1].signal(libc::SIGKILL);
    let out = driver.wait(Duration::from_secs(120));
    assert_eq!(out.code, 0, "{out}");
    let results: Vec<String> = serde_json::from_value(out.json()).expect("a list of worker ids");
    assert_eq!(results.len(), 300);

    let mut share: BTreeMap<&str, usize> = BTreeMap::new();
    for w in &results {
        *share.entry(w.as_str()).or_default() += 1;
    }
    for w in ["w0", "w1", "w2"] {
        assert!(share.get(w).copied().unwrap_or(0) >= 60, "each worker gets at least 20% of 300: {share:?}");
    }

    let evs = c.events(&run);
    assert_eq!(of_kind(&evs, "effect_resolved").len(), 300, "every effect resolved exactly once");
    let resolved: std::collections::BTreeSet<&str> =
        of_kind(&evs, "effect_resolved").iter().map(|e| field(e, "effect")).collect();
    assert_eq!(resolved.len(), 300, "no effect's result was accepted twice");
    let redispatched: Vec<&Value> =
        of_kind(&evs, "effect_claimed").into_iter().filter(|e| e["event"]["previous"] == "w1").collect();
    assert!(!redispatched.is_empty(), "w1's claims were taken over after its lease, and journaled");
    for e in &redispatched {
        assert!(e["event"]["claim"].as_u64().unwrap() >= 2, "{e}");
        assert_ne!(field(e, "worker"), "w1");
    }
    // The effect's result is the last claimant's, never the dead worker's.
    for e in &redispatched {
        let effect = field(e, "effect");
        let index: usize = effect.rsplit(':').next().unwrap().split('/').next().unwrap().parse().unwrap();
        assert_ne!(results[index], "w1", "{effect} was re-dispatched, yet w1's result was accepted");
    }
    // `tutti status` says which worker ran each effect.
    let status = c.tutti(&["status", &run, "--json"]).json();
    let by_worker = status["workers"].as_object().expect("workers in status");
    assert_eq!(by_worker.values().map(|n| n.as_u64().unwrap()).sum::<u64>(), 300, "{status}");
    assert_eq!(by_worker["w0"].as_u64(), share.get("w0").map(|n| *n as u64), "{status}");
    let text = c.tutti(&["status", &run]);
    assert!(text.stdout.contains("workers  w0 "), "{text}");
    drop(workers.remove(1));
}

#[test]
fn a_stalled_workers_late_result_is_not_accepted_and_the_other_workers_counts() {
    let c = Cluster::new("dist_stale");
    let (fa, fb) = (Project::new(TUTTI), Project::new(TUTTI));
    let a = c.worker(&fa, "a", 1, "1");
    wait_for(DEADLINE, "a registered", || c.tutti(&["workers", "--json"]).stdout.lines().count() == 1);
    let driver = c.run(1, "1.5");
    let run = driver.run_id();
    wait_for(DEADLINE, "a to claim the task", || a.stderr().contains("claimed root/parallel:0/0"));
    // a stalls (as a machine that froze); its lease runs out and b takes the task over.
    a.signal(libc::SIGSTOP);
    let b = c.worker(&fb, "b", 1, "1");
    let out = driver.wait(DEADLINE);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), serde_json::json!(["b"]));
    a.signal(libc::SIGCONT);
    // Whichever a notices first once it wakes: the queue refuses its result (the token moved on), or its
    // heartbeat finds the claim taken over and it stops the attempt. Either way its result is not accepted.
    wait_for(DEADLINE, "a to learn it lost the task", || {
        let log = a.stderr();
        log.contains("result of root/parallel:0/0 of run") && log.contains("refused") || log.contains("was taken over")
    });
    let evs = c.events(&run);
    assert_eq!(of_kind(&evs, "effect_resolved").len(), 1);
    let claims: Vec<(&str, &str)> =
        of_kind(&evs, "effect_claimed").iter().map(|e| (field(e, "worker"), field(e, "previous"))).collect();
    assert_eq!(claims, [("a", ""), ("b", "a")]);
    drop(b);
}

#[test]
fn a_draining_worker_finishes_its_attempts_and_claims_nothing_new() {
    let c = Cluster::new("dist_drain");
    let (fa, fb) = (Project::new(TUTTI), Project::new(TUTTI));
    let a = c.worker(&fa, "a", 2, "5");
    wait_for(DEADLINE, "a registered", || c.tutti(&["workers", "--json"]).stdout.lines().count() == 1);
    let driver = c.run(6, "0.6");
    let run = driver.run_id();
    wait_for(DEADLINE, "a to run two tasks", || a.stderr().matches("claimed").count() == 2);
    a.signal(libc::SIGTERM);
    let a_out = a.wait(DEADLINE);
    assert_eq!(a_out.code, 0, "a drains and exits cleanly: {a_out}");
    assert!(a_out.stderr.contains("draining"), "{a_out}");
    assert_eq!(a_out.stderr.matches("claimed").count(), 2, "nothing new after SIGTERM: {a_out}");
    assert_eq!(a_out.stderr.matches(" done ").count(), 2, "both finished: {a_out}");
    assert_eq!(c.tutti(&["workers", "--json"]).stdout.lines().count(), 0, "a left the registry");
    let _b = c.worker(&fb, "b", 4, "5");
    let out = driver.wait(DEADLINE);
    assert_eq!(out.code, 0, "{out}");
    let ran: Vec<String> = serde_json::from_value(out.json()).unwrap();
    assert_eq!(ran.iter().filter(|w| *w == "a").count(), 2, "{ran:?}");
    assert_eq!(ran.iter().filter(|w| *w == "b").count(), 4, "{ran:?}");
    assert!(of_kind(&c.events(&run), "effect_claimed").iter().all(|e| e["event"]["previous"].is_null()));
}

#[test]
fn distributed_mode_needs_postgres_and_names_unknown_harnesses() {
    let p = Project::new(TUTTI);
    p.write("fan.js", FANOUT);
    let out = p.run(&["worker"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("tutti worker needs the journal in PostgreSQL"), "{out}");
    let out = p.run(&["run", "fan.js", "--remote", "--inputs", r#"{"n":1,"nap":0}"#]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("--remote needs the journal in PostgreSQL"), "{out}");
    let url = tutti_testkit::postgres::schema_url("dist_bad");
    let mut command = p.tutti();
    command.arg("--store").arg(&url).args(["worker", "--harness", "shell,claudia"]);
    let out = p.spawn_command(command).wait(DEADLINE);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("--harness claudia: this folder has no such harness"), "{out}");
}

/// The session of a member, by member, and the worker of each of its turns, from the journal.
fn turns_by_member(evs: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in of_kind(evs, "effect_claimed") {
        let effect = field(e, "effect");
        // group:panel/ann/0 → ann
        let member = effect.split('/').nth(1).unwrap_or_default().to_string();
        by.entry(member).or_default().push(field(e, "worker").to_string());
    }
    by
}

/// `examples/sessions.js` (3 members, 2 rounds, each round resuming the member's session) with the
/// examples' session agent in each worker's folder, where it keeps its sessions.
fn sessions_run(c: &Cluster, driver: &Project, pause: bool) -> Spawned {
    let mut command = driver.tutti();
    command.arg("--store").arg(&c.url).args(["run", "sessions.js", "--remote"]);
    if pause {
        command.args(["--inputs", r#"{"pause":true}"#]);
    } else {
        command.arg("--non-interactive");
    }
    driver.spawn_command(command)
}

#[test]
fn each_members_next_round_runs_on_the_worker_that_holds_its_session() {
    let c = Cluster::new("dist_affinity");
    let driver = Project::with_examples(TUTTI);
    let (fa, fb) = (Project::with_examples(TUTTI), Project::with_examples(TUTTI));
    let (_a, _b) = (c.worker(&fa, "a", 2, "5"), c.worker(&fb, "b", 2, "5"));
    wait_for(DEADLINE, "two workers", || c.tutti(&["workers", "--json"]).stdout.lines().count() == 2);
    let out = sessions_run(&c, &driver, false).wait(DEADLINE);
    assert_eq!(out.code, 0, "{out}");
    let result = out.json();
    assert_eq!(result["sameSession"], serde_json::json!([true, true, true]), "{result}");
    for remembered in result["remembered"].as_array().unwrap() {
        assert_eq!(remembered.as_array().map(Vec::len), Some(1), "round 2 remembers round 1: {result}");
    }
    let turns = turns_by_member(&c.events(&out.run_id()));
    assert_eq!(turns.len(), 3, "{turns:?}");
    let first: std::collections::BTreeSet<&String> = turns.values().map(|t| &t[0]).collect();
    assert_eq!(first.len(), 2, "round 1 spread the sessions over both workers: {turns:?}");
    for (member, workers) in &turns {
        assert_eq!(workers.len(), 2, "{member}: {workers:?}");
        assert_eq!(workers[0], workers[1], "{member}'s round 2 ran where its session lives: {turns:?}");
    }
}

#[test]
fn a_members_turn_whose_worker_is_gone_starts_a_fresh_session_elsewhere_and_says_so() {
    let c = Cluster::new("dist_gone");
    let driver = Project::with_examples(TUTTI);
    let (fa, fb) = (Project::with_examples(TUTTI), Project::with_examples(TUTTI));
    let a = c.worker(&fa, "a", 3, "1");
    wait_for(DEADLINE, "a registered", || c.tutti(&["workers", "--json"]).stdout.lines().count() == 1);
    let run = sessions_run(&c, &driver, true);
    let id = run.run_id();
    let mut breakpoint = String::new();
    wait_for(DEADLINE, "round 1 done and the breakpoint asked", || {
        let evs = c.try_events(&id).unwrap_or_default();
        let asked = evs.iter().find(|e| e["event"]["type"] == "effect_requested" && e["event"]["kind"] == "breakpoint");
        breakpoint = asked.map(|e| field(e, "effect").to_string()).unwrap_or_default();
        of_kind(&evs, "effect_resolved").len() == 3 && !breakpoint.is_empty()
    });
    // a holds all three sessions; it dies, b comes, and the run goes on to round 2.
    a.signal(libc::SIGKILL);
    let _b = c.worker(&fb, "b", 3, "1");
    let approve = c.tutti(&["approve", &id, &breakpoint]);
    assert_eq!(approve.code, 0, "{approve}");
    let out = run.wait(DEADLINE);
    assert_eq!(out.code, 0, "{out}");
    let result = out.json();
    assert_eq!(result["sameSession"], serde_json::json!([false, false, false]), "{result}");
    let evs = c.events(&id);
    let notes: Vec<&Value> = of_kind(&evs, "log")
        .into_iter()
        .filter(|e| field(e, "message").contains("lived on worker a, which is gone"))
        .collect();
    assert_eq!(notes.len(), 3, "each member's fresh start is journaled");
    for workers in turns_by_member(&evs).values() {
        assert_eq!(workers, &["a", "b"]);
    }
}

/// Run `query` on the test server with psql; its output.
fn sql(query: &str) -> String {
    let out = std::process::Command::new("psql")
        .arg(tutti_testkit::postgres::server_url())
        .args(["-tAc", query])
        .output()
        .expect("run psql");
    assert!(out.status.success(), "psql {query}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_worker_and_a_driver_that_lose_their_connections_connect_again_and_finish() {
    let mut c = Cluster::new("dist_reconnect");
    let tag = std::process::id();
    let base = c.url.clone();
    c.url = format!("{base}&application_name=wk_{tag}");
    let fa = Project::new(TUTTI);
    let a = c.worker(&fa, "a", 4, "10");
    wait_for(DEADLINE, "a registered", || c.tutti(&["workers", "--json"]).stdout.lines().count() == 1);
    c.url = format!("{base}&application_name=drv_{tag}");
    let driver = c.run(12, "0.3");
    let run = driver.run_id();
    wait_for(DEADLINE, "the first results", || c.side_effects().len() >= 2);
    // Cut every connection of the worker, and the driver's watch on the queue (not its journal).
    let cut = sql(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'wk_{tag}'
         OR (application_name = 'drv_{tag}' AND (query LIKE 'LISTEN \"tutti_work_%' OR query LIKE 'SELECT id, state, worker%'))"
    ));
    assert!(cut.trim().parse::<u32>().unwrap() >= 3, "the worker's two connections and the driver's watch: {cut}");
    let out = driver.wait(Duration::from_secs(60));
    assert_eq!(out.code, 0, "{out}");
    let ran: Vec<String> = serde_json::from_value(out.json()).unwrap();
    assert_eq!(ran, vec!["a".to_string(); 12]);
    assert_eq!(of_kind(&c.events(&run), "effect_resolved").len(), 12);
    let log = a.stderr();
    assert!(log.contains("lost the journal") && log.contains("connected again"), "{log}");
}
