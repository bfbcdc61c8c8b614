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

/// Processes of `run` still alive on this host, by the effect they carry in their environment. Finds an
/// attempt that started without its start reaching the journal (the driver died in between).
pub(crate) fn scan(run: &str) -> std::collections::HashMap<String, Vec<u32>> {
    let mut found: std::collections::HashMap<String, Vec<u32>> = std::collections::HashMap::new();
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

/// Kill processes that [`scan`] found for `effect` of `run`: the group of each, when its leader is ours too,
/// else the process alone. Returns the pids signalled.
pub(crate) fn kill_found(run: &str, effect: &str, pids: &[u32]) -> Vec<u32> {
    let mut killed = Vec::new();
    for &pid in pids {
        // SAFETY: getpgid(2) reads a process attribute; no memory is involved.
        let group = unsafe { libc::getpgid(pid as libc::pid_t) };
        if group > 0 && kill(run, effect, group as u32).is_some() {
            killed.push(group as u32);
            continue;
        }
        // SAFETY: kill(2) on a process whose environment names this run and effect.
        if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0 {
            killed.push(pid);
        }
    }
    killed
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
        let found = super::scan("R1");
        assert_eq!(found.get("root/0"), Some(&vec![pid]), "{found:?}");
        assert!(super::scan("R2").is_empty());
        assert_eq!(super::kill("R1", "root/0", pid), Some(pid));
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
