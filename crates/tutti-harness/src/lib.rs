//! tutti's harness adapters: the `shell`, `node`, generic `command` and in-process `echo` harnesses, the
//! prompt renderer agent adapters share, and process-tree control. It does not own the `Harness` trait (the
//! engine's seam), routing between harnesses, or reading `tutti.toml` (the CLI's).

pub mod command;
pub mod echo;
pub mod node;
pub mod process;
pub mod prompt;
pub mod shell;

#[cfg(test)]
mod testutil;

pub use command::{CommandConfig, CommandHarness, last_json};
pub use echo::EchoHarness;
pub use node::NodeHarness;
pub use process::{Exit, Options, ProcessHandle, Stop};
pub use prompt::{render_messages, render_prompt};
pub use shell::ShellHarness;
