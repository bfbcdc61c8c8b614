//! The validated configuration: where the project root and the database are, what `tutti.toml` says, and
//! the harnesses a run may use. Every problem here is the user's to fix, so errors name the file and field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Deserialize;
use tutti_engine::Harnesses;
use tutti_harness::{CommandConfig, CommandHarness, EchoHarness, NodeHarness, ShellHarness};

use crate::output::UserError;

/// Harness names tutti defines itself.
const BUILT_IN: &[&str] = &["shell", "node", "echo"];
const DEFAULT_MAX_PARALLEL: usize = 16;

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    harness: BTreeMap<String, CommandConfig>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct Defaults {
    harness: Option<String>,
    max_parallel: Option<usize>,
}

#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) root: PathBuf,
    pub(crate) db: PathBuf,
    pub(crate) default_harness: Option<String>,
    pub(crate) max_parallel: usize,
    harness: BTreeMap<String, CommandConfig>,
}

impl Config {
    /// Find the project root and read its `tutti.toml`.
    pub(crate) fn load(home: Option<&Path>) -> Result<Self> {
        let root = match home {
            Some(dir) => dir.to_path_buf(),
            None => find_root(&std::env::current_dir().context("cannot read the working directory")?),
        };
        let root = std::fs::canonicalize(&root)
            .map_err(|e| UserError::new(format!("project root {}: {e}", root.display())))?;
        let file = read_file(&root.join("tutti.toml"))?;
        let max_parallel = file.defaults.max_parallel.unwrap_or(DEFAULT_MAX_PARALLEL);
        if max_parallel == 0 {
            return Err(UserError::new("tutti.toml: [defaults] max_parallel must be at least 1").into());
        }
        for name in file.harness.keys() {
            if BUILT_IN.contains(&name.as_str()) {
                return Err(UserError::new(format!(
                    "tutti.toml: [harness.{name}]: \"{name}\" is a built-in harness name"
                ))
                .into());
            }
        }
        Ok(Self {
            db: root.join(".tutti").join("tutti.db"),
            root,
            default_harness: file.defaults.harness,
            max_parallel,
            harness: file.harness,
        })
    }

    /// The harnesses of a run; `choice` (from `--harness`) overrides the default agent harness.
    pub(crate) fn harnesses(&self, choice: Option<&str>) -> Result<Harnesses> {
        let mut set = Harnesses::new();
        set.add(Arc::new(ShellHarness::new()));
        set.add(Arc::new(NodeHarness::new()));
        set.add(Arc::new(EchoHarness::new()));
        for (name, config) in &self.harness {
            let harness = CommandHarness::new(name.clone(), config.clone())
                .map_err(|e| UserError::new(format!("tutti.toml: [harness.{name}]: {e}")))?;
            set.add(Arc::new(harness));
        }
        let default = choice.map(String::from).or_else(|| self.default_harness.clone());
        if let Some(name) = default.as_ref().filter(|n| set.get(n).is_none()) {
            let known: Vec<&str> = set.names().collect();
            let source = if choice.is_some() { "--harness" } else { "tutti.toml: [defaults] harness" };
            return Err(UserError::new(format!(
                "{source}: unknown harness \"{name}\" (known: {}; add one under [harness.{name}] in tutti.toml)",
                known.join(", ")
            ))
            .into());
        }
        set.set_default_agent(default);
        Ok(set)
    }
}

/// The nearest ancestor of `cwd` holding `tutti.toml` or `.tutti/`, else `cwd`.
fn find_root(cwd: &Path) -> PathBuf {
    cwd.ancestors()
        .find(|dir| dir.join("tutti.toml").is_file() || dir.join(".tutti").is_dir())
        .unwrap_or(cwd)
        .to_path_buf()
}

fn read_file(path: &Path) -> Result<File> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(File::default()),
        Err(e) => return Err(UserError::new(format!("cannot read {}: {e}", path.display())).into()),
    };
    toml::from_str(&text).map_err(|e| UserError::new(format!("{}: {e}", path.display())).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_nearest_marked_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(find_root(&deep), deep);
        std::fs::write(dir.path().join("a/tutti.toml"), "").unwrap();
        assert_eq!(find_root(&deep), dir.path().join("a"));
    }

    #[test]
    fn bad_toml_names_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tutti.toml"), "[defaults]\nharnes = \"x\"\n").unwrap();
        let e = Config::load(Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains("tutti.toml") && e.contains("harnes"), "{e}");
    }
}
