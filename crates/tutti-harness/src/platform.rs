//! [`Platform`] for Linux: the host name and free memory from `/proc`, process liveness with `kill(pid, 0)`,
//! and the orphans of a dead driver — found by the `TUTTI_RUN_ID` / `TUTTI_EFFECT_ID` in
//! `/proc/PID/environ` and killed by process group, only after their environment proves they are ours.

use std::collections::HashMap;

use tutti_engine::platform::Platform;

/// The operating system tutti runs on.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinuxPlatform;

impl Platform for LinuxPlatform {
    fn host_name(&self) -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".to_string())
    }

    fn process_is_gone(&self, pid: u32) -> bool {
        // SAFETY: kill(2) with signal 0 only checks that the process exists.
        let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
        rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    }

    /// `MemAvailable` from `/proc/meminfo`.
    fn available_memory_mb(&self) -> Option<u64> {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kb: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb / 1024)
    }

    fn processes_of(&self, run: &str) -> HashMap<String, Vec<u32>> {
        let mut found: HashMap<String, Vec<u32>> = HashMap::new();
        let Ok(dir) = std::fs::read_dir("/proc") else { return found };
        let run_var = format!("TUTTI_RUN_ID={run}");
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
            let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
            if !vars.contains(&run_var.as_bytes()) {
                continue;
            }
            let effect = vars.iter().find_map(|v| v.strip_prefix(b"TUTTI_EFFECT_ID="));
            if let Some(effect) = effect.and_then(|e| std::str::from_utf8(e).ok()) {
                found.entry(effect.to_string()).or_default().push(pid);
            }
        }
        found
    }

    fn kill_group_of(&self, run: &str, effect: &str, pgid: u32) -> bool {
        if !carries(pgid, run, effect) {
            return false;
        }
        // SAFETY: kill(2) on a process group we just identified as ours; no memory is involved.
        let killed = unsafe { libc::kill(-(pgid as libc::pid_t), libc::SIGKILL) == 0 };
        if killed {
            wait_dead(pgid);
        }
        killed
    }

    fn kill_found(&self, run: &str, effect: &str, pids: &[u32]) -> Vec<u32> {
        let mut killed = Vec::new();
        for &pid in pids {
            // SAFETY: getpgid(2) reads a process attribute; no memory is involved.
            let group = unsafe { libc::getpgid(pid as libc::pid_t) };
            if group > 0 && self.kill_group_of(run, effect, group as u32) {
                killed.push(group as u32);
                continue;
            }
            // SAFETY: kill(2) on a process whose environment names this run and effect.
            if carries(pid, run, effect) && unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0 {
                wait_dead(pid);
                killed.push(pid);
            }
        }
        killed
    }

    fn crash(&self) {
        // SAFETY: kill(2) with our own pid and SIGKILL has no memory-safety preconditions.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

/// How long a killed leftover gets to die before its effect runs again anyway.
const DEATH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Wait until process `pid`, just sent SIGKILL, has died (gone, or a zombie its new parent has not reaped):
/// a re-dispatched attempt must not start beside it.
fn wait_dead(pid: u32) {
    let deadline = std::time::Instant::now() + DEATH_WAIT;
    while std::time::Instant::now() < deadline {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        // The state follows the command name, which is in parentheses and may hold spaces.
        let alive =
            state.as_deref().ok().and_then(|s| s.rsplit_once(')')).and_then(|(_, r)| r.split_whitespace().next());
        if !matches!(alive, Some(s) if s != "Z" && s != "X") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Whether process `pid` runs `effect` of `run`, by its environment.
fn carries(pid: u32, run: &str, effect: &str) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { return false };
    let run_var = format!("TUTTI_RUN_ID={run}");
    let effect_var = format!("TUTTI_EFFECT_ID={effect}");
    let mut vars = environ.split(|b| *b == 0);
    vars.clone().any(|v| v == run_var.as_bytes()) && vars.any(|v| v == effect_var.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    use super::*;

    #[test]
    fn kills_only_a_group_that_carries_the_effect() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("TUTTI_RUN_ID", "R1")
            .env("TUTTI_EFFECT_ID", "root/0")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        // Until the child has exec'd, its environment is still ours.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default().starts_with(b"sleep") {
            assert!(std::time::Instant::now() < deadline, "sleep never started");
            std::thread::yield_now();
        }
        let os = LinuxPlatform;
        assert!(!os.kill_group_of("R1", "root/1", pid), "another effect's group must be left alone");
        assert!(!os.kill_group_of("R2", "root/0", pid), "another run's group must be left alone");
        let found = os.processes_of("R1");
        assert_eq!(found.get("root/0"), Some(&vec![pid]), "{found:?}");
        assert!(os.processes_of("R2").is_empty());
        assert!(!os.process_is_gone(pid));
        assert!(os.kill_group_of("R1", "root/0", pid));
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(os.process_is_gone(pid));
    }

    #[test]
    fn reads_the_host_and_its_memory() {
        let os = LinuxPlatform;
        assert!(os.available_memory_mb().is_some_and(|mb| mb > 0));
        assert!(!os.host_name().is_empty());
        let me = os.lease_holder();
        assert!(!os.holder_is_gone(&me));
    }
}
