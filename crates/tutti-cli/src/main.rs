//! The `tutti` binary: parse the arguments, run the command, map the outcome to a documented exit code.

mod args;
mod caller;
mod commands;
mod config;
mod output;
mod signals;

/// mimalloc instead of the C library's allocator: fewer instructions per allocation, and it keeps a long
/// fan-out's heap from fragmenting (docs/BENCHMARKS.md, "Stop 25"). Its v2 line: the same instructions as
/// v3 for a fan-out, and 26 fewer page faults at every start (v3 initialises its arena bitmaps eagerly).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = <args::Args as clap::Parser>::parse();
    let code = commands::dispatch(args).unwrap_or_else(|e| output::report_error(&e));
    std::process::ExitCode::from(code as u8)
}
