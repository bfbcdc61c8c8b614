//! The validated configuration: where the project root and the database are, what `tutti.toml` says, and
//! the harnesses a run may use. Every problem here is the user's to fix, so errors name the file and field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Deserialize;
use tutti_engine::budget::Limits;
use tutti_engine::prices::{Price, Prices};
use tutti_engine::{Harness, Harnesses};
use tutti_harness::external::External;
use tutti_harness::{
    AgentConfig, ClaudeHarness, CodexHarness, CommandConfig, CommandHarness, EchoHarness, GeminiHarness, NodeHarness,
    OpencodeHarness, PiHarness, ShellHarness,
};

use crate::output::UserError;

/// Harness names tutti defines itself.
const BUILT_IN: &[&str] = &["shell", "node", "echo"];
const DEFAULT_MAX_PARALLEL: usize = 16;
/// Agent CLIs with an adapter: `[harness.NAME] use = "claude"`, or a table named after one without `command`.
const AGENT_CLIS: &[&str] = &["claude", "codex", "gemini", "pi", "opencode"];

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    worktrees: WorktreesTable,
    /// Read as tables first: whether one is a command or an agent CLI depends on its fields.
    #[serde(default)]
    harness: BTreeMap<String, toml::Table>,
    /// `[budget]`: the run's budget (`usd`, `tokens`, `turns`, `time`, `on_exceed`).
    budget: Option<toml::Table>,
    /// `[prices."MODEL"]`: US dollars per million tokens, over the default price table.
    #[serde(default)]
    prices: BTreeMap<String, PriceTable>,
    /// `[store]`: where the journal lives.
    #[serde(default)]
    store: StoreTable,
}

/// `[store]`.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct StoreTable {
    url: Option<String>,
}

/// Where the journal lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreLocation {
    /// The project's SQLite file (`.tutti/tutti.db`), the embedded default.
    Sqlite(PathBuf),
    /// A PostgreSQL database (`--store`, `TUTTI_STORE` or `[store] url`), for distributed mode.
    Postgres(String),
}

impl StoreLocation {
    /// `url` as given by the user (`from` names where, for the error).
    fn parse(url: &str, from: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_string()));
        }
        let shown = tutti_journal::pg::without_password(url);
        Err(UserError::new(format!(
            "{from}: {shown:?} is not a store tutti knows: give a PostgreSQL URL (postgres://USER@HOST/DATABASE), \
             or leave it out to keep the journal in the project's SQLite file"
        ))
        .into())
    }

    /// The journal as messages show it (no password).
    pub(crate) fn shown(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Postgres(url) => tutti_journal::pg::without_password(url),
        }
    }
}

/// `[prices."MODEL"]`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct PriceTable {
    input: f64,
    output: f64,
    #[serde(default)]
    cache_read: f64,
    #[serde(default)]
    cache_write: f64,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct Defaults {
    harness: Option<String>,
    max_parallel: Option<usize>,
}

/// `[worktrees]`: which worktrees a finished run keeps.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct WorktreesTable {
    keep: Option<Keep>,
}

/// Which worktrees a finished run keeps (their branches are always kept).
#[derive(Deserialize, Default, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Keep {
    /// Every worktree.
    All,
    /// The worktrees whose branch no merge of the run took (the default).
    #[default]
    Unmerged,
    /// None.
    None,
}

#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) root: PathBuf,
    /// Whether `root` is a project already (it holds `tutti.toml` or `.tutti/`). Only `run` and `import`
    /// make a folder a project; every other command needs one.
    pub(crate) is_project: bool,
    pub(crate) db: PathBuf,
    /// Where the journal lives: `db`, or a PostgreSQL database.
    pub(crate) store: StoreLocation,
    pub(crate) default_harness: Option<String>,
    pub(crate) max_parallel: usize,
    /// `[worktrees] keep`.
    pub(crate) keep_worktrees: Keep,
    harness: BTreeMap<String, HarnessConfig>,
    /// `[budget]`, checked.
    pub(crate) budget: Limits,
    /// Each harness's `budget_*` limits and `reserve_*` expected cost per attempt.
    harness_budgets: BTreeMap<String, HarnessBudget>,
    /// The default price table with `[prices."MODEL"]` over it.
    pub(crate) prices: Prices,
}

/// A harness's budget (`budget_usd`, `budget_tokens`, `budget_turns`) and expected cost per attempt
/// (`reserve_usd`, `reserve_tokens`).
type HarnessBudget = (Limits, Option<f64>, Option<u64>);

/// One `[harness.NAME]` table.
#[derive(Debug)]
enum HarnessConfig {
    /// `command = [...]`: the generic command harness.
    Command(CommandConfig),
    /// An agent CLI (one of [`AGENT_CLIS`]).
    Agent { cli: String, config: AgentConfig },
}

impl Config {
    /// Find the project root and read its `tutti.toml`.
    pub(crate) fn load(home: Option<&Path>, store: Option<&str>) -> Result<Self> {
        let root = match home {
            Some(dir) => dir.to_path_buf(),
            None => find_root(&std::env::current_dir().context("cannot read the working directory")?),
        };
        let root = std::fs::canonicalize(&root)
            .map_err(|e| UserError::new(format!("project root {}: {e}", root.display())))?;
        let is_project = is_project(&root);
        let file = read_file(&root.join("tutti.toml"))?;
        let max_parallel = file.defaults.max_parallel.unwrap_or(DEFAULT_MAX_PARALLEL);
        if max_parallel == 0 {
            return Err(UserError::new("tutti.toml: [defaults] max_parallel must be at least 1").into());
        }
        let budget = match &file.budget {
            Some(table) => budget_table(table).map_err(|e| UserError::new(format!("tutti.toml: [budget]: {e}")))?,
            None => Limits::default(),
        };
        let mut prices = Prices::default();
        for (model, p) in &file.prices {
            let price =
                Price { input: p.input, output: p.output, cache_read: p.cache_read, cache_write: p.cache_write };
            if [price.input, price.output, price.cache_read, price.cache_write]
                .iter()
                .any(|x| !x.is_finite() || *x < 0.0)
            {
                let message = format!(
                    "tutti.toml: [prices.\"{model}\"]: prices must be numbers of at least 0 (US dollars per million tokens)"
                );
                return Err(UserError::new(message).into());
            }
            prices.set(model, price, format!("tutti.toml [prices.\"{model}\"]"));
        }
        let mut harness = BTreeMap::new();
        let mut harness_budgets = BTreeMap::new();
        for (name, mut table) in file.harness {
            if BUILT_IN.contains(&name.as_str()) {
                return Err(UserError::new(format!(
                    "tutti.toml: [harness.{name}]: \"{name}\" is a built-in harness name"
                ))
                .into());
            }
            let budgets =
                harness_budget(&mut table).map_err(|e| UserError::new(format!("tutti.toml: [harness.{name}]: {e}")))?;
            if let Some(budgets) = budgets {
                harness_budgets.insert(name.clone(), budgets);
            }
            let config = harness_config(&name, table)
                .map_err(|e| UserError::new(format!("tutti.toml: [harness.{name}]: {}", e.trim_end())))?;
            harness.insert(name, config);
        }
        let db = root.join(".tutti").join("tutti.db");
        let store = match (store, &file.store.url) {
            (Some(url), _) => StoreLocation::parse(url, "--store")?,
            (None, Some(url)) => StoreLocation::parse(url, "tutti.toml: [store] url")?,
            (None, None) => StoreLocation::Sqlite(db.clone()),
        };
        Ok(Self {
            db,
            store,
            root,
            is_project,
            default_harness: file.defaults.harness,
            max_parallel,
            keep_worktrees: file.worktrees.keep.unwrap_or_default(),
            harness,
            budget,
            harness_budgets,
            prices,
        })
    }

    /// The harnesses of a run; `choice` (from `--harness`) overrides the default agent harness.
    pub(crate) fn harnesses(&self, choice: Option<&str>) -> Result<Harnesses> {
        let mut set = Harnesses::new();
        set.add(Arc::new(ShellHarness::new()));
        set.add(Arc::new(NodeHarness::new()));
        set.add(Arc::new(EchoHarness::new()));
        // Agent tasks routed here wait for `tutti post` (an outer agent running `tutti iterate`).
        set.add(Arc::new(External::new(External::NAME)));
        for (name, config) in &self.harness {
            let harness: Arc<dyn Harness> = match config {
                HarnessConfig::Command(config) => Arc::new(
                    CommandHarness::new(name.clone(), config.clone())
                        .map_err(|e| UserError::new(format!("tutti.toml: [harness.{name}]: {e}")))?,
                ),
                HarnessConfig::Agent { cli, config } => agent_harness(cli, name, config),
            };
            if let Some(retry) = harness.retry() {
                tutti_engine::retry::check(&retry)
                    .map_err(|why| UserError::new(format!("tutti.toml: [harness.{name}] retry: {why}")))?;
            }
            set.add(harness);
        }
        let default = choice.map(String::from).or_else(|| self.default_harness.clone());
        if let Some(name) = default.as_ref().filter(|n| set.get(n).is_none()) {
            let known: Vec<&str> = set.names().collect();
            let source = if choice.is_some() { "--harness" } else { "tutti.toml: [defaults] harness" };
            return Err(UserError::new(format!(
                "{source}: unknown harness \"{name}\" (known: {}; add one under [harness.{name}] in tutti.toml)",
                known.join(", ")
            ))
            .into());
        }
        set.set_default_agent(default);
        Ok(set)
    }
}

impl Config {
    /// The budgets a new run journals in its options (`budget: { run, harness, reserve }`), `run` being
    /// `[budget]` with `flags` over it; `None` when nothing has a budget.
    pub(crate) fn run_budgets(&self, flags: &Limits) -> Option<serde_json::Value> {
        use serde_json::json;
        let mut run = self.budget.clone();
        run.usd = flags.usd.or(run.usd);
        run.tokens = flags.tokens.or(run.tokens);
        run.turns = flags.turns.or(run.turns);
        run.time_ms = flags.time_ms.or(run.time_ms);
        let mut harness = serde_json::Map::new();
        let mut reserve = serde_json::Map::new();
        for (name, (limits, usd, tokens)) in &self.harness_budgets {
            if !limits.is_empty() {
                harness.insert(name.clone(), limits.to_json());
            }
            if usd.is_some() || tokens.is_some() {
                reserve.insert(name.clone(), json!({ "usd": usd, "tokens": tokens }));
            }
        }
        if run.is_empty() && harness.is_empty() && reserve.is_empty() {
            return None;
        }
        Some(json!({ "run": (!run.is_empty()).then(|| run.to_json()), "harness": harness, "reserve": reserve }))
    }

    /// The configuration in effect of harness `name` as `tutti doctor` shows it: its kind, and for an agent
    /// CLI where its binary is found, its gateway, model and key variable (whether set, never its value);
    /// for a command harness its command line. Built-in harnesses have no table.
    pub(crate) fn effective(&self, name: &str) -> serde_json::Value {
        use serde_json::json;
        match self.harness.get(name) {
            None => json!({ "kind": "built-in" }),
            Some(HarnessConfig::Command(c)) => json!({
                "kind": "command",
                "command": c.command,
                "env": c.env.keys().collect::<Vec<_>>(),
                "timeoutMs": c.timeout_ms,
            }),
            Some(HarnessConfig::Agent { cli, config }) => json!({
                "kind": cli,
                "binary": tutti_harness::cli::locate_cli(cli, config, &self.root).map(|p| p.display().to_string()),
                "baseUrl": config.base_url,
                "model": config.model,
                "apiKeyEnv": config.api_key_env.as_ref().map(|var| json!({
                    "name": var,
                    "set": std::env::var_os(var).is_some_and(|v| !v.is_empty()),
                })),
                "args": config.args,
                "passEnv": config.pass_env,
                "env": config.env.keys().collect::<Vec<_>>(),
                "timeoutMs": config.timeout_ms,
            }),
        }
    }

    /// Whether some harness runs agent CLI `cli` against a gateway (`base_url`), which needs no key of the
    /// CLI's own provider.
    pub(crate) fn has_gateway_for(&self, cli: &str) -> bool {
        self.harness.values().any(|h| matches!(h, HarnessConfig::Agent { cli: c, config } if c == cli && (config.base_url.is_some() || config.api_key_env.is_some())))
    }
}

/// `[budget]`: `usd`, `tokens`, `turns`, `time` (`"2h"`, `"90m"`, or milliseconds) and `on_exceed`.
fn budget_table(table: &toml::Table) -> Result<Limits, String> {
    let mut json = serde_json::Map::new();
    for (key, value) in table {
        let value = serde_json::to_value(value).map_err(|e| e.to_string())?;
        match key.as_str() {
            "time" => {
                let ms = match &value {
                    serde_json::Value::String(text) => parse_duration(text)?,
                    other => other
                        .as_u64()
                        .ok_or_else(|| format!("time must be a duration like \"2h\" or \"90m\", not {other}"))?,
                };
                json.insert("timeMs".into(), ms.into());
            }
            "on_exceed" => {
                json.insert("onExceed".into(), value);
            }
            "timeMs" | "onExceed" => {
                return Err(format!(
                    "`{key}`: in tutti.toml write `{}`",
                    if key == "timeMs" { "time" } else { "on_exceed" }
                ));
            }
            _ => {
                json.insert(key.clone(), value);
            }
        }
    }
    Limits::parse(&serde_json::Value::Object(json), "budget")
        .map_err(|e| e.trim_start_matches("budget.").replace("timeMs, onExceed", "time, on_exceed"))
}

/// Take a harness table's budget fields out of it: `budget_usd`, `budget_tokens`, `budget_turns` (its limits
/// over the whole run) and `reserve_usd`, `reserve_tokens` (what one attempt is expected to spend).
fn harness_budget(table: &mut toml::Table) -> Result<Option<HarnessBudget>, String> {
    let mut json = serde_json::Map::new();
    for (field, key) in [("budget_usd", "usd"), ("budget_tokens", "tokens"), ("budget_turns", "turns")] {
        if let Some(v) = table.remove(field) {
            json.insert(key.to_string(), serde_json::to_value(v).map_err(|e| e.to_string())?);
        }
    }
    let limits =
        Limits::parse(&serde_json::Value::Object(json), "budget").map_err(|e| e.replacen("budget.", "budget_", 1))?;
    let number = |v: toml::Value, field: &str| {
        let f = v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
        f.filter(|f| f.is_finite() && *f >= 0.0)
            .ok_or_else(|| format!("{field} must be a number of at least 0, not {v}"))
    };
    let reserve_usd = table.remove("reserve_usd").map(|v| number(v, "reserve_usd")).transpose()?;
    let reserve_tokens =
        table.remove("reserve_tokens").map(|v| number(v, "reserve_tokens").map(|f| f as u64)).transpose()?;
    let any = !limits.is_empty() || reserve_usd.is_some() || reserve_tokens.is_some();
    Ok(any.then_some((limits, reserve_usd, reserve_tokens)))
}

/// A duration: `2h`, `90m`, `45s`, `1h30m`, `500ms`, or a plain number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a duration: write it like 2h, 90m, 45s, 1h30m or 500ms");
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds * 1000);
    }
    let (mut total, mut number) = (0u64, String::new());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().map_err(|_| bad())?;
        number.clear();
        let unit = match c {
            'h' => 3_600_000,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            'm' => 60_000,
            's' => 1000,
            _ => return Err(bad()),
        };
        total += n * unit;
    }
    if !number.is_empty() || total == 0 && !text.starts_with('0') {
        return Err(bad());
    }
    Ok(total)
}

/// The adapter for agent CLI `cli` (one of [`AGENT_CLIS`], checked when the table was read).
pub(crate) fn agent_harness(cli: &str, name: &str, config: &AgentConfig) -> Arc<dyn Harness> {
    let (name, config) = (name.to_string(), config.clone());
    match cli {
        "claude" => Arc::new(ClaudeHarness::new(name, config)),
        "gemini" => Arc::new(GeminiHarness::new(name, config)),
        "pi" => Arc::new(PiHarness::new(name, config)),
        "opencode" => Arc::new(OpencodeHarness::new(name, config)),
        _ => Arc::new(CodexHarness::new(name, config)),
    }
}

/// What a `[harness.NAME]` table configures: an agent CLI when it says `use = "CLI"` or is named after one
/// and has no `command`; otherwise a command harness, read exactly as before agent CLIs existed.
fn harness_config(name: &str, mut table: toml::Table) -> Result<HarnessConfig, String> {
    let cli = match table.remove("use") {
        Some(toml::Value::String(cli)) => Some(cli),
        Some(_) => return Err("`use` must be a string".into()),
        None => (AGENT_CLIS.contains(&name) && !table.contains_key("command")).then(|| name.to_string()),
    };
    if cli.is_none() && !table.contains_key("command") {
        let known = AGENT_CLIS.join(", ");
        return Err(match AGENT_CLIS.iter().find(|known| edit_distance(name, known) <= 2) {
            Some(like) => format!(
                "no `command` and no agent CLI called \"{name}\": did you mean [harness.{like}]? To give {like} \
                 another name, add `use = \"{like}\"`"
            ),
            None => format!(
                "no `command`: give `command = [\"program\", \"arg\"]` to run a program, or `use = \"CLI\"` for an \
                 agent CLI ({known})"
            ),
        });
    }
    let table = toml::Value::Table(table);
    match cli {
        None => table.try_into().map(HarnessConfig::Command).map_err(|e| e.to_string()),
        Some(cli) if AGENT_CLIS.contains(&cli.as_str()) => {
            table.try_into().map(|config| HarnessConfig::Agent { cli, config }).map_err(|e| e.to_string())
        }
        Some(other) => Err(format!("use = \"{other}\": no adapter for that CLI (known: {})", AGENT_CLIS.join(", "))),
    }
}

/// The Levenshtein distance between two short names, to suggest the name a typo meant.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The nearest ancestor of `cwd` holding `tutti.toml` or `.tutti/`, else `cwd`.
fn find_root(cwd: &Path) -> PathBuf {
    cwd.ancestors().find(|dir| is_project(dir)).unwrap_or(cwd).to_path_buf()
}

fn is_project(dir: &Path) -> bool {
    dir.join("tutti.toml").is_file() || dir.join(".tutti").is_dir()
}

fn read_file(path: &Path) -> Result<File> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(File::default()),
        Err(e) => return Err(UserError::new(format!("cannot read {}: {e}", path.display())).into()),
    };
    toml::from_str(&text).map_err(|e| UserError::new(format!("{}: {e}", path.display())).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_nearest_marked_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(find_root(&deep), deep);
        std::fs::write(dir.path().join("a/tutti.toml"), "").unwrap();
        assert_eq!(find_root(&deep), dir.path().join("a"));
    }

    #[test]
    fn durations_read_as_people_write_them_and_anything_else_is_refused() {
        let ok = |text: &str| parse_duration(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(ok("2h"), 7_200_000);
        assert_eq!(ok("90m"), 5_400_000);
        assert_eq!(ok("1h30m"), 5_400_000);
        assert_eq!(ok("45s"), 45_000);
        assert_eq!(ok("500ms"), 500);
        assert_eq!(ok("30"), 30_000, "a plain number is seconds");
        assert_eq!(ok("0s"), 0);
        for bad in ["soon", "2d", "h", "1.5h", "-1h", "2h30", ""] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains("is not a duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn budget_and_harness_budget_tables_are_checked_field_by_field() {
        let table = |text: &str| -> toml::Table { toml::from_str(text).unwrap() };
        let limits = budget_table(&table("usd = 5\ntokens = 2000000\ntime = \"2h\"\non_exceed = \"cancel\"")).unwrap();
        assert_eq!((limits.usd, limits.tokens, limits.time_ms), (Some(5.0), Some(2_000_000), Some(7_200_000)));
        assert_eq!(limits.on_exceed, tutti_engine::budget::OnExceed::Cancel);
        let err = budget_table(&table("eur = 5")).unwrap_err();
        assert_eq!(err, "eur: budgets are in US dollars; use `usd`");
        let err = budget_table(&table("pounds = 5")).unwrap_err();
        assert!(err.ends_with("(known: usd, tokens, turns, time, on_exceed)"), "{err}");
        let mut harness = table("command = [\"x\"]\nbudget_usd = 2\nreserve_usd = 0.5");
        let (limits, reserve_usd, reserve_tokens) = harness_budget(&mut harness).unwrap().expect("a budget");
        assert_eq!((limits.usd, reserve_usd, reserve_tokens), (Some(2.0), Some(0.5), None));
        assert!(!harness.contains_key("budget_usd") && harness.contains_key("command"), "taken out of the table");
        let err = harness_budget(&mut table("budget_tokens = -1")).unwrap_err();
        assert!(err.starts_with("budget_tokens must be a whole number of at least 0"), "{err}");
    }

    #[test]
    fn bad_toml_names_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tutti.toml"), "[defaults]\nharnes = \"x\"\n").unwrap();
        let e = Config::load(Some(dir.path()), None).unwrap_err().to_string();
        assert!(e.contains("tutti.toml") && e.contains("harnes"), "{e}");
    }

    fn harness_of(toml: &str, name: &str) -> Result<HarnessConfig, String> {
        let mut file: File = toml::from_str(toml).unwrap();
        harness_config(name, file.harness.remove(name).unwrap())
    }

    #[test]
    fn agent_cli_tables_become_adapters_and_command_tables_stay_commands() {
        let agent = |r: Result<HarnessConfig, String>| match r {
            Ok(HarnessConfig::Agent { cli, config }) => (cli, config.base_url),
            other => panic!("not an agent: {other:?}"),
        };
        let claude = harness_of("[harness.claude]\nbase_url = \"http://127.0.0.1:1\"\n", "claude");
        assert_eq!(agent(claude), ("claude".into(), Some("http://127.0.0.1:1".into())));
        assert_eq!(agent(harness_of("[harness.cheap]\nuse = \"codex\"\n", "cheap")).0, "codex");
        let command = harness_of("[harness.claude]\ncommand = [\"my-claude\"]\nmodel = \"x\"\n", "claude");
        assert!(matches!(command, Ok(HarnessConfig::Command(c)) if c.command == ["my-claude"]));
        let typo = harness_of("[harness.codex]\nbase-url = \"http://x\"\n", "codex").unwrap_err();
        assert!(typo.contains("base-url"), "{typo}");
        let typo = harness_of("[harness.claud]\nmodel = \"m\"\n", "claud").unwrap_err();
        assert!(typo.contains("did you mean [harness.claude]") && typo.contains("use = \"claude\""), "{typo}");
        let bare = harness_of("[harness.reviewer]\nmodel = \"m\"\n", "reviewer").unwrap_err();
        assert!(bare.starts_with("no `command`") && bare.contains("use = \"CLI\""), "{bare}");
        assert_eq!(edit_distance("gemni", "gemini"), 1);
        assert_eq!(edit_distance("pi", "opencode"), 7);
        let unknown = harness_of("[harness.x]\nuse = \"cursor\"\n", "x").unwrap_err();
        assert_eq!(unknown, "use = \"cursor\": no adapter for that CLI (known: claude, codex, gemini, pi, opencode)");
        for cli in ["gemini", "pi", "opencode"] {
            assert_eq!(agent(harness_of(&format!("[harness.x]\nuse = \"{cli}\"\n"), "x")).0, cli);
            assert_eq!(agent(harness_of(&format!("[harness.{cli}]\nmodel = \"m\"\n"), cli)).0, cli);
        }
    }
}
