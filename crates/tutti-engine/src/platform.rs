//! The engine's one window onto the operating system: host identity, whether a process lives, free memory,
//! finding and killing the process groups a dead driver left behind, and (for crash tests only) dying on
//! the spot. The engine reads no process table and sends no signal itself; `tutti-harness` implements this trait
//! for Linux, and the dispatcher's unit tests use a fake.

use std::collections::HashMap;

use tutti_journal::LeaseHolder;

pub trait Platform: Send + Sync + std::fmt::Debug {
    /// This host's name, for lease holders.
    fn host_name(&self) -> String;

    /// Whether process `pid` on this host no longer exists.
    fn process_is_gone(&self, pid: u32) -> bool;

    /// Memory free for new harness processes, in MB.
    fn available_memory_mb(&self) -> Option<u64>;

    /// Live processes of run `run` on this host, by the effect id their environment carries.
    fn processes_of(&self, run: &str) -> HashMap<String, Vec<u32>>;

    /// Kill process group `pgid` if it still runs `effect` of `run` (its environment says so, so a reused
    /// pid is never touched); true when it did.
    fn kill_group_of(&self, run: &str, effect: &str, pgid: u32) -> bool;

    /// Kill processes [`Platform::processes_of`] found for `effect` of `run`: each one's group when its
    /// leader is ours too, else the process alone. Returns the pids signalled.
    fn kill_found(&self, run: &str, effect: &str, pids: &[u32]) -> Vec<u32>;

    /// Fault injection for crash tests: end this process at once, as SIGKILL would.
    fn crash(&self);

    /// A lease holder naming this process.
    fn lease_holder(&self) -> LeaseHolder {
        LeaseHolder { id: ulid::Ulid::new().to_string(), host: self.host_name(), pid: std::process::id() }
    }

    /// A lease holder on this host whose process no longer exists: its lease may be taken at once.
    fn holder_is_gone(&self, holder: &LeaseHolder) -> bool {
        holder.host == self.host_name() && self.process_is_gone(holder.pid)
    }
}
