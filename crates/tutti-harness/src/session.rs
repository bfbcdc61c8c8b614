//! A member's session as it stood after its last completed turn. Agent CLIs write a turn's prompt into
//! their session files when the turn starts; a turn that is interrupted (Ctrl-C, a crash, a timeout) leaves
//! the prompt there, and its next attempt, resuming the session, would send the prompt a second time. So
//! after every turn that ends cleanly tutti copies the session's files aside, and before a turn resumes a
//! session it puts them back as they were: files changed since are rewritten, files added since removed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where one CLI keeps its sessions, and where tutti keeps its copies.
#[derive(Clone, Debug)]
pub(crate) struct SessionFiles {
    /// The CLI's session folder, searched down to [`DEPTH`] levels.
    dir: PathBuf,
    /// tutti's copies: one folder per session, holding the session's files at their paths under `dir`.
    saved: PathBuf,
    /// Whether a file named so (under `dir`) belongs to session `id`.
    belongs: fn(name: &str, id: &str) -> bool,
}

/// Session folders are shallow: claude `projects/<cwd>/`, codex `sessions/YYYY/MM/DD/`, gemini
/// `tmp/<project>/chats/`.
const DEPTH: usize = 5;

impl SessionFiles {
    /// Sessions kept under `dir`, copies kept in `home/.tutti-sessions/` (`home`: the harness's own).
    pub(crate) fn new(home: &Path, dir: PathBuf, belongs: fn(&str, &str) -> bool) -> Self {
        Self { dir, saved: home.join(".tutti-sessions"), belongs }
    }

    /// The files of session `id` under the CLI's folder, as paths relative to it.
    fn files(&self, id: &str) -> Vec<PathBuf> {
        let mut found = Vec::new();
        collect(&self.dir, Path::new(""), DEPTH, &mut |relative, name| {
            if (self.belongs)(name, id) {
                found.push(relative.to_path_buf());
            }
        });
        found
    }

    fn saved_dir(&self, id: &str) -> PathBuf {
        // Ids are the CLI's own (UUIDs and the like); anything else is kept out of the path.
        let safe: String = id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        self.saved.join(safe)
    }

    /// Copy session `id`'s files aside, replacing the previous copy only once the new one is complete.
    pub(crate) fn save(&self, id: &str) -> io::Result<()> {
        let files = self.files(id);
        if files.is_empty() {
            return Ok(());
        }
        let target = self.saved_dir(id);
        let staging = target.with_extension("saving");
        let _ = fs::remove_dir_all(&staging);
        for relative in &files {
            let to = staging.join(relative);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::copy(self.dir.join(relative), &to)?;
        }
        let _ = fs::remove_dir_all(&target);
        fs::rename(&staging, &target)
    }

    /// Put session `id`'s files back as they were saved; nothing happens when no copy was saved.
    pub(crate) fn restore(&self, id: &str) -> io::Result<()> {
        let source = self.saved_dir(id);
        if !source.is_dir() {
            return Ok(());
        }
        let mut saved = Vec::new();
        collect(&source, Path::new(""), DEPTH, &mut |relative, _| saved.push(relative.to_path_buf()));
        for relative in self.files(id) {
            if !saved.contains(&relative) {
                fs::remove_file(self.dir.join(&relative))?;
            }
        }
        for relative in saved {
            let (from, to) = (source.join(&relative), self.dir.join(&relative));
            if fs::read(&from)? != fs::read(&to).unwrap_or_default() {
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent)?;
                }
                fs::copy(&from, &to)?;
            }
        }
        Ok(())
    }
}

/// Calls `found(relative path, file name)` for every file under `dir`, down to `depth` folders.
fn collect(dir: &Path, relative: &Path, depth: usize, found: &mut dyn FnMut(&Path, &str)) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = relative.join(name);
        match entry.file_type() {
            Ok(t) if t.is_dir() && depth > 0 => collect(&entry.path(), &path, depth - 1, found),
            Ok(t) if t.is_file() => found(&path, name),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jsonl(name: &str, id: &str) -> bool {
        name.ends_with(&format!("{id}.jsonl"))
    }

    #[test]
    fn restore_undoes_what_an_interrupted_turn_wrote() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("sessions");
        let day = dir.join("2026/12/01");
        fs::create_dir_all(&day).unwrap();
        fs::write(day.join("rollout-1-abc.jsonl"), "turn 1\n").unwrap();
        fs::write(day.join("rollout-1-other.jsonl"), "another session\n").unwrap();
        let files = SessionFiles::new(home.path(), dir.clone(), jsonl);
        files.save("abc").unwrap();

        // The interrupted turn appends its prompt and starts a new file.
        fs::write(day.join("rollout-1-abc.jsonl"), "turn 1\nturn 2 prompt\n").unwrap();
        fs::write(dir.join("rollout-2-abc.jsonl"), "turn 2 prompt\n").unwrap();
        files.restore("abc").unwrap();
        assert_eq!(fs::read_to_string(day.join("rollout-1-abc.jsonl")).unwrap(), "turn 1\n");
        assert!(!dir.join("rollout-2-abc.jsonl").exists());
        assert_eq!(fs::read_to_string(day.join("rollout-1-other.jsonl")).unwrap(), "another session\n");

        // A completed turn 2 is saved over turn 1.
        fs::write(day.join("rollout-1-abc.jsonl"), "turn 1\nturn 2\n").unwrap();
        files.save("abc").unwrap();
        files.restore("abc").unwrap();
        assert_eq!(fs::read_to_string(day.join("rollout-1-abc.jsonl")).unwrap(), "turn 1\nturn 2\n");
    }

    #[test]
    fn a_session_never_saved_is_left_alone() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("sessions");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("x.jsonl"), "as the CLI left it\n").unwrap();
        let files = SessionFiles::new(home.path(), dir.clone(), jsonl);
        files.restore("x").unwrap();
        assert_eq!(fs::read_to_string(dir.join("x.jsonl")).unwrap(), "as the CLI left it\n");
    }
}
