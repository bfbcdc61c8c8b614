//! The one seam between tutti and a particular agent CLI. The [`Cli`] trait is what differs between Claude Code,
//! Codex, Gemini CLI, pi and opencode: the program and its npm package, the command line of a turn (flags, model,
//! the session it resumes, the MCP bridge it registers, the prompt, the environment), where it keeps its session
//! files, and how its event stream reads. [`AgentHarness`] implements [`Harness`] once for all of them: finding the
//! CLI and its version, the private home, availability, capabilities, memory admission and starting the turn. This
//! module also finds CLIs (`PATH`, then the CLI cache) and reads their versions.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tutti_engine::harness::Error as StartError;
use tutti_engine::{Harness, Job, Reporter, Running};

use crate::agent::{self, AgentConfig, Transcript, Turn};
use crate::process::{self, Options};

/// How long `CLI --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(15);

/// What an agent CLI can do unless its table lists `capabilities`.
pub(crate) const CAPABILITIES: &[&str] = &["edit", "shell", "web", "resume", "structured-output"];

/// Where a CLI keeps its session files under its home, and whether a file name belongs to a session id.
pub type SessionFilesAt = (&'static str, fn(&str, &str) -> bool);

/// How a turn's event stream is read once the CLI has exited.
pub type Parser = Box<dyn FnOnce(&str) -> Transcript + Send>;

/// What differs between agent CLIs. Implemented by a unit type per CLI (`Claude`, `Codex`, ...); the harness
/// is [`AgentHarness`] over it.
pub trait Cli: Default + Send + Sync + 'static {
    /// The program's name on `PATH` (and in the CLI cache).
    const PROGRAM: &'static str;
    /// The npm package that installs it.
    const PACKAGE: &'static str;
    /// Peak RSS of one turn in MB, as measured (docs/harnesses.md): without `max_parallel`, the number of turns
    /// at once follows the available memory.
    const MEMORY_MB: u64;
    /// What it can do unless its `[harness.NAME]` table lists `capabilities`.
    const CAPABILITIES: &'static [&'static str] = CAPABILITIES;
    /// It reads the prompt on stdin rather than from its command line.
    const PROMPT_ON_STDIN: bool = false;
    /// Where its session files are, so that a resumed session is put back as its last clean turn left it;
    /// `None` when tutti keeps no copy.
    const SESSIONS: Option<SessionFilesAt> = None;

    /// The command of one turn: flags, model, the session to resume (`turn.job.session`), the MCP bridge
    /// (`agent::tutti_mcp`), the prompt unless it goes on stdin, and the environment. It may write the CLI's
    /// configuration files into `turn.home` first.
    fn command(&self, turn: &Setup<'_>) -> Result<Command, StartError>;

    /// Read a transcript: the session, the final answer, usage and errors.
    fn parse(stdout: &str) -> Transcript;

    /// How this turn's transcript is read; by default [`Cli::parse`]. A CLI whose reading depends on state from
    /// before the turn (codex subtracts what a resumed thread had used) overrides this.
    fn parser(&self, turn: &Setup<'_>) -> Result<Parser, StartError> {
        let _ = turn;
        Ok(Box::new(Self::parse))
    }
}

/// The agent CLIs tutti drives. Each module (`claude.rs`, ...) implements [`Cli`] for its type; the harness is
/// [`AgentHarness`] over it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Claude;
#[derive(Clone, Copy, Debug, Default)]
pub struct Codex;
#[derive(Clone, Copy, Debug, Default)]
pub struct Gemini;
#[derive(Clone, Copy, Debug, Default)]
pub struct Pi;
#[derive(Clone, Copy, Debug, Default)]
pub struct Opencode;

/// Claude Code (`@anthropic-ai/claude-code`) as a harness.
pub type ClaudeHarness = AgentHarness<Claude>;
/// The Codex CLI (`@openai/codex`) as a harness.
pub type CodexHarness = AgentHarness<Codex>;
/// Gemini CLI (`@google/gemini-cli`) as a harness.
pub type GeminiHarness = AgentHarness<Gemini>;
/// The pi coding agent (`@mariozechner/pi-coding-agent`) as a harness.
pub type PiHarness = AgentHarness<Pi>;
/// opencode (`opencode-ai`) as a harness.
pub type OpencodeHarness = AgentHarness<Opencode>;

/// What a CLI builds one turn from.
pub struct Setup<'a> {
    /// The harness's name (`[harness.NAME]`).
    pub name: &'a str,
    pub config: &'a AgentConfig,
    pub job: &'a Job,
    /// The CLI found for this turn.
    pub binary: PathBuf,
    /// The harness's private home (created).
    pub home: PathBuf,
}

impl Setup<'_> {
    /// The start error for a file in the home that cannot be written.
    pub(crate) fn home_error(&self, source: std::io::Error) -> StartError {
        agent::home_error(self.name, self.job, source)
    }

    /// The start error for a configuration the CLI cannot work with.
    pub(crate) fn invalid(&self, why: &str) -> StartError {
        StartError::Invalid(format!("harness {}: {why}", self.name))
    }
}

/// An agent CLI as a [`Harness`].
#[derive(Clone, Debug)]
pub struct AgentHarness<C: Cli> {
    name: String,
    config: AgentConfig,
    cli: C,
}

impl<C: Cli> AgentHarness<C> {
    pub fn new(name: impl Into<String>, config: AgentConfig) -> Self {
        Self { name: name.into(), config, cli: C::default() }
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Where the CLI is and its version; `None` when it is not installed. `workdir` resolves a relative
    /// `binary`.
    pub fn detect(&self, workdir: &Path) -> Option<Detection> {
        detect(C::PROGRAM, self.config.binary.as_deref(), workdir)
    }

    /// The CLI and the home a turn of `job` runs with, or why it cannot start.
    fn setup<'a>(&'a self, job: &'a Job) -> Result<Setup<'a>, StartError> {
        let configured = self.config.binary.as_deref();
        let binary = find_cli(C::PROGRAM, configured, &job.project)
            .ok_or_else(|| not_found(&self.name, C::PROGRAM, configured, C::PACKAGE))?;
        let home = agent::harness_home(job, &self.name).map_err(|source| agent::home_error(&self.name, job, source))?;
        Ok(Setup { name: &self.name, config: &self.config, job, binary, home })
    }

    /// The command a turn of `job` runs (what `start` runs, for tests of each CLI's command line).
    #[cfg(test)]
    pub(crate) fn command(&self, job: &Job) -> Result<Command, StartError> {
        self.cli.command(&self.setup(job)?)
    }
}

impl<C: Cli> Harness for AgentHarness<C> {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_parallel(&self) -> Option<usize> {
        self.config.max_parallel
    }

    fn retry(&self) -> Option<serde_json::Value> {
        self.config.retry.clone()
    }

    fn capabilities(&self) -> Vec<String> {
        if self.config.capabilities.is_empty() {
            C::CAPABILITIES.iter().map(|c| c.to_string()).collect()
        } else {
            self.config.capabilities.clone()
        }
    }

    fn availability(&self) -> Result<(), String> {
        availability(C::PROGRAM, &self.config, C::PACKAGE)
    }

    fn memory_per_attempt_mb(&self) -> Option<u64> {
        Some(C::MEMORY_MB)
    }

    /// `--version` of the CLI found (a relative `binary` is taken from the current directory).
    fn version(&self) -> Option<String> {
        self.detect(Path::new("."))?.version
    }

    fn start(&self, job: Job, reporter: Reporter) -> Result<Box<dyn Running>, StartError> {
        let sessions = match C::SESSIONS {
            Some((dir, belongs)) => Some(agent::sessions(&self.name, &job, dir, belongs)?),
            None => None,
        };
        let setup = self.setup(&job)?;
        let command = self.cli.command(&setup)?;
        let parse = self.cli.parser(&setup)?;
        let mut turn = Turn::new(&self.name, &self.config, &job, command, parse);
        if C::PROMPT_ON_STDIN {
            turn = turn.prompt_on_stdin(&job);
        }
        if let Some(files) = sessions {
            turn = turn.saving(files);
        }
        Ok(Box::new(agent::start(turn, reporter)?))
    }
}

/// Where a CLI was found, and the version it reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    pub binary: PathBuf,
    /// `None` when `--version` failed or printed no version number.
    pub version: Option<String>,
}

/// The folder holding the CLIs that `.ci/install-clis.sh` installs: `$TUTTI_CLI_CACHE/node_modules/.bin`,
/// by default under `~/.cache/tutti/clis`.
pub fn cli_cache_bin() -> Option<PathBuf> {
    let cache = match std::env::var_os("TUTTI_CLI_CACHE").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache/tutti/clis"),
    };
    Some(cache.join("node_modules/.bin"))
}

/// The CLI to run: `configured` (a path, relative to `workdir` when relative, or a bare name), else
/// `program`; a bare name is looked up on `PATH`, then in the CLI cache.
pub(crate) fn find_cli(program: &str, configured: Option<&Path>, workdir: &Path) -> Option<PathBuf> {
    let wanted = configured.unwrap_or(Path::new(program));
    if wanted.components().count() > 1 || wanted.is_absolute() {
        let path = workdir.join(wanted);
        return is_executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(cli_cache_bin())
        .map(|dir| dir.join(wanted))
        .find(|candidate| is_executable(candidate))
}

pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where the CLI of a harness configured with `config` is found, as a turn in `workdir` would find it.
pub fn locate_cli(program: &str, config: &AgentConfig, workdir: &Path) -> Option<PathBuf> {
    find_cli(program, config.binary.as_deref(), workdir)
}

/// Find the CLI and ask it for its version.
pub(crate) fn detect(program: &str, configured: Option<&Path>, workdir: &Path) -> Option<Detection> {
    let binary = find_cli(program, configured, workdir)?;
    if let Some(version) = package_version(&binary) {
        return Some(Detection { binary, version: Some(version) });
    }
    let mut command = Command::new(&binary);
    command.arg("--version");
    let options = Options { timeout: Some(VERSION_TIMEOUT), ..Options::default() };
    // Most CLIs print their version on stdout; pi prints it on stderr.
    let version = process::run(command, options)
        .ok()
        .and_then(|exit| version_number(&exit.stdout).or_else(|| version_number(&exit.stderr)));
    Some(Detection { binary, version })
}

/// The version of the npm package a CLI's script belongs to, read from its `package.json`: starting node to
/// ask `--version` takes a second or more per CLI. `None` for a CLI that is not a script in `node_modules`.
fn package_version(binary: &Path) -> Option<String> {
    let script = fs::canonicalize(binary).ok()?;
    let in_modules = |dir: &Path| {
        dir.parent()
            .is_some_and(|p| p.ends_with("node_modules") || p.parent().is_some_and(|pp| pp.ends_with("node_modules")))
    };
    let package = script.ancestors().skip(1).take(4).find(|dir| dir.join("package.json").is_file())?;
    if !in_modules(package) {
        return None;
    }
    let text = fs::read_to_string(package.join("package.json")).ok()?;
    let manifest: Value = serde_json::from_str(&text).ok()?;
    manifest.get("version")?.as_str().map(String::from)
}

/// The first word that looks like a version number: "2.1.332 (Claude Code)", "codex-cli 0.169.0".
fn version_number(text: &str) -> Option<String> {
    let looks_like = |w: &&str| {
        w.contains('.')
            && w.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    };
    text.split_whitespace().map(|w| w.trim_start_matches('v')).find(looks_like).map(String::from)
}

/// The start error for a CLI that is not there.
pub(crate) fn not_found(harness: &str, program: &str, configured: Option<&Path>, package: &str) -> StartError {
    StartError::Invalid(format!("harness {harness}: {}", missing(program, configured, package)))
}

/// Where a CLI was looked for, and how to get it.
fn missing(program: &str, configured: Option<&Path>, package: &str) -> String {
    let looked = match configured {
        Some(path) => format!("`{}` (`binary`)", path.display()),
        None => {
            let cache = cli_cache_bin().map_or("the CLI cache".into(), |d| d.display().to_string());
            format!("`{program}` on PATH or in {cache}")
        }
    };
    format!(
        "cannot find {looked}; install it with `npm i -g {package}` (or run .ci/install-clis.sh), or set `binary` \
         in its [harness.NAME] table in tutti.toml"
    )
}

/// Whether the CLI can run: installed (a relative `binary` is resolved per effect, so it is not checked
/// here) and its `api_key_env` set.
pub(crate) fn availability(program: &str, config: &AgentConfig, package: &str) -> Result<(), String> {
    let configured = config.binary.as_deref();
    let relative = configured.is_some_and(|p| p.is_relative() && p.components().count() > 1);
    if !relative && find_cli(program, configured, Path::new("/")).is_none() {
        return Err(missing(program, configured, package));
    }
    match &config.api_key_env {
        Some(var) if std::env::var_os(var).is_none_or(|v| v.is_empty()) => {
            Err(format!("api_key_env names ${var}, which is not set"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cli_is_found_by_path_or_name_and_reports_its_version() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fake-cli");
        fs::write(&script, "#!/bin/sh\necho 'codex-cli 0.169.0'\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let found = detect("codex", Some(Path::new("./fake-cli")), dir.path()).unwrap();
        assert_eq!(found, Detection { binary: dir.path().join("./fake-cli"), version: Some("0.169.0".into()) });
        assert_eq!(find_cli("sh", None, dir.path()).map(|p| p.is_absolute()), Some(true));
        assert_eq!(find_cli("tutti-no-such-cli", None, dir.path()), None);
        assert_eq!(find_cli("codex", Some(Path::new("missing/codex")), dir.path()), None);
    }

    #[test]
    fn a_cli_that_is_not_installed_or_lacks_its_key_is_unavailable() {
        let ghost = AgentConfig { binary: Some("/nonexistent/claude".into()), ..AgentConfig::default() };
        let reason = availability("claude", &ghost, "@anthropic-ai/claude-code").unwrap_err();
        assert!(
            reason.starts_with("cannot find `/nonexistent/claude`")
                && reason.contains("npm i -g @anthropic-ai/claude-code"),
            "{reason}"
        );
        let keyless = AgentConfig {
            binary: Some("/bin/sh".into()),
            api_key_env: Some("TUTTI_TEST_NO_SUCH_KEY".into()),
            ..AgentConfig::default()
        };
        assert_eq!(
            availability("claude", &keyless, "x"),
            Err("api_key_env names $TUTTI_TEST_NO_SUCH_KEY, which is not set".into())
        );
        let relative = AgentConfig { binary: Some("tools/claude".into()), ..AgentConfig::default() };
        assert_eq!(availability("claude", &relative, "x"), Ok(()));
        assert_eq!(AgentHarness::<crate::Claude>::new("c", AgentConfig::default()).capabilities(), CAPABILITIES);
        let listed = AgentConfig { capabilities: vec!["edit".into()], ..AgentConfig::default() };
        assert_eq!(AgentHarness::<crate::Claude>::new("c", listed).capabilities(), ["edit"]);
    }

    #[test]
    fn versions_are_read_from_the_usual_shapes() {
        assert_eq!(version_number("2.1.332 (Claude Code)\n").as_deref(), Some("2.1.332"));
        assert_eq!(version_number("codex-cli 0.169.0").as_deref(), Some("0.169.0"));
        assert_eq!(version_number("v1.18.33").as_deref(), Some("1.18.33"));
        assert_eq!(version_number("no version here."), None);
    }
}
