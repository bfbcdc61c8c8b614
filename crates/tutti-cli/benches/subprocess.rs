//! Benchmarks with real subprocess harnesses (SPEC §11): a group fan-out of 1,000 agent members that each
//! sleep about a second (orchestrator peak RSS and CPU while they wait), and the hand-off latency from one
//! harness process exiting to the dependent effect's process starting.
//!
//! `cargo bench -p tutti-cli --bench subprocess [-- --quick]`
#![expect(clippy::print_stdout, reason = "a benchmark prints its report")]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;
use tutti_engine::{Driver, Harnesses, NewRun, Observer, Options, Progress};
use tutti_harness::{CommandConfig, CommandHarness, ShellHarness};
use tutti_journal::{RunStatus, SqliteStore, Writer};
use tutti_js::JsHost;

use common::{cpu_time, peak_rss_mb, reset_peak_rss};

const MEMBERS: &str = r#"
import { defineTask } from "tutti";
export const nap = defineTask("nap", (a) => ({ kind: "agent", title: `member ${a.i}`, agent: { prompt: "sleep" } }));
export async function process(inputs, ctx) {
  const pool = ctx.group("pool", { members: inputs.n, harness: "sleeper" });
  const items = Array.from({ length: inputs.n }, (_, i) => i);
  const out = await pool.map(items, (i, m) => m.task(nap, { i }), { concurrency: inputs.n });
  return out.length;
}
"#;

const HANDOFF: &str = r#"
import { defineTask } from "tutti";
export const step = defineTask("step", (a) => ({ kind: "shell", shell: { command: `date +%s%N >> stamps; echo ${a.i}` } }));
export async function process(inputs, ctx) {
  for (let i = 0; i < inputs.n; i++) await ctx.task(step, { i });
  return inputs.n;
}
"#;

/// Samples the orchestrator's CPU between the moment every member runs and the first one finishing.
#[derive(Default)]
struct Waiting {
    n: usize,
    started: usize,
    all_started: Option<(Instant, Duration)>,
    first_done: Option<(Instant, Duration)>,
}

impl Observer for Waiting {
    fn progress(&mut self, event: Progress) {
        match event {
            Progress::Started { .. } => {
                self.started += 1;
                if self.started == self.n {
                    self.all_started = Some((Instant::now(), cpu_time()));
                }
            }
            Progress::Finished { .. } if self.first_done.is_none() && self.all_started.is_some() => {
                self.first_done = Some((Instant::now(), cpu_time()));
            }
            _ => {}
        }
    }
}

fn drive(
    dir: &Path,
    source: &str,
    inputs: serde_json::Value,
    sleep_s: u32,
    observer: &mut dyn Observer,
) -> Result<Duration> {
    let process = dir.join("p.js");
    std::fs::write(&process, source)?;
    let db = dir.join(".tutti/tutti.db");
    let mut host = JsHost::load(&process)?;
    let writer = Writer::spawn(Box::new(SqliteStore::open(&db)?))?;
    let store = Box::new(SqliteStore::open(&db)?);
    let mut harnesses = Harnesses::new();
    harnesses.add(Arc::new(ShellHarness::new()));
    let script = format!("cat > /dev/null; sleep {sleep_s}; echo '{{}}'");
    let sleeper: CommandConfig = serde_json::from_value(json!({ "command": ["sh", "-c", script] }))?;
    harnesses.add(Arc::new(CommandHarness::new("sleeper", sleeper)?));
    let opts = Options {
        run_id: ulid::Ulid::new().to_string(),
        workdir: dir.to_path_buf(),
        max_parallel: 100_000,
        non_interactive: true,
        simulate: false,
        until_blocked: false,
        holder: tutti_engine::Platform::lease_holder(&tutti_harness::LinuxPlatform),
        platform: std::sync::Arc::new(tutti_harness::LinuxPlatform),
        faults: tutti_engine::driver::Faults::default(),
        agent_env: Vec::new(),
        msg_secret: String::new(),
        detach_reason: || "interrupted",
        prices: tutti_engine::prices::Prices::default(),
    };
    let new = NewRun {
        process: process.display().to_string(),
        inputs,
        code_hash: host.code_hash(),
        modules: host.modules().to_vec(),
        options: json!({}),
    };
    let start = Instant::now();
    let driver = Driver::new(opts, writer, store, harnesses, &mut host, observer, Arc::new(AtomicBool::new(false)));
    let end = driver.create(new)?;
    if end.status != RunStatus::Completed {
        bail!("run ended {:?}: {:?}", end.status, end.error);
    }
    Ok(start.elapsed())
}

/// `n` members sleeping `sleep_s` seconds each, all at once.
fn members(n: usize, sleep_s: u32) -> Result<()> {
    let dir = tempfile::tempdir_in(std::env::current_dir()?)?;
    reset_peak_rss();
    let cpu0 = cpu_time();
    let mut waiting = Waiting { n, ..Waiting::default() };
    let wall = drive(dir.path(), MEMBERS, json!({ "n": n }), sleep_s, &mut waiting)?;
    let cpu = cpu_time() - cpu0;
    let idle = match (waiting.all_started, waiting.first_done) {
        (Some((t0, c0)), Some((t1, c1))) => {
            let share = (c1 - c0).as_secs_f64() / (t1 - t0).as_secs_f64().max(1e-9);
            format!("{:.1} % of one core over {:.0} ms", share * 100.0, (t1 - t0).as_secs_f64() * 1000.0)
        }
        _ => "not measured (a member finished before the last one started)".into(),
    };
    println!(
        "members  n={n:<5} sleep {sleep_s} s  wall {:>7.0} ms  peak RSS {:>6.1} MB  CPU {:>6.0} ms  CPU while all {n} wait: {idle}",
        wall.as_secs_f64() * 1000.0,
        peak_rss_mb(),
        cpu.as_secs_f64() * 1000.0
    );
    Ok(())
}

fn handoff(n: usize) -> Result<()> {
    let dir = tempfile::tempdir_in(std::env::current_dir()?)?;
    let wall = drive(dir.path(), HANDOFF, json!({ "n": n }), 0, &mut tutti_engine::Silent)?;
    let stamps: Vec<i128> =
        std::fs::read_to_string(dir.path().join("stamps"))?.lines().filter_map(|l| l.parse().ok()).collect();
    // Each step stamps when its process runs; the gap between consecutive stamps is one whole hand-off:
    // process exit, the driver noticing, the commit, and the next process starting (plus `date` itself).
    let mut gaps: Vec<f64> = stamps.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e6).collect();
    gaps.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| gaps[((gaps.len() - 1) as f64 * p) as usize];
    let mut hist = BTreeMap::new();
    for g in &gaps {
        *hist.entry(g.ceil() as u64).or_insert(0) += 1;
    }
    println!(
        "handoff  n={n:<5} wall {:>7.0} ms  step-to-step median {:.2} ms  p90 {:.2} ms  max {:.2} ms",
        wall.as_secs_f64() * 1000.0,
        pct(0.5),
        pct(0.9),
        gaps[gaps.len() - 1]
    );
    Ok(())
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    println!("tutti subprocess bench: {} cores", std::thread::available_parallelism().map_or(1, |n| n.get()));
    handoff(if quick { 20 } else { 200 })?;
    // ~1 s each, as an agent fan-out; then 5 s each, to see the orchestrator idle while all of them run.
    members(if quick { 50 } else { 1000 }, 1)?;
    if !quick {
        members(1000, 5)?;
    }
    Ok(())
}
