//! tutti's harness adapters: the `shell`, `node`, generic `command` and in-process `echo` harnesses, the
//! agent-CLI adapters (`claude`, `codex`, `gemini`, `pi`, `opencode`) and what they share, the prompt renderer, and process-tree control.
//! It does not own the `Harness` trait (the engine's seam), routing between harnesses, or reading
//! `tutti.toml` (the CLI's).

pub mod agent;
pub mod claude;
pub mod codex;
pub mod command;
pub mod echo;
pub mod gemini;
pub mod node;
pub mod opencode;
pub mod pi;
pub mod platform;
pub mod process;
pub mod prompt;
mod session;
pub mod shell;

#[cfg(test)]
mod testutil;

pub use agent::{AgentConfig, Detection, cli_cache_bin};
pub use claude::ClaudeHarness;
pub use codex::CodexHarness;
pub use command::{CommandConfig, CommandHarness, Extras, last_json};
pub use echo::EchoHarness;
pub use gemini::GeminiHarness;
pub use node::NodeHarness;
pub use opencode::OpencodeHarness;
pub use pi::PiHarness;
pub use platform::LinuxPlatform;
pub use process::{Exit, Options, ProcessHandle, Stop};
pub use prompt::{render_messages, render_prompt};
pub use shell::ShellHarness;
