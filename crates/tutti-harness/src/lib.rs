//! tutti's harness adapters: the `shell`, `node`, generic `command` and in-process `echo` harnesses, the
//! agent-CLI adapters (`claude`, `codex`, `gemini`, `pi`, `opencode`: each a `Cli` under one generic
//! `AgentHarness`) and what they share, the prompt renderer, process-tree control, and the git layer (`git`) for
//! the worktrees agents run in and the merges of their branches; and distributed mode's two ends, the
//! driver's `remote` harness and the `worker` that runs what it offers.
//! It does not own the `Harness` trait (the engine's seam), routing between harnesses, or reading
//! `tutti.toml` (the CLI's).

pub mod agent;
pub mod claude;
pub mod cli;
pub mod codex;
pub mod command;
pub mod echo;
pub mod external;
pub mod gemini;
pub mod git;
pub mod merge;
pub mod node;
pub mod opencode;
pub mod pi;
pub mod platform;
pub mod process;
pub mod prompt;
pub mod remote;
mod session;
pub mod shell;
pub mod simulate;
pub mod worker;
pub mod worktree;

#[cfg(test)]
mod testutil;

pub use agent::{AgentConfig, Transcript};
pub use cli::{
    AgentHarness, Claude, ClaudeHarness, Cli, Codex, CodexHarness, Detection, Gemini, GeminiHarness, Opencode,
    OpencodeHarness, Pi, PiHarness, cli_cache_bin,
};
pub use command::{CommandConfig, CommandHarness, Extras, last_json};
pub use echo::EchoHarness;
pub use git::{GitError, Head, MergeOutcome, Repo, Worktree, WorktreeInfo};
pub use merge::MergeHarness;
pub use node::NodeHarness;
pub use platform::LinuxPlatform;
pub use process::{Exit, Options, ProcessHandle, Stop};
pub use prompt::{render_messages, render_prompt};
pub use shell::ShellHarness;
