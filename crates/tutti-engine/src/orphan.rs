//! Orphans of a dead driver: when a driver is killed, the process groups of the effects it ran live on.
//! On resume, before an effect runs again, its previous attempt's group is killed — but only after
//! `/proc/PID/environ` proves the process is that attempt (it carries the run and effect ids), so a reused
//! pid is never touched.

/// Kill the process group `pid` if it still runs `effect` of `run`. Returns the pid when it did.
pub(crate) fn kill(run: &str, effect: &str, pid: u32) -> Option<u32> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let run_var = format!("TUTTI_RUN_ID={run}");
    let effect_var = format!("TUTTI_EFFECT_ID={effect}");
    let mut vars = environ.split(|b| *b == 0);
    let ours = vars.clone().any(|v| v == run_var.as_bytes()) && vars.any(|v| v == effect_var.as_bytes());
    if !ours {
        return None;
    }
    // SAFETY: kill(2) on a process group we just identified as ours; no memory is involved.
    let rc = unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
    (rc == 0).then_some(pid)
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

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
        assert_eq!(super::kill("R1", "root/1", pid), None, "another effect's group must be left alone");
        assert_eq!(super::kill("R2", "root/0", pid), None, "another run's group must be left alone");
        assert_eq!(super::kill("R1", "root/0", pid), Some(pid));
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
