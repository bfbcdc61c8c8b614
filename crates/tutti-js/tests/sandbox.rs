//! The sandbox's edges, seen from a process file: a busy loop gives way to the interrupt flag, imports stay
//! inside the project root, the host's internal hooks are out of reach, and group and member names are safe.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tutti_engine::{HostEvent, ProcessHost};
use tutti_js::JsHost;

fn write(dir: &Path, name: &str, src: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, src).unwrap();
    p
}

/// A flag that turns true after `after`, as Ctrl-C would while JavaScript spins.
fn raised_after(after: Duration) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    std::thread::spawn(move || {
        std::thread::sleep(after);
        f.store(true, Ordering::SeqCst);
    });
    flag
}

/// The value the process finished with, from a step's events.
fn finished(events: &[HostEvent]) -> Value {
    match events.iter().find(|e| matches!(e, HostEvent::Finished(_))) {
        Some(HostEvent::Finished(Ok(v))) => v.clone(),
        other => panic!("expected the process to finish, got {other:?} in {events:?}"),
    }
}

/// The error message of a process that failed in its first step.
fn failure(path: &Path) -> String {
    let mut host = JsHost::load(path).unwrap();
    let events = host.start("01X", &Value::Null, 1, 0).unwrap();
    match events.iter().find(|e| matches!(e, HostEvent::Finished(_))) {
        Some(HostEvent::Finished(Err(e))) => format!("{}: {}", e.name, e.message),
        other => panic!("expected the process to fail, got {other:?}"),
    }
}

// ---- interrupts ----

#[test]
fn a_busy_loop_in_the_process_function_is_interrupted_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "loop.js", "export async function process() { while (true) {} }\n");
    let flag = raised_after(Duration::from_millis(100));
    let mut host = JsHost::load_interruptible(&path, flag).unwrap();
    let started = Instant::now();
    let err = host.start("01X", &Value::Null, 1, 0).unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    let file = path.canonicalize().unwrap();
    let want = format!("process {} did not yield: interrupted while running JavaScript", file.display());
    assert!(err.contains(&want), "{err}");
}

#[test]
fn a_busy_loop_after_an_await_is_interrupted_in_the_step_that_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "later.js",
        r#"
import { defineTask } from "tutti";
const t = defineTask("t", () => ({ kind: "shell" }));
export async function process(inputs, ctx) {
  await ctx.task(t, {});
  for (;;) {}
}
"#,
    );
    let flag = Arc::new(AtomicBool::new(false));
    let mut host = JsHost::load_interruptible(&path, flag.clone()).unwrap();
    let events = host.start("01X", &Value::Null, 1, 0).unwrap();
    assert!(matches!(&events[0], HostEvent::Request(r) if r.effect == "root/0"), "{events:?}");
    let f = flag.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        f.store(true, Ordering::SeqCst);
    });
    let err = host.deliver("root/0", &Ok(json!(1)), 1).unwrap_err().to_string();
    assert!(err.contains("later.js did not yield") && err.contains("a loop that never awaits?"), "{err}");
}

#[test]
fn a_busy_loop_at_module_top_level_is_interrupted_while_loading() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "top.js", "while (true) {}\nexport async function process() {}\n");
    let err = JsHost::load_interruptible(&path, raised_after(Duration::from_millis(100))).err().expect("interrupted");
    let err = err.to_string();
    assert!(err.contains("top.js did not finish loading: interrupted"), "{err}");
}

#[test]
fn try_catch_cannot_swallow_the_interrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "stubborn.js",
        "export async function process() { for (;;) { try { while (true) {} } catch (e) {} finally { continue; } } }\n",
    );
    let mut host = JsHost::load_interruptible(&path, raised_after(Duration::from_millis(100))).unwrap();
    let err = host.start("01X", &Value::Null, 1, 0).unwrap_err().to_string();
    assert!(err.contains("stubborn.js did not yield"), "{err}");
}

// ---- imports ----

#[test]
fn an_import_out_of_the_project_root_is_refused_and_the_file_is_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().canonicalize().unwrap();
    write(&top, ".env", "export const SECRET = \"hunter2\";\n");
    write(&top, "project/tutti.toml", "");
    let path = write(
        &top,
        "project/flows/process.js",
        "import { SECRET } from \"../../.env\";\nexport async function process() { return SECRET; }\n",
    );
    let err = JsHost::load(&path).err().expect("refused").to_string();
    let importer = top.join("project/flows/process.js");
    let root = top.join("project");
    let want = format!(
        "{} imports \"../../.env\": outside the project root {}; imports must stay inside it",
        importer.display(),
        root.display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn imports_anywhere_inside_the_project_root_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().canonicalize().unwrap();
    std::fs::create_dir(top.join(".tutti")).unwrap();
    write(&top, "lib/shared.js", "export const x = 41;\n");
    let absolute = top.join("lib/shared.js").display().to_string();
    let path = write(
        &top,
        "flows/process.js",
        &format!(
            "import {{ x }} from \"../lib/shared.js\";\nimport {{ x as y }} from {absolute:?};\n\
             export async function process() {{ return x + y - 40; }}\n"
        ),
    );
    let mut host = JsHost::load(&path).unwrap();
    assert_eq!(finished(&host.start("01X", &Value::Null, 1, 0).unwrap()), json!(42));
}

#[test]
fn a_module_that_does_not_parse_is_named_without_its_text() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "notes.js", "password = correct horse battery staple\nsecond line of secrets\n");
    let path = write(dir.path(), "p.js", "import \"./notes.js\";\nexport async function process() {}\n");
    let err = JsHost::load(&path).err().expect("refused").to_string();
    assert!(err.contains("notes.js") && err.contains("SyntaxError"), "{err}");
    assert!(!err.contains("battery staple") && !err.contains("second line"), "{err}");
}

// ---- internal hooks ----

#[test]
fn process_code_cannot_reach_the_hosts_internal_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "peek.js",
        r#"
import { defineTask } from "@a5c-ai/babysitter-sdk";
import tutti from "tutti";
const seenAtLoad = typeof globalThis.__tutti_internal;
export async function process() {
  return {
    seenAtLoad,
    internal: typeof globalThis.__tutti_internal,
    host: typeof globalThis.__tutti_host,
    builtin: typeof globalThis.__tutti_builtin,
    hidden: Object.getOwnPropertyNames(globalThis).filter((n) => n.startsWith("__tutti")),
    sameDefineTask: tutti.defineTask === defineTask,
    task: defineTask("t", () => ({ kind: "shell" })).id,
  };
}
"#,
    );
    let mut host = JsHost::load(&path).unwrap();
    let out = finished(&host.start("01X", &Value::Null, 1, 0).unwrap());
    assert_eq!(
        out,
        json!({
            "seenAtLoad": "undefined",
            "internal": "undefined",
            "host": "undefined",
            "builtin": "undefined",
            "hidden": [],
            "sameDefineTask": true,
            "task": "t",
        })
    );
}

#[test]
fn the_host_still_drives_the_process_after_hiding_its_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "p.js",
        r#"
import { defineTask } from "tutti";
const t = defineTask("t", () => ({ kind: "shell" }));
export async function process(inputs, ctx) { return (await ctx.task(t, {})) + 1; }
"#,
    );
    let mut host = JsHost::load(&path).unwrap();
    host.set_replaying(true);
    host.set_replaying(false);
    let events = host.start("01X", &Value::Null, 1, 0).unwrap();
    assert!(matches!(&events[0], HostEvent::Request(r) if r.effect == "root/0"), "{events:?}");
    assert_eq!(finished(&host.deliver("root/0", &Ok(json!(1)), 1).unwrap()), json!(2));
    host.restart().unwrap();
    assert_eq!(host.start("01X", &Value::Null, 1, 0).unwrap().len(), 1);
}

// ---- group and member names ----

const RULE: &str = "may use letters, digits, '.', '_' and '-' (1-64 characters, not starting with '.')";

fn group_process(dir: &Path, call: &str) -> PathBuf {
    write(dir, "g.js", &format!("export async function process(inputs, ctx) {{ {call}; return \"opened\"; }}\n"))
}

#[test]
fn unsafe_group_names_are_refused_naming_the_group_and_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    for (arg, shown) in [
        (r#""a b""#, r#""a b""#),
        (r#""""#, r#""""#),
        (r#"".hidden""#, r#"".hidden""#),
        (r#""g/x""#, r#""g/x""#),
        (r#""bell\u0007""#, r#""bell\u0007""#),
        (r#""x".repeat(65)"#, ""),
        ("42", "42"),
    ] {
        let path = group_process(dir.path(), &format!("ctx.group({arg})"));
        let err = failure(&path);
        assert!(err.starts_with("TypeError: ctx.group("), "{arg}: {err}");
        assert!(err.contains(&format!("ctx.group({shown}")) && err.contains(&format!("group names {RULE}")), "{err}");
    }
}

#[test]
fn unsafe_member_names_are_refused_naming_group_member_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    for (members, shown) in [
        (r#"["ok", "../etc/x"]"#, r#"member "../etc/x""#),
        (r#"["a/b"]"#, r#"member "a/b""#),
        (r#"["new\nline"]"#, r#"member "new\nline""#),
        (r#"[".dot"]"#, r#"member ".dot""#),
    ] {
        let path = group_process(dir.path(), &format!("ctx.group(\"team\", {{ members: {members} }})"));
        let err = failure(&path);
        let want = format!("ctx.group(\"team\"): {shown}: member names {RULE}");
        assert!(err.contains(&want), "{members}: {err}");
    }
}

#[test]
fn safe_group_and_member_names_open_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let path = group_process(dir.path(), r#"ctx.group("team-1.v_2", { members: ["alice", "Bob-2", "c.d_e"] })"#);
    let mut host = JsHost::load(&path).unwrap();
    let events = host.start("01X", &Value::Null, 1, 0).unwrap();
    let opened = events.iter().find_map(|e| match e {
        HostEvent::GroupOpened { group, members, .. } => Some((group.clone(), members.len())),
        _ => None,
    });
    assert_eq!(opened, Some(("team-1.v_2".to_string(), 3)));
    assert_eq!(finished(&events), json!("opened"));
}
