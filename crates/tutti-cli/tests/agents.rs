//! Real agent CLIs as harnesses: claude, codex, gemini, pi and opencode, installed by `.ci/install-clis.sh` into the CLI cache, run
//! by tutti against the scripted mock model on 127.0.0.1, configured only through `tutti.toml` (`binary`,
//! `base_url`, `model`). Each CLI writes a file with its own tool, resumes a group member's session, and is
//! cancelled mid-turn with its whole process tree. A CLI that is not installed fails its tests; none skips.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tutti_testkit::{MockModel, Output, Project, Reply, Script, When, of_kind, process_is_gone, show, wait_for};

const TUTTI: &str = env!("CARGO_BIN_EXE_tutti");

/// How long a run of a few agent turns may take. A CLI turn takes 1–5 s alone, but with every test of this
/// file running at once on 2 cores one opencode turn took over 30 s.
const DEADLINE: Duration = Duration::from_secs(180);

/// What differs between the CLIs under test.
struct Cli {
    /// The program, and the harness name in `tutti.toml`.
    name: &'static str,
    /// A model the CLI knows: codex offers no function tools for its default model.
    model: &'static str,
    /// The request path the CLI uses under the mock's root URL, which the adapter extends.
    api_path: &'static str,
    /// The usage of one model request as the adapter reports it (the mock's counts in the CLI's terms).
    per_request: [u64; 4],
    reports_cost: bool,
    /// tutti's default price table has the model: its tokens are priced when the CLI reports no cost.
    priced: bool,
    /// More lines for the harness's table in `tutti.toml`.
    extra_toml: &'static str,
}

const CLAUDE: Cli = Cli {
    name: "claude",
    model: "claude-sonnet-4-5",
    api_path: "/v1/messages",
    // The mock's default usage: 11 uncached, 7 out, 5 cache reads, 3 cache writes.
    per_request: [11, 7, 5, 3],
    reports_cost: true,
    priced: false,
    extra_toml: "",
};

const CODEX: Cli = Cli {
    name: "codex",
    model: "gpt-5.5",
    api_path: "/v1/responses",
    // The Responses API has no cache-write count: the mock's 3 cache writes are part of the uncached input.
    per_request: [14, 7, 5, 0],
    reports_cost: false,
    priced: true,
    extra_toml: "",
};

/// The OpenAI-style and Gemini APIs report one prompt total and its cached part, and no cache writes: the
/// mock's 3 cache writes are part of the uncached input.
const GEMINI: Cli = Cli {
    name: "gemini",
    model: "gemini-2.5-flash",
    api_path: "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    per_request: [14, 7, 5, 0],
    reports_cost: false,
    priced: true,
    extra_toml: "",
};

/// pi and opencode speak Chat Completions to a gateway.
const PI: Cli = Cli {
    name: "pi",
    model: "mock-model",
    api_path: "/v1/chat/completions",
    per_request: [14, 7, 5, 0],
    reports_cost: false,
    priced: false,
    extra_toml: "",
};

const OPENCODE: Cli = Cli {
    name: "opencode",
    model: "mock-model",
    api_path: "/v1/chat/completions",
    per_request: [14, 7, 5, 0],
    reports_cost: false,
    priced: false,
    extra_toml: "",
};

/// The CLI from the cache, or a test failure saying how to install it.
fn binary(cli: &Cli) -> PathBuf {
    let bin = tutti_harness::cli_cache_bin().expect("neither TUTTI_CLI_CACHE nor HOME is set");
    let path = bin.join(cli.name);
    assert!(
        path.exists(),
        "{} is not installed in the CLI cache ({}): run .ci/install-clis.sh (set TUTTI_CLI_CACHE to use another cache)",
        cli.name,
        bin.display()
    );
    path
}

/// A project whose `tutti.toml` points the CLI's harness at `base_url` (the mock's root URL).
fn project(cli: &Cli, base_url: &str, timeout_ms: u64) -> Project {
    let project = Project::new(TUTTI);
    project.write("tutti.toml", table(cli, base_url, timeout_ms));
    project
}

/// The CLI's `[harness.NAME]` table, pointing at `base_url`.
fn table(cli: &Cli, base_url: &str, timeout_ms: u64) -> String {
    format!(
        "[harness.{name}]\nbinary = {binary:?}\nbase_url = {base_url:?}\nmodel = {model:?}\ntimeout_ms = {timeout_ms}\n{extra}",
        name = cli.name,
        binary = binary(cli).display().to_string(),
        model = cli.model,
        extra = cli.extra_toml,
    )
}

/// A process in which one group member on the CLI's harness runs one task per prompt in `inputs.prompts`.
const MEMBER: &str = r#"
import { defineTask } from "tutti";
const ask = defineTask("ask", (a) => ({ kind: "agent", title: a.prompt.slice(0, 20), agent: { prompt: a.prompt } }));
export async function process(inputs, ctx) {
  const dev = ctx.group("team", { members: ["dev"], harness: [inputs.harness] }).member("dev");
  const results = [];
  for (const prompt of inputs.prompts) results.push(await dev.task(ask, { prompt }));
  return { results, session: dev.session };
}
"#;

fn inputs(cli: &Cli, prompts: &[&str]) -> String {
    json!({ "harness": cli.name, "prompts": prompts }).to_string()
}

/// `tutti ARGS` with `HOME` set to `home`, to show that the CLI never writes to its user's home.
fn run_with_home(project: &Project, home: &Path, args: &[&str]) -> Output {
    let mut command = project.tutti();
    command.args(args).env("HOME", home);
    let out = command.output().expect("run tutti");
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    Output { code: out.status.code().unwrap_or(-1), stdout: text(out.stdout), stderr: text(out.stderr) }
}

/// The usage the adapter should report for `requests` model requests.
fn usage(cli: &Cli, requests: u64) -> Value {
    let [input, output, read, write] = cli.per_request.map(|n| n * requests);
    json!({ "input_tokens": input, "output_tokens": output, "cache_read_tokens": read, "cache_write_tokens": write })
}

/// The journaled usage of an effect (its only `effect_usage` event) without its cost, model and price source;
/// and its cost.
fn journaled_usage(events: &[Value], effect: &str) -> (Value, Option<f64>) {
    let reports: Vec<_> =
        of_kind(events, "effect_usage").into_iter().filter(|e| e["event"]["effect"] == effect).collect();
    assert_eq!(reports.len(), 1, "one usage report for {effect}: {}", show(events));
    let mut usage = reports[0]["event"]["usage"].clone();
    let fields = usage.as_object_mut();
    let cost = fields.and_then(|fields| {
        fields.remove("model");
        fields.remove("priced");
        fields.remove("cost_usd")
    });
    (usage, cost.and_then(|usd| usd.as_f64()))
}

fn writes_a_file_in_the_working_directory(cli: &Cli) {
    let content = format!("written by {} through its own tool\n", cli.name);
    let script = Script::new().rule(
        When::request()
            .user_says("Create hello.txt")
            .reply(Reply::tool("write_file", json!({"path": "hello.txt", "content": content}))),
    );
    let mock = MockModel::start(script);
    let project = project(cli, &mock.base_url(), 90_000);
    project.write("member.js", MEMBER);
    let home = tempfile::tempdir().unwrap();

    let out = run_with_home(
        &project,
        home.path(),
        &["run", "member.js", "--inputs", &inputs(cli, &["Create hello.txt, please."])],
    );
    assert_eq!(out.code, 0, "{out}\nmock requests: {:#?}", mock.requests());
    let requests =
        || mock.requests().iter().map(|r| format!("{} {}: {}", r.path, r.last_user_text, r.reply)).collect::<Vec<_>>();
    assert_eq!(
        project.read("hello.txt").as_deref(),
        Some(content.as_str()),
        "the file in the project directory\n{out}\nmock: {:#?}",
        requests()
    );

    let value = out.json();
    assert_eq!(value["results"][0], json!({"text": "done"}), "the answer after the tool result: {value}");

    let events = project.events(&out.run_id());
    let (used, cost) = journaled_usage(&events, "group:team/dev/0");
    assert_eq!(used, usage(cli, 2), "a tool call and the answer after it");
    assert_eq!(cost.is_some_and(|usd| usd > 0.0), cli.reports_cost || cli.priced, "{}", show(&events));
    let report = &of_kind(&events, "effect_usage")[0]["event"]["usage"];
    assert_eq!(report["model"], cli.model, "the model that ran is journaled with its usage: {report}");
    assert_eq!(
        report["priced"].is_string(),
        cli.priced,
        "priced from the table only when the CLI gave no cost: {report}"
    );
    let bound = of_kind(&events, "member_bound");
    assert_eq!(bound.len(), 1, "{}", show(&events));
    assert_eq!(bound[0]["event"]["harness"], cli.name);
    assert_eq!(bound[0]["event"]["session"], value["session"], "member.session is the journaled session");
    assert!(value["session"].as_str().is_some_and(|s| !s.is_empty()), "{value}");

    let main: Vec<_> = mock.requests().into_iter().filter(|r| r.api.is_some()).collect();
    assert!(main.iter().all(|r| r.path == cli.api_path), "base_url from tutti.toml, with the CLI's prefix: {main:#?}");
    // opencode's title request, first, offers no tools.
    let turn = main.iter().find(|r| !r.tools.is_empty()).expect("a request offering tools");
    assert!(turn.tools.len() > 1 && turn.last_user_text.contains("Create hello.txt"), "{main:#?}");
    let mut left: Vec<_> = std::fs::read_dir(home.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert!(left.is_empty(), "the CLI wrote to the user's home: {left:?}");
    assert!(project.path(&format!(".tutti/harness-home/{}", cli.name)).is_dir());
}

fn a_members_second_task_resumes_its_session(cli: &Cli) {
    let mock = MockModel::start(Script::new());
    let project = project(cli, &mock.base_url(), 90_000);
    project.write("member.js", MEMBER);
    let prompts = ["Turn one: the code word is PELICAN.", "Turn two: what was the code word?"];

    let out = project.spawn(&["run", "member.js", "--inputs", &inputs(cli, &prompts)]).wait(DEADLINE);
    assert_eq!(out.code, 0, "{out}");
    let value = out.json();
    assert_eq!(value["results"][1]["text"], tutti_testkit::mock_model::DEFAULT_TEXT, "{value}");

    let requests = mock.requests();
    let second = requests.iter().find(|r| r.last_user_text.contains("Turn two")).expect("the second turn's request");
    assert!(second.contains("the code word is PELICAN"), "the resumed session carries turn 1: {:#?}", second.body);
    assert!(second.contains(tutti_testkit::mock_model::DEFAULT_TEXT), "and the answer to it: {:#?}", second.body);
    let events = project.events(&out.run_id());
    assert_eq!(of_kind(&events, "member_bound").len(), 1, "both turns in one session: {}", show(&events));
    assert_eq!(journaled_usage(&events, "group:team/dev/1").0, usage(cli, 1), "only the second turn's usage");
}

/// The processes in process group `pgid`, read from `/proc`.
fn group_members(pgid: u32) -> Vec<u32> {
    let pids = std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok());
    pids.filter(|pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // After the parenthesized command name: state, ppid, pgrp.
        let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        rest.split_whitespace().nth(2).and_then(|g| g.parse().ok()) == Some(pgid)
    })
    .collect()
}

fn cancel_mid_turn_kills_the_whole_tree(cli: &Cli, at_least: usize) {
    let mock = MockModel::start(
        // Only the turn itself: opencode's title request (no tools) quotes the prompt too.
        Script::new().rule(
            When::request().user_says("Take your time").offers_tools(true).reply(Reply::hold(Reply::text("late"))),
        ),
    );
    let project = project(cli, &mock.base_url(), 90_000);
    project.write("member.js", MEMBER);
    let driver = project.spawn(&["run", "member.js", "--inputs", &inputs(cli, &["Take your time."])]);
    let run = driver.run_id();
    wait_for(DEADLINE, "the CLI's request to be held by the mock", || mock.held() == 1);

    let started = project.wait_for_event(&run, "effect_started", |e| e["event"]["type"] == "effect_started");
    let pgid = started["event"]["pid"].as_u64().expect("the journaled process group") as u32;
    let pids = group_members(pgid);
    let _reaper = tutti_testkit::Reaper(pids.clone());
    assert!(pids.len() >= at_least, "{} should run as {at_least}+ processes in group {pgid}: {pids:?}", cli.name);

    let cancel = project.run(&["cancel", &run]);
    assert_eq!(cancel.code, 0, "{cancel}");
    assert_eq!(driver.wait(DEADLINE).code, 1, "a cancelled run exits 1");
    wait_for(Duration::from_secs(10), "every process of the CLI to be gone", || {
        pids.iter().all(|&p| process_is_gone(p))
    });
    let events = project.events(&run);
    assert_eq!(of_kind(&events, "effect_cancelled").len(), 1, "{}", show(&events));
    assert_eq!(of_kind(&events, "run_cancelled").len(), 1, "{}", show(&events));
}

/// Nothing listens at the configured server: the CLI retries (claude for minutes, codex forever) until
/// tutti's own timeout stops it, and the error says what the CLI last reported.
fn an_unreachable_server_times_out_with_the_clis_last_error(cli: &Cli, says: &str) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // Long enough for a CLI starting on a loaded machine to report its first retry (codex after about 4 s).
    let project = project(cli, &format!("http://127.0.0.1:{port}"), 10_000);
    project.write("member.js", MEMBER);
    let started = std::time::Instant::now();
    let out = project.run(&["run", "member.js", "--inputs", &inputs(cli, &["Anyone there?"])]);
    assert_eq!(out.code, 1, "{out}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    let events = project.events(&out.run_id());
    let resolved = of_kind(&events, "effect_resolved");
    let error = &resolved[0]["event"]["outcome"]["error"];
    assert_eq!(error["name"], "TimeoutError", "{}", show(&events));
    assert_eq!(error["message"], format!("harness {} timed out after 10000 ms", cli.name));
    let last = error["data"]["lastError"].as_str().unwrap_or_default();
    assert!(last.contains(says), "the CLI's last error should mention {says:?}: {}", show(&events));
    assert_eq!(
        error["data"][tutti_engine::harness::ENVIRONMENTAL],
        true,
        "a model never reached is the environment's fault"
    );
}

/// With the preferred CLI's server unreachable, the task falls back to the next harness within the
/// adapter's timeout, and the journal says why.
#[test]
fn a_task_falls_back_when_the_preferred_clis_server_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let project = Project::new(TUTTI);
    project.write(
        "tutti.toml",
        format!(
            r#"
[harness.claude]
base_url = "http://127.0.0.1:{port}"
model = "claude-sonnet-4-5"
timeout_ms = 8000

[harness.backup]
command = ["sh", "-c", "cat > /dev/null; echo '{{\"by\": \"backup\"}}'"]
"#
        ),
    );
    project.write(
        "fallback.js",
        r#"
import { defineTask } from "tutti";
const ask = defineTask("ask", () => ({ kind: "agent", title: "ask", harness: ["claude", "backup"], agent: { prompt: "hi" } }));
export async function process(inputs, ctx) {
  return (await ctx.task(ask, {})).by;
}
"#,
    );
    let started = std::time::Instant::now();
    let out = project.run(&["run", "fallback.js"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.json(), "backup");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    let events = project.events(&out.run_id());
    let routes: Vec<&Value> = of_kind(&events, "effect_routed");
    assert_eq!(routes.len(), 2, "{}", show(&events));
    assert_eq!(routes[1]["event"]["harness"], "backup");
    let reason = routes[1]["event"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("fallback: claude is unavailable (harness claude timed out after 8000 ms"), "{reason}");
}

#[test]
fn claude_writes_a_file_with_its_own_tool() {
    writes_a_file_in_the_working_directory(&CLAUDE);
}

#[test]
fn claude_resumes_a_members_session() {
    a_members_second_task_resumes_its_session(&CLAUDE);
}

#[test]
fn claude_cancelled_mid_turn_leaves_no_process() {
    cancel_mid_turn_kills_the_whole_tree(&CLAUDE, 1);
}

#[test]
fn claude_with_its_server_unreachable_times_out() {
    an_unreachable_server_times_out_with_the_clis_last_error(&CLAUDE, "API request failed");
}

#[test]
fn codex_writes_a_file_with_its_own_tool() {
    writes_a_file_in_the_working_directory(&CODEX);
}

#[test]
fn codex_resumes_a_members_session() {
    a_members_second_task_resumes_its_session(&CODEX);
}

/// Codex is a node wrapper and a native child: both must go (a SIGKILLed wrapper orphans the child).
#[test]
fn codex_cancelled_mid_turn_leaves_no_process() {
    cancel_mid_turn_kills_the_whole_tree(&CODEX, 2);
}

#[test]
fn codex_with_its_server_unreachable_times_out() {
    an_unreachable_server_times_out_with_the_clis_last_error(&CODEX, "Reconnecting");
}

#[test]
fn gemini_writes_a_file_with_its_own_tool() {
    writes_a_file_in_the_working_directory(&GEMINI);
}

#[test]
fn gemini_resumes_a_members_session() {
    a_members_second_task_resumes_its_session(&GEMINI);
}

/// tutti runs gemini with `GEMINI_CLI_NO_RELAUNCH=true`, as one process that exits on SIGTERM.
#[test]
fn gemini_cancelled_mid_turn_leaves_no_process() {
    cancel_mid_turn_kills_the_whole_tree(&GEMINI, 1);
}

/// With its relaunch allowed (an empty `GEMINI_CLI_NO_RELAUNCH`), gemini is a node parent that ignores
/// SIGTERM and a relaunched node child: signalling the process group still ends both.
#[test]
fn gemini_relaunched_and_cancelled_mid_turn_leaves_no_process() {
    let relaunching = Cli { extra_toml: "env = { GEMINI_CLI_NO_RELAUNCH = \"\" }\n", ..GEMINI };
    cancel_mid_turn_kills_the_whole_tree(&relaunching, 2);
}

#[test]
fn pi_writes_a_file_with_its_own_tool() {
    writes_a_file_in_the_working_directory(&PI);
}

#[test]
fn pi_resumes_a_members_session() {
    a_members_second_task_resumes_its_session(&PI);
}

#[test]
fn pi_cancelled_mid_turn_leaves_no_process() {
    cancel_mid_turn_kills_the_whole_tree(&PI, 1);
}

#[test]
fn opencode_writes_a_file_with_its_own_tool() {
    writes_a_file_in_the_working_directory(&OPENCODE);
}

#[test]
fn opencode_resumes_a_members_session() {
    a_members_second_task_resumes_its_session(&OPENCODE);
}

#[test]
fn opencode_cancelled_mid_turn_leaves_no_process() {
    cancel_mid_turn_kills_the_whole_tree(&OPENCODE, 1);
}

/// One task per (harness, count) pair, all in one `ctx.parallel.all`.
const MIXED: &str = r#"
import { defineTask } from "tutti";
const ask = defineTask("ask", (a) => ({ kind: "agent", title: a.title, harness: a.harness, agent: { prompt: a.title } }));
export async function process(inputs, ctx) {
  const asks = [];
  for (const [harness, n] of Object.entries(inputs.counts))
    for (let i = 0; i < n; i++) asks.push(ctx.task(ask, { harness, title: `Task ${i} for ${harness}.` }));
  return await ctx.parallel.all(asks);
}
"#;

#[test]
fn ten_turns_of_four_clis_run_at_once() {
    let mock = MockModel::start(Script::new());
    let clis = [(&CLAUDE, 3), (&CODEX, 3), (&GEMINI, 2), (&PI, 2)];
    let project = Project::new(TUTTI);
    // max_parallel, so that admission by available memory cannot queue any of them on a smaller machine.
    let tables: Vec<String> =
        clis.iter().map(|(cli, n)| format!("{}max_parallel = {n}\n", table(cli, &mock.base_url(), 150_000))).collect();
    project.write("tutti.toml", tables.join("\n"));
    project.write("mixed.js", MIXED);
    let counts: serde_json::Map<String, Value> = clis.iter().map(|(cli, n)| (cli.name.to_string(), json!(n))).collect();

    let out = project.spawn(&["run", "mixed.js", "--inputs", &json!({ "counts": counts }).to_string()]).wait(DEADLINE);
    assert_eq!(out.code, 0, "{out}");
    let results = out.json();
    assert_eq!(results.as_array().map(Vec::len), Some(10), "{results}");
    assert!(
        results.as_array().unwrap().iter().all(|r| r["text"] == tutti_testkit::mock_model::DEFAULT_TEXT),
        "{results}"
    );

    let events = project.events(&out.run_id());
    let times = |kind: &str| of_kind(&events, kind).iter().map(|e| e["ts_ms"].as_u64().unwrap()).collect::<Vec<_>>();
    let (started, resolved) = (times("effect_started"), times("effect_resolved"));
    assert_eq!((started.len(), resolved.len()), (10, 10), "{}", show(&events));
    let routed: Vec<&str> =
        of_kind(&events, "effect_routed").iter().filter_map(|e| e["event"]["harness"].as_str()).collect();
    for (cli, n) in clis {
        assert_eq!(routed.iter().filter(|h| **h == cli.name).count(), n, "{routed:?}");
    }
    let (last_start, first_end) = (started.iter().max().unwrap(), resolved.iter().min().unwrap());
    assert!(
        last_start < first_end,
        "every turn started ({last_start}) before the first ended ({first_end}): {}",
        show(&events)
    );
}

/// A member whose agent tells the coordinator something, then the coordinator's receive.
const TELLS: &str = r#"
import { defineTask } from "tutti";
const ask = defineTask("ask", (a) => ({ kind: "agent", title: "tell", agent: { prompt: a.prompt } }));
export async function process(inputs, ctx) {
  const dev = ctx.group("team", { members: ["dev"], harness: [inputs.harness] }).member("dev");
  const answer = await dev.task(ask, { prompt: "Tell the coordinator that the build is green." });
  return { answer, heard: await ctx.receive({ from: "team/dev", timeoutMs: 1000 }) };
}
"#;

/// The agent calls the `send` tool of the `tutti mcp` server its adapter registered; the message reaches the
/// coordinator through the journal.
fn the_agent_messages_the_coordinator_through_mcp(cli: &Cli) {
    let send = json!({"to": "coordinator", "text": format!("build is green, says {}", cli.name)});
    let mock = MockModel::start(
        Script::new().rule(When::request().user_says("Tell the coordinator").reply(Reply::tool("send", send))),
    );
    let project = project(cli, &mock.base_url(), 90_000);
    project.write("tells.js", TELLS);
    let inputs = json!({ "harness": cli.name }).to_string();
    let out = project.spawn(&["run", "tells.js", "--inputs", &inputs]).wait(DEADLINE);
    let requests = mock.requests().iter().map(|r| format!("{} {:?}: {}", r.path, r.tools, r.reply)).collect::<Vec<_>>();
    assert_eq!(out.code, 0, "{out}\nmock: {requests:#?}");
    let value = out.json();
    let heard = json!({"from": "team/dev", "body": format!("build is green, says {}", cli.name)});
    assert_eq!(value["heard"], heard, "{value}\nmock: {requests:#?}");
    assert_eq!(value["answer"], json!({"text": "done"}), "the answer after the tool result: {value}");
}

#[test]
fn claude_messages_the_coordinator_through_mcp() {
    the_agent_messages_the_coordinator_through_mcp(&CLAUDE);
}

/// With a model that supports tool search (`gpt-5.5`), codex defers MCP tools behind its `tool_search` tool,
/// which a real model uses and the mock cannot; with a model it has no metadata for, codex offers them.
#[test]
fn codex_messages_the_coordinator_through_mcp() {
    the_agent_messages_the_coordinator_through_mcp(&Cli { model: "mock-model", ..CODEX });
}

#[test]
fn gemini_messages_the_coordinator_through_mcp() {
    the_agent_messages_the_coordinator_through_mcp(&GEMINI);
}

#[test]
fn opencode_messages_the_coordinator_through_mcp() {
    the_agent_messages_the_coordinator_through_mcp(&OPENCODE);
}

/// examples/best-of-n.js: claude, codex and gemini answer the same task at once, then a judge (on claude)
/// picks the best answer, as JSON that its output schema checks.
#[test]
fn best_of_n_example_judges_three_clis_answers() {
    use tutti_testkit::mock_model::Api;
    let verdict = json!({"best": "codex", "reasons": "It names the idea and is the shortest."});
    let mock = MockModel::start(
        Script::new()
            .rule(When::request().user_says("Pick the best answer").reply(Reply::text(verdict.to_string())))
            .rule(When::request().api(Api::Anthropic).reply(Reply::text("Call it Tutti: the whole orchestra.")))
            .rule(When::request().api(Api::Responses).reply(Reply::text("Call it Ensemble.")))
            .rule(When::request().api(Api::Gemini).reply(Reply::text("Call it Chorus, since agents sing together."))),
    );
    let project = Project::with_examples(TUTTI);
    let tables: Vec<String> =
        [&CLAUDE, &CODEX, &GEMINI].iter().map(|cli| table(cli, &mock.base_url(), 90_000)).collect();
    project.write("tutti.toml", tables.join("\n"));

    let out = project.spawn(&["run", "best-of-n.js"]).wait(DEADLINE);
    assert_eq!(out.code, 0, "{out}");
    let value = out.json();
    let candidates = json!({
        "claude": "Call it Tutti: the whole orchestra.",
        "codex": "Call it Ensemble.",
        "gemini": "Call it Chorus, since agents sing together.",
    });
    assert_eq!(value["candidates"], candidates, "{value}");
    assert_eq!((&value["best"], &value["answer"]), (&json!("codex"), &json!("Call it Ensemble.")), "{value}");
    assert_eq!(value["reasons"], verdict["reasons"]);

    let requests = mock.requests();
    let judged = requests.iter().find(|r| r.last_user_text.contains("Pick the best answer")).expect("the judge's turn");
    assert_eq!(judged.api, Some(Api::Anthropic), "the judge runs on claude");
    for answer in candidates.as_object().unwrap().values() {
        assert!(judged.contains(answer.as_str().unwrap()), "the judge sees every answer: {:#?}", judged.body);
    }
    let events = project.events(&out.run_id());
    let bound: Vec<&str> =
        of_kind(&events, "member_bound").iter().filter_map(|e| e["event"]["harness"].as_str()).collect();
    assert_eq!(bound.len(), 4, "four members, four sessions: {}", show(&events));
}

/// pi exits 0 when the model API fails; the failure is only in its events (`stopReason: "error"`), and
/// tutti reports it as the task's error.
#[test]
fn pi_api_error_fails_the_task_though_pi_exits_0() {
    let mock =
        MockModel::start(Script::new().rule(When::request().user_says("Anyone there?").reply(Reply::error(400))));
    let project = project(&PI, &mock.base_url(), 90_000);
    project.write("member.js", MEMBER);
    let out = project.spawn(&["run", "member.js", "--inputs", &inputs(&PI, &["Anyone there?"])]).wait(DEADLINE);
    assert_eq!(out.code, 1, "{out}");
    let events = project.events(&out.run_id());
    let error = &of_kind(&events, "effect_resolved")[0]["event"]["outcome"]["error"];
    assert_eq!(error["name"], "AgentError", "{}", show(&events));
    assert!(error["message"].as_str().is_some_and(|m| m.starts_with("harness pi: 400")), "{}", show(&events));
    assert_eq!(error["data"]["exitCode"], 0, "pi itself exited 0: {}", show(&events));
}

/// Canary values for the keys a user typically has in their shell, and for a gateway key named by
/// `api_key_env`. None may end up in a file under the project after a turn.
const CANARIES: [(&str, &str); 4] = [
    ("ANTHROPIC_API_KEY", "canary-anthropic-3f9d1c"),
    ("OPENAI_API_KEY", "canary-openai-8b2e7a"),
    ("GEMINI_API_KEY", "canary-gemini-51c0e4"),
    ("TUTTI_TEST_GATEWAY_KEY", "canary-gateway-d7a6b3"),
];

/// Files under `dir` (recursively, symlinks not followed) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => {
                    let bytes = std::fs::read(&path).unwrap_or_default();
                    if bytes.windows(needle.len()).any(|w| w == needle) {
                        found.push(path);
                    }
                }
                _ => {}
            }
        }
    }
    found
}

/// One turn that runs a shell command through the CLI's own tool, with canary keys in tutti's environment.
/// While the CLI waits for the model's answer after its tool ran, and after the run, no canary is in any file
/// under the project, `.tutti/` included.
fn leaves_no_secret_on_disk(cli: &Cli) {
    let script =
        Script::new().rule(When::request().after_tool("shell").reply(Reply::hold(Reply::text("listed")))).rule(
            When::request()
                .user_says("List the files")
                .reply(Reply::tool("shell", json!({"command": "ls > listing.txt"}))),
        );
    let mock = MockModel::start(script);
    let project = Project::new(TUTTI);
    let table = table(cli, &mock.base_url(), 90_000);
    project.write("tutti.toml", format!("{table}api_key_env = \"TUTTI_TEST_GATEWAY_KEY\"\n"));
    project.write("member.js", MEMBER);
    let mut command = project.tutti();
    command.args(["run", "member.js", "--inputs", &inputs(cli, &["List the files into listing.txt."])]);
    command.envs(CANARIES);
    let run = project.spawn_command(command);
    wait_for(DEADLINE, "the answer after the tool to be held", || mock.held() == 1);
    let check = |when: &str| {
        for (var, canary) in CANARIES {
            let found = files_containing(project.root(), canary.as_bytes());
            assert!(found.is_empty(), "{when}: ${var} of tutti's environment was written to {found:?}");
        }
    };
    check("mid-turn");
    mock.release_held();
    let out = run.wait(DEADLINE);
    assert_eq!(out.code, 0, "{out}");
    assert!(project.read("listing.txt").is_some(), "the CLI ran its shell tool: {:#?}", mock.requests());
    assert!(project.path(&format!(".tutti/harness-home/{}", cli.name)).is_dir());
    check("after the run");
}

#[test]
fn claude_leaves_no_secret_on_disk() {
    leaves_no_secret_on_disk(&CLAUDE);
}

#[test]
fn codex_leaves_no_secret_on_disk() {
    leaves_no_secret_on_disk(&CODEX);
}

#[test]
fn gemini_leaves_no_secret_on_disk() {
    leaves_no_secret_on_disk(&GEMINI);
}

#[test]
fn pi_leaves_no_secret_on_disk() {
    leaves_no_secret_on_disk(&PI);
}

#[test]
fn opencode_leaves_no_secret_on_disk() {
    leaves_no_secret_on_disk(&OPENCODE);
}

/// Three members, one per CLI, three rounds of one turn each.
const ROUNDS: &str = r#"
import { defineTask } from "tutti";
const ask = defineTask("ask", (a) => ({ kind: "agent", title: a.prompt.slice(0, 20), agent: { prompt: a.prompt } }));
export async function process(inputs, ctx) {
  const team = ctx.group("team", { members: ["c", "x", "g"], harness: ["claude", "codex", "gemini"] });
  const rounds = [];
  for (const round of [1, 2, 3]) {
    rounds.push(await ctx.parallel.all(team.members.map((m) => () =>
      m.task(ask, { prompt: `Round ${round} for ${m.name}: reply briefly.` }))));
  }
  return rounds.map((r) => r.map((answer) => answer.text));
}
"#;

/// Ctrl-C while round 2's turns wait for the model, then resume against another model server: each member's
/// conversation, as the server receives it, holds each round's prompt exactly once.
#[test]
fn a_turn_interrupted_mid_round_is_resumed_once_on_claude_codex_and_gemini() {
    let first = MockModel::start(
        Script::new().rule(When::request().user_says("Round 2").reply(Reply::hold(Reply::text("late")))),
    );
    let project = Project::new(TUTTI);
    let tables = |url: &str| [&CLAUDE, &CODEX, &GEMINI].map(|cli| table(cli, url, 120_000)).join("\n");
    project.write("tutti.toml", tables(&first.base_url()));
    project.write("rounds.js", ROUNDS);
    let driver = project.spawn(&["run", "rounds.js"]);
    wait_for(DEADLINE, "round 2's three turns to wait for the model", || first.held() == 3);
    let run = driver.run_id();
    driver.signal(libc::SIGINT);
    let out = driver.wait(DEADLINE);
    assert_eq!(out.code, 130, "{out}");

    let second = MockModel::start(Script::new());
    project.write("tutti.toml", tables(&second.base_url()));
    let out = project.spawn(&["resume", &run]).wait(DEADLINE);
    assert_eq!(out.code, 0, "{out}");
    let requests = second.requests();
    for member in ["c", "x", "g"] {
        let asked: Vec<_> = requests
            .iter()
            .filter(|r| r.api.is_some() && r.last_user_text.contains(&format!("for {member}:")))
            .collect();
        assert_eq!(asked.len(), 2, "member {member}: rounds 2 and 3 after the resume: {asked:#?}");
        for r in asked {
            let body = r.body.to_string();
            for round in [1, 2] {
                let prompt = format!("Round {round} for {member}: reply briefly.");
                assert_eq!(
                    body.matches(&prompt).count(),
                    1,
                    "member {member}: \"{prompt}\" in the request for \"{}\":\n{body}",
                    r.last_user_text
                );
            }
        }
    }
}

/// claude, codex and gemini each edit README.md with their own file tool in their own worktree; the merge queue
/// then takes claude's branch as it is and has claude resolve the two conflicts, so the integration branch holds
/// all three contributions.
#[test]
fn three_clis_edit_one_repository_in_worktrees_and_a_claude_resolver_merges_them() {
    let line = |who: &str| format!("{who} was here");
    let readme = |who: &[&str]| format!("# demo\n{}\n", who.iter().map(|w| line(w)).collect::<Vec<_>>().join("\n"));
    // Claude Code's Write tool refuses to overwrite a file it has not read in the session: claude edits with its
    // Bash tool, codex and gemini with their file-writing tools.
    let by_shell = |content: &str| {
        let printf = format!("printf '{}' > README.md", content.replace('\n', "\\n"));
        Reply::tool("shell", json!({ "command": printf }))
    };
    let by_file = |content: &str| Reply::tool("write_file", json!({"path": "README.md", "content": content}));
    let mut script = Script::new();
    for who in ["claude", "codex", "gemini"] {
        let content = readme(&[who]);
        let reply = if who == "claude" { by_shell(&content) } else { by_file(&content) };
        script = script.rule(When::request().user_says(format!("Add the {who} line")).reply(reply));
    }
    // The resolver sees which branch conflicts: codex's (item 1) over claude's, then gemini's (item 2) over both.
    // Item 2's rule comes first: Claude Code puts the recent commits (item 1's merge among them) in its prompt.
    for (item, who) in
        [("parallel-2/0", &["claude", "codex", "gemini"][..]), ("parallel-1/0", &["claude", "codex"][..])]
    {
        script = script.rule(When::request().user_says(format!("{item} into")).reply(by_shell(&readme(who))));
    }
    let mock = MockModel::start(script);
    let project = Project::new(TUTTI);
    let toml: Vec<String> =
        [&CLAUDE, &CODEX, &GEMINI].iter().map(|cli| table(cli, &mock.base_url(), 120_000)).collect();
    project.write("tutti.toml", toml.join("\n"));
    project.write("README.md", "# demo\n");
    project.write(
        "p.js",
        r#"
import { defineTask } from "tutti";
const edit = defineTask("edit", (a) => ({ kind: "agent", harness: a.harness, isolation: "worktree",
  title: `edit by ${a.harness}`, agent: { prompt: `Add the ${a.harness} line to README.md.` } }));
const resolve = defineTask("resolve", (a) => ({ kind: "agent", harness: "claude", title: "resolve",
  agent: { prompt: `Resolve the merge of ${a.branch} into ${a.into}: keep every line, no conflict markers (${a.files.join(", ")}).` } }));
export async function process(inputs, ctx) {
  const results = await ctx.parallel.map(["claude", "codex", "gemini"], (h) => ctx.task(edit, { harness: h }));
  return await ctx.merge(results, { onConflict: resolve });
}
"#,
    );
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").arg("-C").arg(project.root()).args(args).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["config", "user.name", "Test"]);
    git(&["config", "user.email", "test@localhost"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "start"]);

    let mut command = project.tutti();
    command.args(["run", "p.js"]);
    let out = project.spawn_command(command).wait(DEADLINE);
    let tails = || {
        mock.requests()
            .iter()
            .map(|r| {
                let tail: String = r.last_user_text.chars().rev().take(160).collect::<String>().chars().rev().collect();
                format!("{tail} => {}", r.reply)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(out.code, 0, "{out}\nmock: {:#?}\n{}", tails(), show(&project.events(&out.run_id())));
    let value = out.json();
    assert_eq!(value["merged"].as_array().map(Vec::len), Some(1), "{value}");
    assert_eq!(value["resolved"].as_array().map(Vec::len), Some(2), "{value}");
    let branch = value["branch"].as_str().expect("branch");
    assert_eq!(
        git(&["show", &format!("{branch}:README.md")]),
        readme(&["claude", "codex", "gemini"]),
        "{value}\nmock: {:#?}\n{}",
        tails(),
        show(&project.events(&out.run_id()))
    );
    // Each CLI worked in its own worktree, on its own branch, from the same base.
    let events = project.events(&out.run_id());
    let worktrees: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"]["type"] == "effect_resolved")
        .filter_map(|e| e["event"]["outcome"]["value"]["inline"].get("worktree"))
        .collect();
    let branches: std::collections::BTreeSet<&str> = worktrees.iter().filter_map(|w| w["branch"].as_str()).collect();
    assert_eq!(branches.len(), 3, "{}", show(&events));
    assert!(worktrees.iter().all(|w| w["files"] == json!(["README.md"])), "{}", show(&events));
    assert_eq!(git(&["show", "main:README.md"]), "# demo\n", "the user's branch is untouched");
}

/// While a CLI's turn runs (held after its tool call), tutti has already journaled the tool call as progress:
/// the stream is read line by line, not at exit.
fn journals_a_tool_call_as_progress_while_the_turn_runs(cli: &Cli) {
    let script =
        Script::new().rule(When::request().after_tool("write_file").reply(Reply::hold(Reply::text("done")))).rule(
            When::request()
                .user_says("Create notes.txt")
                .reply(Reply::tool("write_file", json!({"path": "notes.txt", "content": "notes\n"}))),
        );
    let mock = MockModel::start(script);
    let project = project(cli, &mock.base_url(), 90_000);
    project.write("member.js", MEMBER);
    let mut command = project.tutti();
    command.args(["run", "member.js", "--inputs", &inputs(cli, &["Create notes.txt, please."])]);
    let driver = project.spawn_command(command);
    let run = driver.run_id();
    wait_for(DEADLINE, "the answer after the tool to be held", || mock.held() == 1);
    let progress = project.wait_for_event(&run, "a tool call journaled as progress", |e| {
        e["event"]["type"] == "effect_progress"
            && e["event"]["message"].as_str().is_some_and(|m| m.starts_with("tool "))
    });
    let events = project.events(&run);
    assert!(of_kind(&events, "effect_resolved").is_empty(), "progress came before the result:\n{}", show(&events));
    let message = progress["event"]["message"].as_str().unwrap_or("");
    assert!(message.contains("notes.txt"), "the note names the file: {message}");
    mock.release_held();
    let out = driver.wait(DEADLINE);
    assert_eq!(out.code, 0, "{out}");
    // The transcript: the prompt, the tool call, the answer; by effect and by member.
    for target in ["group:team/dev/0", "team/dev"] {
        let logs = project.run(&["logs", &run, target]);
        assert_eq!(logs.code, 0, "{logs}");
        assert!(logs.stdout.contains("Create notes.txt, please."), "{}: the prompt\n{logs}", cli.name);
        assert!(
            logs.stdout.lines().any(|l| l.starts_with("tool ") && l.contains("notes.txt")),
            "{}: the tool call\n{logs}",
            cli.name
        );
        assert!(logs.stdout.contains("answer: done"), "{}: the answer\n{logs}", cli.name);
    }
    let raw = project.run(&["logs", &run, "team/dev", "--raw"]);
    assert!(raw.stdout.lines().filter(|l| l.starts_with('{')).count() >= 2, "the CLI's own stream:\n{raw}");
}

#[test]
fn claude_turn_progress_is_journaled_live() {
    journals_a_tool_call_as_progress_while_the_turn_runs(&CLAUDE);
}

#[test]
fn codex_turn_progress_is_journaled_live() {
    journals_a_tool_call_as_progress_while_the_turn_runs(&CODEX);
}

#[test]
fn gemini_turn_progress_is_journaled_live() {
    journals_a_tool_call_as_progress_while_the_turn_runs(&GEMINI);
}

#[test]
fn pi_turn_progress_is_journaled_live() {
    journals_a_tool_call_as_progress_while_the_turn_runs(&PI);
}

#[test]
fn opencode_turn_progress_is_journaled_live() {
    journals_a_tool_call_as_progress_while_the_turn_runs(&OPENCODE);
}

/// A CLI that keeps reporting it cannot reach its model is given up after `unreachable_after_ms` of no contact
/// (60 s by default), long before its task's timeout: the text output says it cannot reach the model, and the
/// task falls back to the next harness.
#[test]
fn codex_that_cannot_reach_its_model_is_given_up_and_the_task_falls_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let project = Project::new(TUTTI);
    let codex = table(&CODEX, &format!("http://127.0.0.1:{port}"), 300_000);
    project.write(
        "tutti.toml",
        format!(
            "{codex}unreachable_after_ms = 3000\n\n[harness.backup]\ncommand = [\"sh\", \"-c\", \"cat > /dev/null; echo '{{\\\"by\\\": \\\"backup\\\"}}'\"]\n"
        ),
    );
    let process = r#"
import { defineTask } from "tutti";
const ask = defineTask("ask", (a) => ({ kind: "agent", title: "ask", harness: a.harness, agent: { prompt: "hi" } }));
export async function process(inputs, ctx) { return (await ctx.task(ask, { harness: inputs.harness })).by ?? "codex"; }
"#;
    project.write("p.js", process);
    let started = std::time::Instant::now();
    let alone = project.run(&["run", "p.js", "--inputs", r#"{"harness": "codex"}"#]);
    assert_eq!(alone.code, 1, "{alone}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "given up long before the 300 s timeout: {:?}",
        started.elapsed()
    );
    assert!(alone.stderr.contains("cannot reach its model at http://127.0.0.1:"), "{alone}");
    assert!(alone.stderr.contains("Unreachable"), "{alone}");

    let both = project.run(&["run", "p.js", "--inputs", r#"{"harness": ["codex", "backup"]}"#]);
    assert_eq!(both.code, 0, "{both}");
    assert_eq!(both.json(), "backup");
}

/// Three members on three CLIs take turns in rounds until none may start another.
const BUDGET_ROUNDS: &str = r#"
import { defineTask } from "tutti";
const ask = defineTask("ask", (a) => ({ kind: "agent", title: a.prompt, agent: { prompt: a.prompt } }));
export async function process(inputs, ctx) {
  const team = ctx.group("mixed", { members: ["c", "x", "p"], harness: ["claude", "codex", "pi"] });
  const rounds = [];
  for (let r = 0; r < 6; r++) {
    const asks = team.members.map((m) => m.task(ask, { prompt: `Round ${r} for ${m.name}.` }));
    const round = (await Promise.allSettled(asks)).map((s) => (s.status === "fulfilled" ? "ok" : s.reason.name));
    rounds.push(round);
    if (round.every((x) => x === "BudgetExceeded")) break;
  }
  return rounds;
}
"#;

/// claude prices its turns itself; codex's tokens are priced by tutti's default table (gpt-5.5) and pi's by
/// `[prices."mock-model"]`. A run budget over the three stops new turns at its limit.
#[test]
fn a_run_budget_over_three_clis_prices_each_and_stops_new_turns_at_the_limit() {
    // 100,000 tokens in and 10,000 out per request: $0.45 on claude-sonnet-4-5, $0.80 on gpt-5.5, and $0.30 on
    // mock-model at $2 / $10 per million.
    let big = tutti_testkit::mock_model::Usage { input: 100_000, output: 10_000, cache_read: 0, cache_write: 0 };
    let mock = MockModel::start(Script::new().with_usage(big));
    let project = Project::new(TUTTI);
    let tables: Vec<String> = [&CLAUDE, &CODEX, &PI].iter().map(|cli| table(cli, &mock.base_url(), 150_000)).collect();
    project
        .write("tutti.toml", format!("{}\n[prices.\"mock-model\"]\ninput = 2.0\noutput = 10.0\n", tables.join("\n")));
    project.write("rounds.js", BUDGET_ROUNDS);
    let out = project.spawn(&["run", "rounds.js", "--budget-usd", "2.5"]).wait(DEADLINE);
    assert_eq!(out.code, 0, "{out}");
    let rounds: Vec<Vec<String>> = serde_json::from_value(out.json()).expect("rounds");
    assert_eq!(rounds[0], ["ok", "ok", "ok"], "{rounds:?}");
    assert!(rounds.last().is_some_and(|r| r.iter().all(|x| x == "BudgetExceeded")), "it stops: {rounds:?}");

    let events = project.events(&out.run_id());
    let usage = of_kind(&events, "effect_usage");
    // claude's cost is its own (its catalog's price for this prompt size), journaled as it reported it.
    let claude: Vec<&Value> = usage.iter().map(|e| &e["event"]).filter(|e| e["harness"] == "claude").collect();
    assert!(!claude.is_empty(), "claude ran: {}", show(&events));
    for r in &claude {
        assert!(r["usage"]["cost_usd"].as_f64().is_some_and(|usd| usd > 0.1), "{r}");
        assert!(r["usage"].get("priced").is_none(), "claude's own cost, not the table's: {r}");
    }
    // codex's and pi's cost is their tokens at the table's price for their model.
    for (harness, [input, output, read, write], priced) in [
        ("codex", [5.0, 30.0, 0.5, 0.0], json!("default prices (2026-12-02)")),
        ("pi", [2.0, 10.0, 0.0, 0.0], json!("tutti.toml [prices.\"mock-model\"]")),
    ] {
        let reports: Vec<&Value> = usage.iter().map(|e| &e["event"]).filter(|e| e["harness"] == harness).collect();
        assert!(!reports.is_empty(), "{harness} ran: {}", show(&events));
        for r in reports {
            let u = &r["usage"];
            let n = |k: &str| u[k].as_f64().unwrap_or(0.0);
            let list = (n("input_tokens") * input
                + n("output_tokens") * output
                + n("cache_read_tokens") * read
                + n("cache_write_tokens") * write)
                / 1e6;
            let cost = u["cost_usd"].as_f64().unwrap_or(-1.0);
            assert!(list > 0.1 && (cost - list).abs() < 1e-6, "{harness}: ${cost}, at list price ${list}: {u}");
            assert_eq!(u["priced"], priced, "{harness}: {u}");
        }
    }
    // Each admitted turn fit: spend so far, plus what running turns were expected to spend, plus its own
    // expected cost. A turn may still cost more than expected (claude's resumed turns did), so the run ends
    // within its limit plus one turn's cost; and once the limit is reached, no turn starts.
    let costs: Vec<f64> = usage.iter().filter_map(|e| e["event"]["usage"]["cost_usd"].as_f64()).collect();
    let total: f64 = costs.iter().sum();
    let largest = costs.iter().copied().fold(0.0, f64::max);
    assert!(total <= 2.5 + largest + 1e-9, "the run spent ${total} of its $2.50: {}", show(&events));
    let (mut spent, mut held) = (0.0, std::collections::HashMap::new());
    for e in &events {
        let ev = &e["event"];
        match ev["type"].as_str() {
            Some("effect_usage") => spent += ev["usage"]["cost_usd"].as_f64().unwrap_or(0.0),
            Some("effect_resolved") => drop(held.remove(ev["effect"].as_str().unwrap_or(""))),
            Some("budget_reserved") => {
                let outstanding: f64 = held.values().sum();
                let usd = ev["usd"].as_f64().unwrap_or(0.0);
                assert!(spent + outstanding + usd <= 2.5 + 1e-9, "admitted without room: {ev}\n{}", show(&events));
                held.insert(ev["effect"].as_str().unwrap_or("").to_string(), usd);
            }
            _ => {}
        }
    }
    let first_no = events.iter().position(|e| e["event"]["type"] == "budget_exceeded").expect("a refusal");
    assert!(
        events[first_no..].iter().all(|e| e["event"]["type"] != "effect_started"),
        "no turn starts once the limit is reached: {}",
        show(&events)
    );
    let refused = of_kind(&events, "budget_exceeded");
    assert!(refused.len() >= 3 && refused.iter().all(|r| r["event"]["scope"] == "run"), "{}", show(&events));
    assert_eq!(of_kind(&events, "effect_started").len(), usage.len(), "every started turn was paid: {}", show(&events));
    let status = project.run(&["status", &out.run_id()]);
    assert!(status.stdout.contains(&format!("run                    ${total:.2} of $2.50")), "{status}");
    assert!(status.stdout.contains("REACHED its usd limit"), "{status}");
}
