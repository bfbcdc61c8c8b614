//! Module resolution and loading for process files: relative imports next to the process file, confined to
//! the process's project root, the built-in "tutti" module (also as "@a5c-ai/babysitter-sdk"), a pure "path"
//! module, and a clear refusal of host modules (`fs`, `child_process`, `os`, ...). Records every loaded file's
//! content hash: the module graph's hash is how a changed process file is detected on resume.

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
/// The global that lends runtime.js's entry points to the built-in module while it evaluates.
pub(crate) const BUILTIN_GLOBAL: &str = "__tutti_builtin";
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

struct State {
    /// Imports must resolve inside this directory.
    root: PathBuf,
    modules: Vec<ModuleHash>,
    /// The first resolution or loading error, with our own message (QuickJS's is terser).
    error: Option<Error>,
}

/// The module graph of one process, shared by its resolver and loader.
#[derive(Clone)]
pub(crate) struct Graph(Rc<RefCell<State>>);

impl Graph {
    /// A graph whose files must all lie under `root` (see [`project_root`]).
    pub(crate) fn new(root: PathBuf) -> Self {
        Self(Rc::new(RefCell::new(State { root, modules: Vec::new(), error: None })))
    }

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

/// The directory a process's imports are confined to: the nearest ancestor of the (canonical) process file
/// holding `tutti.toml` or `.tutti/`, else the process file's own directory.
pub(crate) fn project_root(process: &Path) -> PathBuf {
    let dir = process.parent().unwrap_or(Path::new("/"));
    dir.ancestors().find(|d| d.join("tutti.toml").is_file() || d.join(".tutti").is_dir()).unwrap_or(dir).to_path_buf()
}

/// Declare and evaluate the built-in module, so that every later import of "tutti" finds it loaded. Its
/// source reads [`BUILTIN_GLOBAL`], which the caller sets before and removes after.
pub(crate) fn declare_builtin(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    let (_, promise) = Module::declare(ctx.clone(), BUILTIN, BUILTIN_JS)?.eval()?;
    promise.finish::<()>()
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
    tutti_engine::identity::hex(&h.finalize()[..16])
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
        let root = self.0.0.borrow().root.clone();
        resolve(&root, base, name).map_err(|e| self.0.fail(e))
    }
}

fn resolve(root: &Path, base: &str, name: &str) -> Result<String, Error> {
    match name {
        "tutti" | "@a5c-ai/babysitter-sdk" => return Ok(BUILTIN.into()),
        "path" | "node:path" | "path/posix" | "node:path/posix" => return Ok(PATH.into()),
        _ => {}
    }
    if name.starts_with('/') || name.starts_with("./") || name.starts_with("../") {
        let dir = Path::new(base).parent().unwrap_or(Path::new("/"));
        let path = normalize(&dir.join(name));
        // Refused before looking: whether a file outside the root exists is none of the process's business.
        confined(root, &path, base, name)?;
        let found = existing(path, base, name)?;
        // A symbolic link inside the root may point out of it.
        let real = std::fs::canonicalize(&found).map_err(|source| Error::Read { path: found.clone(), source })?;
        confined(root, &real, base, name)?;
        return Ok(found);
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

fn confined(root: &Path, path: &Path, base: &str, name: &str) -> Result<(), Error> {
    if path.starts_with(root) {
        return Ok(());
    }
    Err(Error::Import(format!(
        "{base} imports \"{name}\": outside the project root {}; imports must stay inside it",
        root.display()
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
        // The built-in module is not here: it is declared before the process loads (see `declare_builtin`).
        let source = match name {
            PATH => PATH_JS.to_string(),
            file => {
                let source = std::fs::read_to_string(file)
                    .map_err(|source| self.0.fail(Error::Read { path: file.to_string(), source }))?;
                let hash = tutti_engine::identity::hex(&Sha256::digest(source.as_bytes())[..16]);
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

    const ROOT: &str = "/p";

    fn resolve_in_p(base: &str, name: &str) -> Result<String, Error> {
        resolve(Path::new(ROOT), base, name)
    }

    #[test]
    fn host_modules_are_refused_with_a_hint() {
        for name in ["fs", "node:fs", "child_process", "os", "node:os"] {
            let e = resolve_in_p("/p/process.js", name).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains("`shell` or `node` task"), "{e}");
        }
    }

    #[test]
    fn builtins_resolve() {
        assert_eq!(resolve_in_p("/p/x.js", "tutti").unwrap(), BUILTIN);
        assert_eq!(resolve_in_p("/p/x.js", "@a5c-ai/babysitter-sdk").unwrap(), BUILTIN);
        assert_eq!(resolve_in_p("/p/x.js", "node:path").unwrap(), PATH);
    }

    #[test]
    fn packages_are_refused() {
        let e = resolve_in_p("/p/x.js", "lodash").unwrap_err().to_string();
        assert!(e.contains("lodash") && e.contains("relative"), "{e}");
    }

    #[test]
    fn relative_imports_resolve_next_to_the_importer() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("lib.js"), "export const x = 1;").unwrap();
        let base = root.join("sub/../process.js");
        let got = resolve(&root, &base.display().to_string(), "./lib").unwrap();
        assert_eq!(got, root.join("lib.js").display().to_string());
    }

    #[test]
    fn imports_outside_the_project_root_are_refused_naming_importer_specifier_and_root() {
        for name in ["../../etc/passwd", "/etc/passwd", "./sub/../../secret.js", "../p2/x.js"] {
            let e = resolve_in_p("/p/process.js", name).unwrap_err().to_string();
            assert!(e.contains(&format!("/p/process.js imports \"{name}\"")), "{e}");
            assert!(e.contains("outside the project root /p;"), "{e}");
        }
    }

    #[test]
    fn refusal_does_not_tell_whether_the_file_exists() {
        let inside = tempfile::tempdir().unwrap();
        let root = inside.path().canonicalize().unwrap();
        let base = root.join("process.js").display().to_string();
        let real = resolve(&root, &base, "/etc/passwd").unwrap_err().to_string();
        let made_up = resolve(&root, &base, "/etc/no-such-file-here").unwrap_err().to_string();
        assert!(real.contains("outside the project root") && !real.contains("no such file"), "{real}");
        assert_eq!(real.replace("passwd", "X"), made_up.replace("no-such-file-here", "X"));
    }

    #[test]
    fn a_symlink_out_of_the_root_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join(".env"), "SECRET=hunter2").unwrap();
        let inside = tempfile::tempdir().unwrap();
        let root = inside.path().canonicalize().unwrap();
        std::os::unix::fs::symlink(outside.path().join(".env"), root.join("env.js")).unwrap();
        let base = root.join("process.js").display().to_string();
        let e = resolve(&root, &base, "./env.js").unwrap_err().to_string();
        assert!(e.contains("outside the project root") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn the_project_root_is_the_nearest_ancestor_with_tutti_toml_or_dot_tutti() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(top.join("a/b/c")).unwrap();
        let process = top.join("a/b/c/process.js");
        assert_eq!(project_root(&process), top.join("a/b/c"), "no marker: the file's own directory");
        std::fs::write(top.join("tutti.toml"), "").unwrap();
        assert_eq!(project_root(&process), top);
        std::fs::create_dir(top.join("a/.tutti")).unwrap();
        assert_eq!(project_root(&process), top.join("a"), "the nearest marker wins");
    }
}
