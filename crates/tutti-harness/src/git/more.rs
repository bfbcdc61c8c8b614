//! Questions about a repository's branches and merges that the CLI and the `merge` harness ask: is a branch
//! in another, is a merge in progress, and staging the text files a resolver cleaned of conflict markers.

use std::path::Path;

use super::{GitError, Repo, git, merging, test, unmerged, utf8};

impl Repo {
    /// Whether everything on `branch` is on `into` already (its tip is an ancestor of `into`'s); false when
    /// either branch does not exist.
    pub fn is_merged(&self, branch: &str, into: &str) -> Result<bool, GitError> {
        let (Some(tip), Some(target)) = (self.branch_commit(branch)?, self.branch_commit(into)?) else {
            return Ok(false);
        };
        test(self.root(), &["merge-base", "--is-ancestor", &tip, &target])
    }

    /// The commit checked out in the main worktree (without asking git for the tree's status).
    pub fn head_commit(&self) -> Result<String, GitError> {
        git(self.root(), &["rev-parse", "--verify", "HEAD"])
    }

    /// Whether a merge is in progress in the worktree at `path`.
    pub fn merge_in_progress(&self, path: &Path) -> Result<bool, GitError> {
        merging(path)
    }

    /// Stage the unmerged files among `files` that exist and hold no conflict marker line any more: text files
    /// a resolver edited but did not `git add`. Files without markers in the first place (binary files,
    /// modify/delete conflicts) are the resolver's to stage or remove: they stay unmerged otherwise.
    pub fn stage_resolved(&self, path: &Path, files: &[String]) -> Result<Vec<String>, GitError> {
        let unmerged = unmerged(path)?;
        let mut staged = Vec::new();
        for file in files.iter().filter(|f| unmerged.contains(f)) {
            let Ok(text) = std::fs::read_to_string(path.join(file)) else { continue };
            let marked = text.lines().any(|l| l.starts_with("<<<<<<< ") || l.starts_with(">>>>>>> ") || l == "=======");
            if !marked {
                git(path, &["add", "--", utf8(Path::new(file))?])?;
                staged.push(file.clone());
            }
        }
        Ok(staged)
    }
}
