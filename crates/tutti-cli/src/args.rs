//! Raw command-line arguments, as clap parses them. Validation into a usable configuration happens in
//! `config.rs`; nothing here touches the disk.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// tutti runs a process — a small JavaScript file — that dispatches many agent and shell tasks in
/// parallel, journals every fact in a local SQLite database (or PostgreSQL, to spread a run over many
/// machines), and resumes exactly where it stopped.
///
/// Exit codes: 0 ok, 1 the run failed or was cancelled, 2 bad input (usage, process file, inputs,
/// configuration, non-determinism on replay, run busy, a damaged journal, a refused control command), 128 + N
/// when signal N made the driver let go: 130 Ctrl-C, 129 a closed terminal (SIGHUP), 143 SIGTERM (each resumable
/// with `tutti resume RUN`).
#[derive(Parser, Debug)]
#[command(name = "tutti", version, max_term_width = 100)]
pub(crate) struct Args {
    /// Project root holding `tutti.toml` and `.tutti/` (default: the nearest ancestor of the working
    /// directory with either, else the working directory).
    #[arg(long, global = true, env = "TUTTI_HOME", value_name = "DIR")]
    pub(crate) home: Option<PathBuf>,

    /// Keep the journal in PostgreSQL instead of the project's SQLite file, for distributed mode:
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (add `?options=-csearch_path%3DNAME` to use a schema
    /// of its own). Overrides `[store] url` in tutti.toml. Runs in PostgreSQL can be resumed, inspected and
    /// controlled from any folder and machine that reaches it.
    #[arg(long, global = true, env = "TUTTI_STORE", value_name = "URL")]
    pub(crate) store: Option<String>,

    #[command(subcommand)]
    pub(crate) command: Cmd,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Cmd {
    /// Start a run of a process file and drive it to its end.
    ///
    /// Prints the process's return value as JSON on stdout; progress goes to stderr. Example:
    /// `tutti run examples/fanout.js --inputs '{"n": 20}' --max-parallel 8`
    Run(RunArgs),
    /// Continue a run that stopped (crash, Ctrl-C, closed laptop): replay its journal, then go on.
    ///
    /// Replay re-executes the process file and checks each call against the journal. If you edited the file
    /// so that a call's arguments changed, resume fails and shows both values; `--accept-changes` takes the
    /// edit instead.
    Resume(ResumeArgs),
    /// For an outer agent driving a run (Claude Code, a script): advance it until nothing can happen without
    /// you, print what waits (`--json`: one object), and exit. TARGET is a run id, or a process file to start
    /// a run of. With `--harness external` (or `[defaults] harness = "external"`) agent tasks are left to you:
    /// perform each pending effect, `tutti post RUN EFFECT --value JSON` its result (or `tutti approve` a
    /// breakpoint), and iterate again; the journal is replayed and the run goes on. Shell and node tasks run
    /// here unless `--no-exec`.
    Iterate(IterateArgs),
    /// Show a run: state, effects, pending breakpoints, output (the latest run when RUN is omitted).
    Status {
        run: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show a run's groups: each member's harness, state and how its tasks ended (the latest run when RUN is
    /// omitted).
    Groups {
        run: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the git worktrees of a run's isolated tasks (all runs when RUN is omitted): path, branch, base,
    /// commit, state and effect. `tutti worktrees prune` removes those no live or resumable run needs.
    Worktrees {
        /// A run, or `prune`.
        run: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// What the agents did: for each attempt the prompt, its tool calls and narration, the answer or error,
    /// and usage. EFFECT is an effect id (`root/2`) or a member (`reviewers/alice`, all its rounds).
    Logs {
        run: String,
        effect: Option<String>,
        /// Print each attempt's event stream as its CLI wrote it.
        #[arg(long)]
        raw: bool,
        #[arg(long)]
        json: bool,
        /// Keep printing the progress of running turns until the run ends.
        #[arg(long)]
        follow: bool,
    },
    /// List runs, oldest first.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Print a run's journal, one event per line (the latest run when RUN is omitted).
    Events {
        run: Option<String>,
        /// JSON lines, exactly as journaled.
        #[arg(long)]
        json: bool,
        /// Keep printing new events until the run ends.
        #[arg(long)]
        follow: bool,
    },
    /// Write a run's whole journal as NDJSON (values kept out of line are inlined), to back it up or move
    /// it: `tutti export RUN -o run.ndjson`, then `tutti import run.ndjson` in another project.
    Export {
        run: String,
        /// Write here instead of stdout (`-` is stdout).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Add a run saved with `tutti export` to this project (making the folder a project if it is not one).
    /// The run keeps its id; `tutti events RUN --json` prints what it printed where it was exported.
    Import {
        /// The export file (`-` reads stdin).
        file: PathBuf,
    },
    /// Approve (or reject) a breakpoint a run is waiting on.
    Approve {
        run: String,
        effect: String,
        /// Reject instead of approving (the process sees `approved: false`).
        #[arg(long)]
        reject: bool,
        /// A response passed to the process with the decision.
        #[arg(long, value_name = "TEXT")]
        response: Option<String>,
    },
    /// Resolve a pending effect by hand, with a value or an error (the external-driver protocol).
    Post {
        run: String,
        effect: String,
        #[arg(long, value_name = "JSON", conflicts_with = "error", required_unless_present = "error")]
        value: Option<String>,
        /// `{"name": ..., "message": ...}`
        #[arg(long, value_name = "JSON")]
        error: Option<String>,
    },
    /// Messages, for agents inside a running effect: `tutti msg send --to coordinator "done with part 1"`.
    ///
    /// tutti puts itself on each effect's PATH with `TUTTI_HOME`, `TUTTI_RUN_ID`, `TUTTI_EFFECT_ID`,
    /// `TUTTI_ATTEMPT` and `TUTTI_MSG_TOKEN` in its environment; the token proves which effect is speaking.
    Msg {
        #[command(subcommand)]
        action: MsgCmd,
    },
    /// A local web dashboard of this project's runs: the runs list, each group's members live (harness,
    /// state, current tool call, tokens, cost), a timeline of attempts, messages, transcripts, and buttons
    /// for pending breakpoints. Listens on 127.0.0.1 only and prints a URL with a random token; requests
    /// without it get 401. Works while another `tutti run` drives a run. Ctrl-C stops it.
    Serve {
        /// The port to listen on (0 picks a free one).
        #[arg(long, default_value_t = 4270)]
        port: u16,
    },
    /// Which harnesses this project can use: capabilities, limits, availability, and the agent CLIs tutti
    /// knows, found or not, with the fix for what is missing; and the price table that costs usage a CLI
    /// reports without a price (dated defaults, `[prices."MODEL"]` over them).
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Distributed mode: run tasks that drivers started with `tutti run --remote` offer, on this machine, with
    /// this folder's harnesses (`tutti.toml`), until SIGTERM or Ctrl-C; then finish what runs and claim
    /// nothing new. Needs a PostgreSQL `--store`. Example:
    /// `tutti worker --store postgres://tutti@db/tutti --harness shell,claude --capacity 8`
    Worker(WorkerArgs),
    /// Distributed mode: the workers that reach the journal: id, host, harnesses, capacity, running attempts,
    /// last heartbeat.
    Workers {
        #[arg(long)]
        json: bool,
    },
    /// An MCP server on stdio (tools send, inbox, progress) for agents inside a running effect; tutti's
    /// adapters register it with agent CLIs that speak MCP.
    Mcp,
    /// Cancel a run: kill the process tree of every running effect and end the run as cancelled.
    Cancel {
        run: String,
        #[arg(long, default_value = "cancelled by user")]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum MsgCmd {
    /// Send a message to `coordinator`, `GROUP/MEMBER` or `GROUP/*`.
    Send {
        #[arg(long, value_name = "ADDR")]
        to: String,
        /// The message (a string; with --json, a JSON value).
        text: String,
        #[arg(long)]
        json: bool,
    },
    /// Tell the person running tutti what this effect is doing now (journaled as progress, shown live; at most
    /// 200 notes per attempt).
    Progress {
        /// One short line.
        text: String,
    },
    /// List the messages addressed to this effect's member.
    Inbox {
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// The process file (an ES module exporting `process(inputs, ctx)`).
    pub(crate) process: PathBuf,
    /// Inputs: inline JSON, or a path to a JSON file.
    #[arg(long, value_name = "FILE|JSON")]
    pub(crate) inputs: Option<String>,
    #[command(flatten)]
    pub(crate) drive: DriveArgs,
    /// Harness for agent tasks that name none (overrides `[defaults] harness` in tutti.toml).
    #[arg(long, value_name = "NAME")]
    pub(crate) harness: Option<String>,
    /// Run nothing: every effect is answered at once. Agent tasks get the smallest value that fits their
    /// output schema (or `io.outputs` hints), shell and node tasks succeed with empty output without running,
    /// breakpoints are approved and sleeps end at once; no worktree is made. With `=FILE`, a JSON object of
    /// canned answers by task id, title or effect id (`{"$error": {"name", "message"}}` fails that task).
    /// The run is journaled as simulated. For trying a process file, and testing one in CI.
    #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true)]
    pub(crate) simulate: Option<Option<PathBuf>>,
    /// Distributed mode: offer shell, node, command and agent tasks to `tutti worker` processes on any
    /// machine that reaches the journal (needs a PostgreSQL `--store`), instead of running them here. The run
    /// keeps this on `tutti resume`.
    #[arg(long)]
    pub(crate) remote: bool,
    #[command(flatten)]
    pub(crate) budget: BudgetArgs,
}

/// The run's budget (each over `[budget]` in tutti.toml). When the run reaches one, nothing new starts: each
/// effect that cannot start fails with `BudgetExceeded`, which the process can catch; running attempts finish
/// (`on_exceed = "cancel"` in `[budget]` stops them). Spend is journaled and survives `tutti resume`.
#[derive(clap::Args, Debug, Default, Clone)]
pub(crate) struct BudgetArgs {
    /// Most US dollars the run may spend: the CLI's reported cost, else its tokens at the price table's
    /// prices (`[prices."MODEL"]` in tutti.toml; `tutti doctor` lists them).
    #[arg(long, value_name = "USD", value_parser = usd)]
    pub(crate) budget_usd: Option<f64>,
    /// Most tokens the run may spend (input, output and cache reads and writes, priced or not).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64))]
    pub(crate) budget_tokens: Option<u64>,
    /// Most attempts the run may start (agent turns, retries and commands alike).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64))]
    pub(crate) budget_turns: Option<u64>,
    /// Most wall-clock time from the run's start, restarts included: 2h, 90m, 1h30m, 45s.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub(crate) budget_time: Option<u64>,
}

impl BudgetArgs {
    pub(crate) fn limits(&self) -> tutti_engine::budget::Limits {
        tutti_engine::budget::Limits {
            usd: self.budget_usd,
            tokens: self.budget_tokens,
            turns: self.budget_turns,
            time_ms: self.budget_time,
            ..Default::default()
        }
    }
}

fn usd(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && *f >= 0.0)
        .ok_or_else(|| format!("{text:?} is not an amount of US dollars: give a number of at least 0, like 5 or 0.50"))
}

fn duration(text: &str) -> Result<u64, String> {
    crate::config::parse_duration(text)
}

#[derive(clap::Args, Debug)]
pub(crate) struct ResumeArgs {
    pub(crate) run: String,
    /// Take edits to the process file that change a call's arguments (or its task) instead of failing with a
    /// non-determinism error: that effect runs again with its new arguments, and so does every effect the
    /// journal requested after it, since any of them may have used its result (breakpoints among them are
    /// asked again). Effects requested before it keep their journaled results. Each accepted change is
    /// journaled as `changes_accepted` (see `tutti events RUN`), so later resumes replay the new results.
    /// Without a changed call this is a plain resume.
    #[arg(long)]
    pub(crate) accept_changes: bool,
    #[command(flatten)]
    pub(crate) drive: DriveArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct IterateArgs {
    /// A run id (or a unique prefix), or a process file to start a new run of.
    pub(crate) target: String,
    /// Inputs of a new run: inline JSON, or a path to a JSON file.
    #[arg(long, value_name = "FILE|JSON")]
    pub(crate) inputs: Option<String>,
    /// Harness for agent tasks of a new run that name none; `external` leaves them to you.
    #[arg(long, value_name = "NAME")]
    pub(crate) harness: Option<String>,
    /// Leave shell and node tasks to you too, instead of running them (kept for the run's later iterations).
    #[arg(long)]
    pub(crate) no_exec: bool,
    /// Print one JSON object: `{ runId, status, pending: [{ effectId, kind, taskId, title, prompt,
    /// outputSchema, args, task }], output, error }`. `status` is `waiting` while effects wait for you.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct DriveArgs {
    /// Most effects running at once (default: `[defaults] max_parallel`, else 16).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_parallel: Option<u32>,
    /// Approve breakpoints automatically; never wait for a person.
    #[arg(long)]
    pub(crate) non_interactive: bool,
    /// Print one JSON object with the run id, status, output and error on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct WorkerArgs {
    /// Harnesses this worker runs, comma-separated (default: every harness of this folder's tutti.toml, and
    /// shell and node).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub(crate) harness: Vec<String>,
    /// Most attempts this worker runs at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) capacity: u32,
    /// This worker's id among workers (default: HOST-PID).
    #[arg(long, value_name = "ID")]
    pub(crate) id: Option<String>,
    /// Seconds a claim lives without a heartbeat: a worker that dies loses its attempts to other workers this
    /// long after its last heartbeat.
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0)]
    pub(crate) lease: f64,
}
