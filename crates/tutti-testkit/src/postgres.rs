//! A real PostgreSQL server for tests: the one `.ci/run` started (its URL in `PG_TEST_URL`), or else a
//! throwaway cluster this helper makes and starts itself on 127.0.0.1, shared by every test process of the
//! same user through a lock file, so that `cargo nextest run` works on a machine with PostgreSQL installed
//! and nothing started. It never skips: without PostgreSQL's server programs, the test fails and says what
//! to install. Each test then works in a schema of its own ([`schema_url`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The environment variable naming a running server's URL (`postgres://USER@127.0.0.1:PORT/DB`).
pub const URL_VAR: &str = "PG_TEST_URL";

/// The URL of a running PostgreSQL server for tests, started if need be. Panics, saying why, when none can
/// be had.
pub fn server_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => shared_cluster().unwrap_or_else(|e| panic!("cannot start a PostgreSQL server for the tests: {e}")),
    })
    .clone()
}

/// The server's URL with a schema of this test's own as the search path (tutti creates it on first use):
/// tests share the server, never their tables.
pub fn schema_url(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let schema = format!("t_{}_{}_{}_{n}", sanitize(tag), std::process::id(), nanos);
    with_search_path(&server_url(), &schema)
}

/// `url` with `options=-c search_path=SCHEMA` added.
pub fn with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{schema}")
}

fn sanitize(tag: &str) -> String {
    tag.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(24).collect::<String>().to_ascii_lowercase()
}

/// Start (or find running) the cluster in `$TMPDIR/tutti-test-pg-UID`, under a lock so that test processes
/// starting together make it once.
fn shared_cluster() -> Result<String, String> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let base = std::env::temp_dir().join(format!("tutti-test-pg-{uid}"));
    std::fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
    let _lock = Lock::take(&base.join("lock"))?;
    let url_file = base.join("url");
    if let Ok(url) = std::fs::read_to_string(&url_file)
        && is_ready(&base.join("data"), &url)
    {
        return Ok(url);
    }
    let url = start(&base, uid == 0)?;
    std::fs::write(&url_file, &url).map_err(|e| format!("cannot write {}: {e}", url_file.display()))?;
    Ok(url)
}

/// The server programs' folder: the newest `/usr/lib/postgresql/N/bin` (Debian's layout), else the PATH.
fn bin_dir() -> Result<PathBuf, String> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("postgres").exists())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).find(|d| d.join("initdb").exists() && d.join("postgres").exists()).ok_or_else(|| {
        "PostgreSQL's server programs (initdb, postgres) are not installed: `apt-get install postgresql`, or set \
         PG_TEST_URL to a running server"
            .to_string()
    })
}

/// A fresh cluster in `base/data`, trusting local connections, listening on 127.0.0.1 at a free port.
/// PostgreSQL refuses to run as root, so as root it runs as the `postgres` user.
fn start(base: &Path, as_root: bool) -> Result<String, String> {
    let bin = bin_dir()?;
    let data = base.join("data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    if as_root {
        run(Command::new("chown").arg("-R").arg("postgres:postgres").arg(base), "chown")?;
    }
    let tool = |name: &str| {
        let mut c = if as_root { Command::new("runuser") } else { Command::new(bin.join(name)) };
        if as_root {
            c.args(["-u", "postgres", "--"]).arg(bin.join(name));
        }
        c
    };
    let mut initdb = tool("initdb");
    initdb.args(["--auth=trust", "--username=tutti", "--encoding=UTF8", "--no-sync", "-D"]).arg(&data);
    run(&mut initdb, "initdb")?;
    let port = free_port()?;
    let options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k {} -c max_connections=300 -c fsync=off -c shared_buffers=64MB",
        data.display()
    );
    let mut ctl = tool("pg_ctl");
    ctl.arg("-D").arg(&data).arg("-l").arg(data.join("server.log")).args(["-w", "-o", &options, "start"]);
    run(&mut ctl, "pg_ctl start")?;
    Ok(format!("postgres://tutti@127.0.0.1:{port}/postgres"))
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("no free port: {e}"))
}

/// Whether the cluster in `data` is up and answers at `url`'s port.
fn is_ready(data: &Path, url: &str) -> bool {
    let Some(port) = url.rsplit(':').next().and_then(|p| p.split('/').next()).and_then(|p| p.parse::<u16>().ok())
    else {
        return false;
    };
    data.join("postmaster.pid").exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// An exclusive `flock` on a file, released when dropped.
struct Lock(std::fs::File);

impl Lock {
    fn take(path: &Path) -> Result<Self, String> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(format!("cannot lock {}: {}", path.display(), std::io::Error::last_os_error()));
        }
        Ok(Self(file))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking the descriptor we locked; closing it would release the lock too.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}
