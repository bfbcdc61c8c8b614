//! Module resolution and loading for process files: relative imports next to the process file, the built-in
//! "tutti" module (also as "@a5c-ai/babysitter-sdk"), a pure "path" module, and a clear refusal of host
//! modules (`fs`, `child_process`, `os`, ...). Records every loaded file's content hash: the module graph's
//! hash is how a changed process file is detected on resume.

use std::cell::RefCell;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::{Ctx, Module};
use sha2::{Digest, Sha256};
use tutti_journal::event::ModuleHash;

use crate::Error;

const BUILTIN: &str = "tutti:builtin";
const PATH: &str = "tutti:path";
const BUILTIN_JS: &str = include_str!("js/builtin.js");
const PATH_JS: &str = include_str!("js/path.js");

/// Node's host modules: importing one is an error that points to `shell` and `node` tasks.
const HOST_MODULES: &[&str] = &[
    "assert",
    "async_hooks",
    "buffer",
    "child_process",
    "cluster",
    "crypto",
    "dgram",
    "dns",
    "events",
    "fs",
    "fs/promises",
    "http",
    "http2",
    "https",
    "inspector",
    "module",
    "net",
    "os",
    "perf_hooks",
    "process",
    "readline",
    "repl",
    "stream",
    "string_decoder",
    "timers",
    "tls",
    "tty",
    "url",
    "util",
    "v8",
    "vm",
    "worker_threads",
    "zlib",
];

#[derive(Default)]
struct State {
    modules: Vec<ModuleHash>,
    /// The first resolution or loading error, with our own message (QuickJS's is terser).
    error: Option<Error>,
}

/// The module graph of one process, shared by its resolver and loader.
#[derive(Clone, Default)]
pub(crate) struct Graph(Rc<RefCell<State>>);

impl Graph {
    pub(crate) fn resolver(&self) -> GraphResolver {
        GraphResolver(self.clone())
    }

    pub(crate) fn loader(&self) -> GraphLoader {
        GraphLoader(self.clone())
    }

    pub(crate) fn modules(&self) -> Vec<ModuleHash> {
        self.0.borrow().modules.clone()
    }

    pub(crate) fn take_error(&self) -> Option<Error> {
        self.0.borrow_mut().error.take()
    }

    fn fail(&self, error: Error) -> rquickjs::Error {
        let message = error.to_string();
        let mut state = self.0.borrow_mut();
        if state.error.is_none() {
            state.error = Some(error);
        }
        rquickjs::Error::new_loading_message("process", message)
    }
}

/// The hash of a whole module graph: changes when any of its files changes.
pub fn code_hash(modules: &[ModuleHash]) -> String {
    let mut sorted: Vec<&ModuleHash> = modules.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h = Sha256::new();
    for m in sorted {
        h.update(m.path.as_bytes());
        h.update([0]);
        h.update(m.hash.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize()[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) struct GraphResolver(Graph);

impl Resolver for GraphResolver {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        resolve(base, name).map_err(|e| self.0.fail(e))
    }
}

fn resolve(base: &str, name: &str) -> Result<String, Error> {
    match name {
        "tutti" | "@a5c-ai/babysitter-sdk" => return Ok(BUILTIN.into()),
        "path" | "node:path" | "path/posix" | "node:path/posix" => return Ok(PATH.into()),
        _ => {}
    }
    if name.starts_with('/') {
        return existing(PathBuf::from(name), base, name);
    }
    if name.starts_with("./") || name.starts_with("../") {
        let dir = Path::new(base).parent().unwrap_or(Path::new("/"));
        return existing(normalize(&dir.join(name)), base, name);
    }
    let bare = name.strip_prefix("node:").unwrap_or(name);
    if name.starts_with("node:") || HOST_MODULES.contains(&bare) {
        return Err(Error::Import(format!(
            "{base}: import of \"{name}\" is not available: processes run in a sandbox without filesystem, \
             network or host modules; do that work in a `shell` or `node` task"
        )));
    }
    Err(Error::Import(format!(
        "{base}: cannot import \"{name}\": a process may import only relative files (./x.js), \"tutti\", \
         \"@a5c-ai/babysitter-sdk\" and \"path\""
    )))
}

/// The file an import names, trying `.js`, `.mjs` and `/index.js` when the name has no extension.
fn existing(path: PathBuf, base: &str, name: &str) -> Result<String, Error> {
    let candidates = [path.clone(), path.with_extension("js"), path.with_extension("mjs"), path.join("index.js")];
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate.display().to_string());
        }
    }
    Err(Error::Import(format!("{base}: cannot import \"{name}\": no such file {}", path.display())))
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

pub(crate) struct GraphLoader(Graph);

impl Loader for GraphLoader {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, Declared>> {
        let source = match name {
            BUILTIN => BUILTIN_JS.to_string(),
            PATH => PATH_JS.to_string(),
            file => {
                let source = std::fs::read_to_string(file)
                    .map_err(|source| self.0.fail(Error::Read { path: file.to_string(), source }))?;
                let hash = hex(&Sha256::digest(source.as_bytes())[..16]);
                self.0.0.borrow_mut().modules.push(ModuleHash { path: file.to_string(), hash });
                source
            }
        };
        Module::declare(ctx.clone(), name, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_modules_are_refused_with_a_hint() {
        for name in ["fs", "node:fs", "child_process", "os", "node:os"] {
            let e = resolve("/p/process.js", name).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains("`shell` or `node` task"), "{e}");
        }
    }

    #[test]
    fn builtins_resolve() {
        assert_eq!(resolve("/p/x.js", "tutti").unwrap(), BUILTIN);
        assert_eq!(resolve("/p/x.js", "@a5c-ai/babysitter-sdk").unwrap(), BUILTIN);
        assert_eq!(resolve("/p/x.js", "node:path").unwrap(), PATH);
    }

    #[test]
    fn packages_are_refused() {
        let e = resolve("/p/x.js", "lodash").unwrap_err().to_string();
        assert!(e.contains("lodash") && e.contains("relative"), "{e}");
    }

    #[test]
    fn relative_imports_resolve_next_to_the_importer() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lib.js"), "export const x = 1;").unwrap();
        let base = dir.path().join("sub/../process.js");
        let got = resolve(&base.display().to_string(), "./lib").unwrap();
        assert_eq!(got, dir.path().join("lib.js").display().to_string());
    }
}
