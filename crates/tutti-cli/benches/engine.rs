//! Engine benchmarks for the performance targets of SPEC §11, driving the engine in process exactly as
//! `tutti run` / `tutti resume` do (QuickJS host, SQLite journal on disk behind the group-commit writer, the
//! real dispatcher), with the in-process harnesses standing in for agents.
//!
//! ```text
//! cargo bench -p tutti-cli --bench engine              # full sizes (about 30 s on 2 cores)
//! cargo bench -p tutti-cli --bench engine -- --quick   # sizes / 10, a smoke test
//! cargo bench -p tutti-cli --bench engine -- --only chain,fanout --repeat 5
//! cargo bench -p tutti-cli --bench engine -- --only host-scaling
//! ```
//!
//! Scenarios (each on a fresh journal in a temp dir on the same disk as the project):
//! - `chain`: a sequential chain of N echo effects, each depending on the previous one's result. Echo is
//!   pure, so the engine commits only when its buffer fills or it goes idle (SPEC §11 target ≤ 2 s).
//! - `chain-durable`: the same chain on an in-process no-op harness that is *not* pure, so the driver must
//!   commit (fsync) the request before every start: the cost a real subprocess chain pays per step.
//! - `fanout`: `ctx.parallel.map` over N echo effects (target ≥ 20,000 effects/s).
//! - `shell-chain`: N/10 sequential real `sh -c 'echo I'` steps through the real shell harness: step time and
//!   hand-off p50/p99, commits per step, tutti's own CPU per step (target ≤ 1.2 ms and ≤ 0.4 ms).
//! - `fanout-budget`: the fan-out under a run budget that is never reached: the cost of checking and
//!   journaling a budget before every start.
//! - `fanout-limited`: the fan-out through a pure harness with `max_parallel = 4`, at N/2 and N (no target:
//!   it shows how the driver walks its queue of effects waiting for a harness slot).
//! - `breakdown`: the JS host alone (start + deliver, no driver, no journal) and the journal alone (read and
//!   re-append a chain's events), to tell where a run's time goes.
//! - `resume` (`resume-chain`, `resume-fanout`): a ≥ 100,000-event run left waiting on a breakpoint and
//!   detached, then resumed by a fresh host and store: time to replay completion (`Progress::Attached`, right
//!   after `driver_attached` with `resumed: true` is recorded) and to the first new dispatch (target ≤ 1 s).
//! - `host-scaling` (only when named): the JS host's cost per effect at 1k to 40k effects.
//!
//! `TUTTI_BENCH_PERF_CTL=FIFO` with `perf record --control fifo:FIFO -D -1` profiles only the resumes.
//!
//! Wall time is `Instant`; CPU is `getrusage(RUSAGE_SELF)` (all threads, so it includes the journal writer);
//! peak RSS is `VmHWM`, reset before each scenario through `/proc/self/clear_refs`; commits are the writer's
//! transactions (`WriterHandle::commits`), each one fsync of the WAL under `synchronous=FULL`.

#![expect(clippy::print_stdout, reason = "a benchmark prints its report")]

mod common;

/// The allocator of the `tutti` binary (`src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tutti_engine::{
    Changes, Driver, Harness, Harnesses, HostEvent, Job, NewRun, Observer, Options, ProcessHost, Progress, Reporter,
    RunEnd, Running,
};
use tutti_harness::EchoHarness;
use tutti_journal::{EventLog, NewEvent, RunStatus, SqliteStore, Store, Writer, WriterHandle};
use tutti_js::JsHost;

use common::{cpu_time, peak_rss_mb, reset_peak_rss};

// ---- the process file ----

const PROCESS: &str = r#"
import { defineTask } from "tutti";

// Agent tasks with no harness named go to the run's default agent harness: `echo` here.
export const noop = defineTask("noop", () => ({ kind: "agent" }));
// Routed to the bench's impure in-process no-op harness: the driver commits before each start.
export const durable = defineTask("durable", () => ({ kind: "agent", harness: "durable" }));
// Routed to a pure no-op harness that runs at most 4 jobs at once (`max_parallel` in tutti.toml).
export const limited = defineTask("limited", () => ({ kind: "agent", harness: "limited" }));
// A real subprocess: `sh -c 'echo I'`.
export const shell = defineTask("shell", (a) => ({ kind: "shell", shell: { command: `echo ${a.i}` } }));

export async function process(inputs, ctx) {
  const n = inputs.n;
  const task = inputs.shell ? shell : inputs.durable ? durable : inputs.limited ? limited : noop;
  let last = null;
  if (inputs.mode === "chain") {
    let v = { i: -1 };
    for (let i = 0; i < n; i++) v = await ctx.task(task, { i, prev: v.i });
    last = v.i;
  } else {
    const items = Array.from({ length: n }, (_, i) => i);
    const out = await ctx.parallel.map(items, (i) => ctx.task(task, { i }));
    last = out.length;
  }
  if (inputs.thenWait) {
    // The run stops here until approved; then one more effect, the first new dispatch after a resume.
    await ctx.breakpoint({ question: "go on?" });
    const after = await ctx.task(durable, { after: last });
    return { last, after };
  }
  return { last };
}
"#;

// ---- an impure in-process no-op harness ----

/// Resolves each job with its args at once, like echo, but claims to touch the outside world, so the driver
/// commits the journal before every start (the output-commit rule for subprocesses).
struct Durable;

struct Done;

impl Running for Done {
    fn pid(&self) -> Option<u32> {
        None
    }
    fn cancel(&mut self) {}
}

impl Harness for Durable {
    fn name(&self) -> &str {
        "durable"
    }
    fn start(&self, job: Job, reporter: Reporter) -> Result<Box<dyn Running>, tutti_engine::harness::Error> {
        reporter.finish(Ok(job.args));
        Ok(Box::new(Done))
    }
}

/// Echo with a per-harness limit of 4 running jobs.
struct Limited;

impl Harness for Limited {
    fn name(&self) -> &str {
        "limited"
    }
    fn is_pure(&self) -> bool {
        true
    }
    fn max_parallel(&self) -> Option<usize> {
        Some(4)
    }
    fn start(&self, job: Job, reporter: Reporter) -> Result<Box<dyn Running>, tutti_engine::harness::Error> {
        reporter.finish(Ok(job.args));
        Ok(Box::new(Done))
    }
}

fn harnesses() -> Harnesses {
    let mut h = Harnesses::new();
    h.add(Arc::new(EchoHarness::new()));
    h.add(Arc::new(tutti_harness::ShellHarness::new()));
    h.add(Arc::new(Durable));
    h.add(Arc::new(Limited));
    h.set_default_agent(Some("echo".into()));
    h
}

// ---- an observer that timestamps the moments we measure ----

#[derive(Default)]
struct Clock {
    attached: Option<Instant>,
    replayed: usize,
    first_start_after_attach: Option<Instant>,
    /// Set when the process blocks on a breakpoint: asks the driver to detach.
    detach_on_wait: Option<Arc<AtomicBool>>,
    /// When each attempt started and each effect finished, in order (for the step latencies of a chain).
    starts: Vec<Instant>,
    finishes: Vec<Instant>,
}

impl Observer for Clock {
    fn progress(&mut self, event: Progress) {
        match event {
            Progress::Attached { replayed, .. } => {
                self.attached = Some(Instant::now());
                self.replayed = replayed;
            }
            Progress::Started { .. } => {
                let now = Instant::now();
                if self.attached.is_some() && self.first_start_after_attach.is_none() {
                    self.first_start_after_attach = Some(now);
                }
                self.starts.push(now);
            }
            Progress::Finished { .. } => self.finishes.push(Instant::now()),
            Progress::Waiting { .. } => {
                if let Some(flag) = &self.detach_on_wait {
                    flag.store(true, Ordering::SeqCst);
                }
            }
            _ => {}
        }
    }
}

// ---- resource accounting ----

#[derive(Clone, Copy)]
struct Usage {
    wall: Instant,
    cpu: Duration,
}

impl Usage {
    fn now() -> Self {
        Self { wall: Instant::now(), cpu: cpu_time() }
    }
}

/// The 1-minute load average: other work on the machine skews every figure.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_default()
}

/// (steal, total) jiffies over all CPUs: steal is time the hypervisor gave our vCPUs to someone else.
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next() else { return (0, 0) };
    let v: Vec<u64> = cpu.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    (v.get(7).copied().unwrap_or(0), v.iter().take(8).sum())
}

// ---- driving a run ----

struct Env {
    dir: PathBuf,
    process: PathBuf,
    db: PathBuf,
}

impl Env {
    fn new(root: &Path, name: &str) -> Result<Self> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        let process = dir.join("bench.js");
        std::fs::write(&process, PROCESS)?;
        Ok(Self { db: dir.join(".tutti").join("journal.db"), process, dir })
    }

    fn open(&self) -> Result<(Box<dyn Store>, WriterHandle)> {
        let store = SqliteStore::open(&self.db)?;
        let writer = Writer::spawn(Box::new(SqliteStore::open(&self.db)?))?;
        Ok((Box::new(store), writer))
    }

    fn options(&self, run_id: &str, non_interactive: bool) -> Options {
        Options {
            agent_env: Vec::new(),
            msg_secret: String::new(),
            detach_reason: || "interrupted",
            prices: tutti_engine::prices::Prices::default(),
            run_id: run_id.to_string(),
            workdir: self.dir.clone(),
            max_parallel: 1_000_000,
            non_interactive,
            simulate: false,
            until_blocked: false,
            holder: tutti_engine::Platform::lease_holder(&tutti_harness::LinuxPlatform),
            platform: std::sync::Arc::new(tutti_harness::LinuxPlatform),
            faults: tutti_engine::driver::Faults::default(),
        }
    }

    fn events(&self, run_id: &str) -> Result<u64> {
        let store = SqliteStore::open(&self.db)?;
        Ok(store.run(&run_id.to_string())?.context("run not found")?.events)
    }
}

struct Outcome {
    end: RunEnd,
    /// From loading the process to the run's end.
    total: Duration,
    /// From `Driver::create` / `resume` to its return.
    drive: Duration,
    cpu: Duration,
    commits: u64,
    clock: Clock,
}

/// Create a run of `inputs` and drive it to its end (or until it detaches).
fn create(env: &Env, inputs: Value, non_interactive: bool, detach_on_wait: bool) -> Result<(String, Outcome)> {
    create_with(env, inputs, non_interactive, detach_on_wait, json!({}))
}

/// [`create`] with the run's journaled `options` (a budget, say).
fn create_with(
    env: &Env,
    inputs: Value,
    non_interactive: bool,
    detach_on_wait: bool,
    options: Value,
) -> Result<(String, Outcome)> {
    let run_id = ulid::Ulid::new().to_string();
    let start = Usage::now();
    let mut host = JsHost::load(&env.process)?;
    let (store, writer) = env.open()?;
    let counter = writer.clone();
    let shutdown = Arc::new(AtomicBool::new(false));
    let mut clock = Clock { detach_on_wait: detach_on_wait.then(|| shutdown.clone()), ..Clock::default() };
    let new = NewRun {
        process: env.process.display().to_string(),
        inputs,
        code_hash: host.code_hash(),
        modules: host.modules().to_vec(),
        options,
    };
    let drive_start = Instant::now();
    let driver =
        Driver::new(env.options(&run_id, non_interactive), writer, store, harnesses(), &mut host, &mut clock, shutdown);
    let end = driver.create(new)?;
    let drive = drive_start.elapsed();
    let total = start.wall.elapsed();
    let cpu = cpu_time() - start.cpu;
    let commits = counter.commits();
    drop(counter.shutdown());
    Ok((run_id, Outcome { end, total, drive, cpu, commits, clock }))
}

/// Resume `run_id` with a fresh host, store and writer, as `tutti resume` does.
fn resume(env: &Env, run_id: &str, non_interactive: bool) -> Result<Outcome> {
    let start = Usage::now();
    let mut host = JsHost::load(&env.process)?;
    let (store, writer) = env.open()?;
    let counter = writer.clone();
    let mut clock = Clock::default();
    let code_hash = host.code_hash();
    let drive_start = Instant::now();
    let driver = Driver::new(
        env.options(run_id, non_interactive),
        writer,
        store,
        harnesses(),
        &mut host,
        &mut clock,
        Arc::new(AtomicBool::new(false)),
    );
    let end = driver.resume(&code_hash, Changes::Refuse)?;
    let drive = drive_start.elapsed();
    let total = start.wall.elapsed();
    let cpu = cpu_time() - start.cpu;
    let commits = counter.commits();
    drop(counter.shutdown());
    Ok(Outcome { end, total, drive, cpu, commits, clock })
}

fn expect_completed(end: &RunEnd, what: &str) -> Result<()> {
    if end.status != RunStatus::Completed {
        bail!("{what}: run ended {:?}: {:?}", end.status, end.error);
    }
    Ok(())
}

// ---- scenarios ----

struct Row {
    name: String,
    n: usize,
    events: u64,
    total: Duration,
    drive: Duration,
    cpu: Duration,
    commits: u64,
    rss_mb: f64,
    /// The scenario's headline figure and its target.
    headline: String,
    target: String,
    met: Option<bool>,
    /// The journal and run, for the breakdown.
    source: (PathBuf, String),
}

impl Row {
    /// A row from a scenario's outcome: `verdict` is (headline, target, met).
    fn of(
        name: &str,
        n: usize,
        events: u64,
        o: &Outcome,
        rss_mb: f64,
        verdict: (String, String, Option<bool>),
        source: (PathBuf, String),
    ) -> Self {
        let (headline, target, met) = verdict;
        Row {
            name: name.into(),
            n,
            events,
            total: o.total,
            drive: o.drive,
            cpu: o.cpu,
            commits: o.commits,
            rss_mb,
            headline,
            target,
            met,
            source,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn chain(root: &Path, n: usize, durable: bool, rep: usize) -> Result<Row> {
    let name = if durable { "chain-durable" } else { "chain" };
    let env = Env::new(root, &format!("{name}-{rep}"))?;
    reset_peak_rss();
    let (run_id, o) = create(&env, json!({ "mode": "chain", "n": n, "durable": durable }), true, false)?;
    expect_completed(&o.end, name)?;
    if o.end.output.as_ref().and_then(|v| v.get("last")) != Some(&json!(n - 1)) {
        bail!("{name}: wrong output {:?}", o.end.output);
    }
    let rss_mb = peak_rss_mb();
    let events = env.events(&run_id)?;
    let per_step_us = o.total.as_secs_f64() * 1e6 / n as f64;
    let (headline, target, met) = if durable {
        // One commit before each start, plus the run's end.
        let per = o.commits as f64 / n as f64;
        (format!("{per_step_us:.0} µs/step, {per:.4} commits/step"), "≤ 1 fsync/step".into(), o.commits <= n as u64 + 1)
    } else {
        let s = o.total.as_secs_f64() * 10_000.0 / n as f64;
        let per = o.commits as f64 / n as f64;
        (
            format!("{s:.3} s per 10k, {per_step_us:.0} µs/step, {per:.4} commits/step"),
            "≤ 2 s per 10k, ≤ 1 fsync/step".into(),
            s <= 2.0 && o.commits <= n as u64,
        )
    };
    Ok(Row::of(name, n, events, &o, rss_mb, (headline, target, Some(met)), (env.db.clone(), run_id)))
}

fn fanout(root: &Path, n: usize, rep: usize) -> Result<Row> {
    fanout_run(root, n, &format!("fanout-{rep}"), false)
}

/// The fan-out under a run budget (USD, tokens and turns, none reached): what checking and journaling a
/// budget before every start costs.
fn fanout_budget(root: &Path, n: usize) -> Result<Row> {
    let env = Env::new(root, "fanout-budget")?;
    reset_peak_rss();
    let budget = json!({ "budget": { "run": { "usd": 1000.0, "tokens": 1_000_000_000u64, "turns": 1_000_000u64 } } });
    let (run_id, o) = create_with(&env, json!({ "mode": "fanout", "n": n, "limited": false }), true, false, budget)?;
    expect_completed(&o.end, "fanout-budget")?;
    let rss_mb = peak_rss_mb();
    let events = env.events(&run_id)?;
    let rate = n as f64 / o.total.as_secs_f64();
    let verdict = (format!("{rate:.0} effects/s"), "none (compare with fanout)".to_string(), None);
    Ok(Row::of("fanout-budget", n, events, &o, rss_mb, verdict, (env.db.clone(), run_id)))
}

/// A chain of `n` real `sh -c 'echo I'` steps: each step's request committed (one fsync) before its spawn.
/// Reports the step time (one start to the next), the hand-off (an effect's end, as the driver learns it, to
/// the next spawn), commits per step and tutti's own CPU per step (the children's CPU is not in
/// `RUSAGE_SELF`).
fn shell_chain(root: &Path, n: usize) -> Result<Row> {
    let env = Env::new(root, "shell-chain")?;
    reset_peak_rss();
    let (run_id, o) = create(&env, json!({ "mode": "chain", "n": n, "shell": true }), true, false)?;
    expect_completed(&o.end, "shell-chain")?;
    let rss_mb = peak_rss_mb();
    let events = env.events(&run_id)?;
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let mut steps: Vec<f64> = o.clock.starts.windows(2).map(|w| micros(w[1] - w[0])).collect();
    let mut handoffs: Vec<f64> = o
        .clock
        .finishes
        .iter()
        .zip(o.clock.starts.iter().skip(1))
        .map(|(f, s)| micros(s.saturating_duration_since(*f)))
        .collect();
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v.get(((v.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0)
    };
    let (p50, p99) = (pct(&mut steps, 0.5), pct(&mut steps, 0.99));
    let (h50, h99) = (pct(&mut handoffs, 0.5), pct(&mut handoffs, 0.99));
    let cpu_per_step = micros(o.cpu) / n as f64;
    let mut floor = spawn_floor(&env.dir, n)?;
    let headline = format!(
        "step p50 {:.0} µs p99 {:.0} µs; hand-off p50 {:.0} µs p99 {:.0} µs; {:.2} commits/step; tutti CPU {:.0} µs/step; bare spawn+wait p50 {:.0} µs",
        p50,
        p99,
        h50,
        h99,
        o.commits as f64 / n as f64,
        cpu_per_step,
        pct(&mut floor, 0.5),
    );
    let verdict = (headline, "≤ 1.2 ms/step, ≤ 0.4 ms CPU".to_string(), Some(p50 <= 1200.0 && cpu_per_step <= 400.0));
    Ok(Row::of("shell-chain", n, events, &o, rss_mb, verdict, (env.db.clone(), run_id)))
}

/// The floor under a shell step: `n` times `sh -c 'echo I'` spawned in its own process group with piped
/// output, read and waited for, one after another, straight from this thread; each one's time in µs.
fn spawn_floor(dir: &Path, n: usize) -> Result<Vec<f64>> {
    use std::os::unix::process::CommandExt;
    (0..n)
        .map(|i| {
            let started = Instant::now();
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("echo {i}"))
                .current_dir(dir)
                .process_group(0)
                .stdin(std::process::Stdio::null())
                .output()?;
            if out.stdout != format!("{i}\n").as_bytes() {
                bail!("spawn floor: `echo {i}` printed {:?}", String::from_utf8_lossy(&out.stdout));
            }
            Ok(started.elapsed().as_secs_f64() * 1e6)
        })
        .collect()
}

/// A fan-out through a harness limited to 4 running jobs: how the queue of waiting effects is handled.
fn fanout_limited(root: &Path, n: usize) -> Result<Row> {
    fanout_run(root, n, &format!("fanout-limited-{n}"), true)
}

fn fanout_run(root: &Path, n: usize, env_name: &str, limited: bool) -> Result<Row> {
    let name = if limited { "fanout-lim4" } else { "fanout" };
    let env = Env::new(root, env_name)?;
    reset_peak_rss();
    let (run_id, o) = create(&env, json!({ "mode": "fanout", "n": n, "limited": limited }), true, false)?;
    expect_completed(&o.end, name)?;
    if o.end.output.as_ref().and_then(|v| v.get("last")) != Some(&json!(n)) {
        bail!("{name}: wrong output {:?}", o.end.output);
    }
    let rss_mb = peak_rss_mb();
    let events = env.events(&run_id)?;
    let rate = n as f64 / o.total.as_secs_f64();
    let (target, met) = if limited {
        ("none (harness max_parallel 4)".to_string(), None)
    } else {
        ("≥ 20,000 effects/s".to_string(), Some(rate >= 20_000.0))
    };
    let verdict = (format!("{rate:.0} effects/s"), target, met);
    Ok(Row::of(name, n, events, &o, rss_mb, verdict, (env.db.clone(), run_id)))
}

struct ResumeReport {
    shape: &'static str,
    effects: usize,
    events: u64,
    build: Duration,
    /// A separate, warm read of the whole journal: what `resume` pays before replaying.
    read: Duration,
    to_replayed: Duration,
    to_first_dispatch: Duration,
    drive: Duration,
    cpu: Duration,
    rss_mb: f64,
    replayed: usize,
}

/// Build a run of ≥ `min_events` events left waiting on a breakpoint, detach its driver, then resume it.
fn resume_scenario(root: &Path, shape: &'static str, min_events: u64) -> Result<ResumeReport> {
    // 3 events per echo effect (requested, started, resolved), plus run_created, driver_attached, the
    // breakpoint's request and driver_detached.
    let effects = (min_events.saturating_sub(4)).div_ceil(3) as usize;
    let env = Env::new(root, &format!("resume-{shape}"))?;
    let inputs = json!({ "mode": shape, "n": effects, "thenWait": true });
    let (run_id, built) = create(&env, inputs, false, true)?;
    if !built.end.interrupted {
        bail!("resume: the build run did not detach: {:?}", built.end);
    }
    let events = env.events(&run_id)?;
    if events < min_events {
        bail!("resume: the build run has only {events} events");
    }

    let read = {
        let store = SqliteStore::open(&env.db)?;
        let t = Instant::now();
        let records = store.read(&run_id, 0)?;
        let d = t.elapsed();
        assert_eq!(records.len() as u64, events);
        d
    };

    reset_peak_rss();
    perf_control("enable");
    let start = Instant::now();
    let o = resume(&env, &run_id, true)?;
    perf_control("disable");
    expect_completed(&o.end, "resume")?;
    let rss_mb = peak_rss_mb();
    let attached = o.clock.attached.context("no driver_attached on resume")?;
    let first = o.clock.first_start_after_attach.context("no dispatch after resume")?;
    Ok(ResumeReport {
        shape,
        effects,
        events,
        build: built.total,
        read,
        to_replayed: attached - start,
        to_first_dispatch: first - start,
        drive: o.drive,
        cpu: o.cpu,
        rss_mb,
        replayed: o.clock.replayed,
    })
}

// ---- where the time goes ----

/// The process host alone: start the process and feed every request its own args back at once, with no
/// driver and no journal. The JavaScript share of a run (and of a replay, which re-executes the process).
fn host_only(root: &Path, shape: &str, n: usize) -> Result<Duration> {
    let env = Env::new(root, &format!("host-{shape}"))?;
    let mut host = JsHost::load(&env.process)?;
    let t = Instant::now();
    let mut queue = std::collections::VecDeque::new();
    let mut finished = false;
    let mut take = |events: Vec<HostEvent>, queue: &mut std::collections::VecDeque<_>| {
        for e in events {
            match e {
                HostEvent::Request(r) => queue.push_back(r),
                HostEvent::Finished(_) => finished = true,
                _ => {}
            }
        }
    };
    let events = host.start("01HBENCHHOSTONLY0000000000", &json!({ "mode": shape, "n": n }), 1, 0)?;
    take(events, &mut queue);
    while let Some(r) = queue.pop_front() {
        let events = host.deliver(&r.effect, &Ok(r.args), 0)?;
        take(events, &mut queue);
    }
    let d = t.elapsed();
    if !finished {
        bail!("host-only {shape}: the process did not finish");
    }
    Ok(d)
}

/// The journal alone, on the events of a finished run: read them all back, then append them to a new run
/// through the writer in the driver's batch size (8192 events, one commit each).
/// Then time the damage check every command runs first (`verify`) on that journal, which then holds both runs.
fn journal_only(root: &Path, db: &Path, run_id: &str) -> Result<(usize, Duration, Duration, Duration)> {
    let store = SqliteStore::open(db)?;
    let t = Instant::now();
    let records = store.read(&run_id.to_string(), 0)?;
    let read = t.elapsed();
    let env = Env::new(root, "journal-only")?;
    let (mut target, writer) = env.open()?;
    let copy = ulid::Ulid::new().to_string();
    let mut events = records.into_iter().map(|r| NewEvent { ts_ms: r.ts_ms, event: r.event });
    let first: Vec<NewEvent> = events.by_ref().take(1).collect();
    target.create_run(&copy, &first)?;
    let rest: Vec<NewEvent> = events.collect();
    let n = rest.len() + 1;
    let t = Instant::now();
    let mut rest = rest.into_iter().peekable();
    while rest.peek().is_some() {
        let batch: Vec<NewEvent> = rest.by_ref().take(8192).collect();
        writer.append(copy.clone(), batch)?;
    }
    let append = t.elapsed();
    drop(writer.shutdown());
    let t = Instant::now();
    target.verify()?;
    let verify = t.elapsed();
    Ok((n, read, append, verify))
}

/// Profile only the resume: `perf record --control fifo:CTL -D -1` with `TUTTI_BENCH_PERF_CTL=CTL`.
fn perf_control(command: &str) {
    if let Some(fifo) = std::env::var_os("TUTTI_BENCH_PERF_CTL") {
        let _ = std::fs::write(fifo, format!("{command}\n"));
    }
}

// ---- main ----

const USAGE: &str = "\
usage: cargo bench -p tutti-cli --bench engine -- [--quick] [--only NAME,NAME...] [--repeat N]

  --quick          sizes / 10, a smoke test
  --only NAMES     scenarios to run, comma-separated: chain, chain-durable, fanout, shell-chain,
                   fanout-budget, fanout-limited, breakdown, resume (resume-chain, resume-fanout),
                   host-scaling (run only when named)
  --repeat N       repetitions of the repeated scenarios (default 3)

The scenarios and what each measures are described at the top of crates/tutti-cli/benches/engine.rs.";

struct Args {
    quick: bool,
    only: Option<Vec<String>>,
    repeat: usize,
}

fn args() -> Result<Args> {
    let mut a = Args { quick: false, only: None, repeat: 3 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--only" => a.only = Some(it.next().context("--only NAMES")?.split(',').map(String::from).collect()),
            "--repeat" => a.repeat = it.next().context("--repeat N")?.parse()?,
            // `cargo bench` passes `--bench`; a name filter may follow.
            "--bench" => {}
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other if other.starts_with('-') => bail!("unknown option {other}\n\n{USAGE}"),
            other => a.only = Some(vec![other.to_string()]),
        }
    }
    a.repeat = a.repeat.max(1);
    Ok(a)
}

fn main() -> Result<()> {
    let args = args()?;
    let wanted = |name: &str| args.only.as_ref().is_none_or(|o| o.iter().any(|x| x == name));
    let scale = if args.quick { 10 } else { 1 };
    let n = 10_000 / scale;
    let resume_events = 100_000 / scale as u64;

    let tmp = tempfile::Builder::new().prefix("tutti-bench-").tempdir()?;
    let root = tmp.path();
    println!(
        "tutti engine bench: {} cores, journal in {} ({}), {} repetition(s){}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        root.display(),
        if reset_peak_rss() { "peak RSS reset per scenario" } else { "peak RSS is process-wide" },
        args.repeat,
        if args.quick { ", --quick sizes" } else { "" }
    );
    let started = Instant::now();
    let load_before = loadavg();
    let jiffies_before = cpu_jiffies();

    let mut rows = Vec::new();
    for rep in 0..args.repeat {
        if wanted("chain") {
            rows.push(chain(root, n, false, rep)?);
        }
        if wanted("fanout") {
            rows.push(fanout(root, n, rep)?);
        }
    }
    if wanted("shell-chain") {
        rows.push(shell_chain(root, n / 10)?);
    }
    if wanted("fanout-budget") {
        rows.push(fanout_budget(root, n)?);
    }
    if wanted("chain-durable") {
        rows.push(chain(root, n, true, 0)?);
    }
    if wanted("fanout-limited") {
        rows.push(fanout_limited(root, n / 2)?);
        rows.push(fanout_limited(root, n)?);
    }

    if !rows.is_empty() {
        println!();
        println!(
            "{:<14} {:>6} {:>7} {:>9} {:>9} {:>9} {:>8} {:>8}  {:<58} {:<30} met",
            "scenario", "n", "events", "total ms", "drive ms", "cpu ms", "commits", "rss MB", "result", "target"
        );
        for r in &rows {
            println!(
                "{:<14} {:>6} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>8} {:>8.1}  {:<58} {:<30} {}",
                r.name,
                r.n,
                r.events,
                ms(r.total),
                ms(r.drive),
                ms(r.cpu),
                r.commits,
                r.rss_mb,
                r.headline,
                r.target,
                match r.met {
                    Some(true) => "yes",
                    Some(false) => "NO",
                    None => "-",
                }
            );
        }
    }

    if args.repeat > 1 {
        println!();
        for name in ["chain", "fanout"] {
            let mut t: Vec<Duration> = rows.iter().filter(|r| r.name == name).map(|r| r.total).collect();
            if t.is_empty() {
                continue;
            }
            t.sort();
            let (best, median) = (t[0], t[t.len() / 2]);
            let rate = |d: Duration| n as f64 / d.as_secs_f64();
            println!(
                "{name:<14} best {:.1} ms ({:.0} effects/s), median {:.1} ms ({:.0} effects/s) of {}",
                ms(best),
                rate(best),
                ms(median),
                rate(median),
                t.len()
            );
        }
    }

    if wanted("breakdown") {
        let source = match rows.iter().find(|r| r.name == "chain") {
            Some(r) => r.source.clone(),
            None => chain(root, n, false, 99)?.source,
        };
        let per = |d: Duration, k: usize| d.as_secs_f64() * 1e6 / k as f64;
        let (events, read, append, verify) = journal_only(root, &source.0, &source.1)?;
        let host_chain = host_only(root, "chain", n)?;
        let host_fanout = host_only(root, "fanout", n)?;
        let big = (resume_events.saturating_sub(4)).div_ceil(3) as usize;
        let host_big = host_only(root, "chain", big)?;
        println!();
        println!("where the time goes (no driver: the JS host alone, the journal alone)");
        println!("  JS host, chain of {n}:      {:>8.1} ms  {:>6.1} µs/effect", ms(host_chain), per(host_chain, n));
        println!("  JS host, fan-out of {n}:    {:>8.1} ms  {:>6.1} µs/effect", ms(host_fanout), per(host_fanout, n));
        println!("  JS host, chain of {big}:    {:>8.1} ms  {:>6.1} µs/effect", ms(host_big), per(host_big, big));
        println!("  journal read of {events} events:   {:>8.1} ms  {:>6.2} µs/event", ms(read), per(read, events));
        println!(
            "  journal append of {events} events: {:>8.1} ms  {:>6.2} µs/event ({} commits)",
            ms(append),
            per(append, events),
            events.div_ceil(8192)
        );
        println!(
            "  journal check of {} events:   {:>8.1} ms  {:>6.2} µs/event (integrity_check + numbering, before every command)",
            2 * events,
            ms(verify),
            per(verify, 2 * events)
        );
    }

    // Opt-in: how the JS host's cost per effect grows with the run's length.
    if args.only.as_ref().is_some_and(|o| o.iter().any(|x| x == "host-scaling")) {
        println!();
        println!("JS host alone, µs per effect by run length");
        for shape in ["chain", "fanout"] {
            let mut line = format!("  {shape:<7}");
            for k in [1_000, 5_000, 10_000, 20_000, 40_000] {
                let d = host_only(root, shape, k)?;
                line.push_str(&format!("  {k}: {:.1}", d.as_secs_f64() * 1e6 / k as f64));
            }
            println!("{line}");
        }
    }

    let mut resumes = Vec::new();
    for shape in ["chain", "fanout"] {
        if wanted(&format!("resume-{shape}")) || wanted("resume") {
            resumes.push(resume_scenario(root, shape, resume_events)?);
        }
    }
    if !resumes.is_empty() {
        println!();
        println!(
            "{:<14} {:>7} {:>8} {:>9} {:>9} {:>12} {:>15} {:>9} {:>9} {:>7}  {:<26} met",
            "resume of",
            "effects",
            "events",
            "build ms",
            "read ms",
            "replayed ms",
            "1st dispatch ms",
            "drive ms",
            "cpu ms",
            "rss MB",
            "target"
        );
        for r in &resumes {
            debug_assert!(r.replayed as u64 + 1 >= r.events);
            println!(
                "{:<14} {:>7} {:>8} {:>9.1} {:>9.1} {:>12.1} {:>15.1} {:>9.1} {:>9.1} {:>7.1}  {:<26} {}",
                r.shape,
                r.effects,
                r.events,
                ms(r.build),
                ms(r.read),
                ms(r.to_replayed),
                ms(r.to_first_dispatch),
                ms(r.drive),
                ms(r.cpu),
                r.rss_mb,
                "≤ 1000 ms to 1st dispatch",
                if args.quick {
                    "n/a (--quick)"
                } else if r.to_first_dispatch <= Duration::from_secs(1) {
                    "yes"
                } else {
                    "NO"
                }
            );
        }
    }
    let jiffies_after = cpu_jiffies();
    let steal =
        (jiffies_after.0 - jiffies_before.0) as f64 * 100.0 / (jiffies_after.1 - jiffies_before.1).max(1) as f64;
    println!();
    println!(
        "whole bench: {:.1} s; load average {load_before} before, {} after; CPU steal {steal:.1}%",
        started.elapsed().as_secs_f64(),
        loadavg()
    );
    Ok(())
}
