//! The seal of a checked journal: a small file beside it (`tutti.db-sealed`) naming the main file's size,
//! modification time and inode as a tutti process left them after emptying the log at a clean end. While
//! they match and no log holds anything, nothing but tutti has written the journal since, so a command need
//! not read all of it to look for damage. Anything else writing it, a crash (its log stays behind), a copy
//! or a restore breaks the seal, and the next command checks the whole journal again.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The identity of the main file as the seal records it.
fn identity(db: &Path) -> Option<String> {
    let meta = std::fs::metadata(db).ok()?;
    Some(format!("{} {} {} {} {}\n", meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino(), meta.dev()))
}

fn seal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-sealed");
    PathBuf::from(name)
}

/// Seal `db` as it is now. Best effort: without a seal the next command checks the whole journal.
pub(super) fn write(db: &Path) {
    let Some(identity) = identity(db) else { return };
    let path = seal_path(db);
    let mut temp = path.clone().into_os_string();
    temp.push(".tmp");
    if std::fs::write(&temp, identity).is_ok() && std::fs::rename(&temp, &path).is_err() {
        let _ = std::fs::remove_file(&temp);
    }
}

/// Whether `db` is sealed: its identity is the one recorded, and its log is absent or empty.
pub(super) fn holds(db: &Path) -> bool {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let log_empty = std::fs::metadata(PathBuf::from(wal)).map_or(true, |m| m.len() == 0);
    log_empty && identity(db).is_some_and(|now| std::fs::read_to_string(seal_path(db)).is_ok_and(|seal| seal == now))
}
