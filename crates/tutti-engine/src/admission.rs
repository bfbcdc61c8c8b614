//! Admission by memory: how much memory the machine has free for new harness processes.

/// `MemAvailable` from `/proc/meminfo`, in MB.
pub(crate) fn available_memory_mb() -> Option<u64> {
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

#[cfg(test)]
mod tests {
    #[test]
    fn reads_available_memory() {
        let mb = super::available_memory_mb().expect("Linux has /proc/meminfo");
        assert!(mb > 0);
    }
}
