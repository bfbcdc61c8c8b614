//! tutti's process host: runs a process file (an ES module) in an embedded QuickJS sandbox and implements
//! the engine's [`ProcessHost`] over it. Owns the `ctx` object (in `js/runtime.js`), the built-in "tutti"
//! module, module resolution and the sandbox rules. It knows nothing of the journal or of harnesses: it
//! reports requests and takes results, one step at a time.

mod callee;
mod modules;
mod tojs;
mod tojson;

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rquickjs::{CatchResultExt, CaughtError, Context, Ctx, Function, Module, Object, Persistent, Runtime, Value, qjs};
use serde_json::Value as Json;
use tutti_engine::{EffectRequest, HostError, HostEvent, ProcessHost};
use tutti_journal::ErrorInfo;
use tutti_journal::event::ModuleHash;

pub use modules::code_hash;

/// The JavaScript heap size at which QuickJS first runs its cycle collector.
const GC_THRESHOLD: usize = 64 * 1024 * 1024;

/// runtime.js as QuickJS bytecode (see build.rs).
const RUNTIME_BYTECODE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/runtime.qjsbc"));

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read process file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Import(String),
    #[error("cannot load process {path}: {message}")]
    Load { path: String, message: String },
    #[error(
        "process {path} did not finish loading: interrupted while running its top-level code (a loop that never \
         ends?)"
    )]
    Interrupted { path: String },
    #[error(
        "process {path} has no process function: export `async function process(inputs, ctx)` or a default \
         function (exports found: {found})"
    )]
    MissingExport { path: String, found: String },
    #[error("javascript engine")]
    Engine(#[from] rquickjs::Error),
}

/// Shared between the Rust host and the functions it gives to JavaScript.
#[derive(Default)]
struct Shared {
    events: RefCell<Vec<HostEvent>>,
    now_ms: Cell<i64>,
    /// A request the host could not decode: a bug in runtime.js, reported at the end of the step.
    fault: RefCell<Option<String>>,
    /// Set when the interrupt flag stopped running JavaScript: whatever that JavaScript did since is void.
    interrupted: Cell<bool>,
}

/// A loaded process, ready to start.
pub struct JsHost {
    // Field order is drop order: JavaScript values first, the runtime last.
    process: Persistent<Function<'static>>,
    /// runtime.js's entry points (start, deliver, ...): held here, never on a global process code could reach.
    internal: Persistent<Object<'static>>,
    /// runtime.js's `deliver`, called once per result (and per journaled result on resume).
    deliver: Persistent<Function<'static>>,
    context: Context,
    runtime: Runtime,
    shared: Rc<Shared>,
    modules: Vec<ModuleHash>,
    path: PathBuf,
    interrupt: Arc<AtomicBool>,
}

impl JsHost {
    /// Load the process module at `path` and everything it imports.
    pub fn load(path: &Path) -> Result<Self, Error> {
        Self::load_interruptible(path, Arc::default())
    }

    /// Load like [`JsHost::load`], with a flag that stops running JavaScript when it turns true (Ctrl-C): a
    /// loop that never awaits cannot hold tutti hostage. A load or a step cut short fails naming the file.
    pub fn load_interruptible(path: &Path, interrupt: Arc<AtomicBool>) -> Result<Self, Error> {
        let path =
            std::fs::canonicalize(path).map_err(|source| Error::Read { path: path.display().to_string(), source })?;
        let runtime = Runtime::new()?;
        runtime.set_max_stack_size(4 * 1024 * 1024);
        // A process holds many small live objects (one promise per pending effect); collecting less often
        // keeps the GC from dominating large fan-outs.
        runtime.set_gc_threshold(GC_THRESHOLD);
        let shared = Rc::new(Shared::default());
        let (flag, s) = (interrupt.clone(), shared.clone());
        runtime.set_interrupt_handler(Some(Box::new(move || {
            let stop = flag.load(Ordering::SeqCst);
            if stop {
                s.interrupted.set(true);
            }
            stop
        })));
        let graph = modules::Graph::new(modules::project_root(&path));
        runtime.set_loader(graph.resolver(), graph.loader());
        let context = Context::full(&runtime)?;
        let name = path.display().to_string();
        let loaded = context.with(|ctx| -> Result<_, Error> {
            let internal = install_runtime(&ctx, &shared, &name)?;
            let promise = Module::import(&ctx, name.clone()).catch(&ctx).map_err(|e| load_error(&name, e))?;
            let namespace: Object = match promise.finish::<Object>().catch(&ctx) {
                Ok(ns) => ns,
                Err(e) => return Err(graph.take_error().unwrap_or_else(|| load_error(&name, e))),
            };
            let function = process_export(&namespace, &name)?;
            let deliver: Function = internal.clone().restore(&ctx)?.get("deliver")?;
            Ok((Persistent::save(&ctx, function), internal, Persistent::save(&ctx, deliver)))
        });
        if shared.interrupted.get() {
            return Err(Error::Interrupted { path: name });
        }
        let (process, internal, deliver) = loaded?;
        let modules = graph.modules();
        Ok(Self { process, internal, deliver, context, runtime, shared, modules, path, interrupt })
    }

    /// The modules of the process's module graph with their content hashes.
    pub fn modules(&self) -> &[ModuleHash] {
        &self.modules
    }

    pub fn code_hash(&self) -> String {
        code_hash(&self.modules)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run queued promise jobs until the process is blocked, then hand over what it did.
    fn settle(&mut self) -> Result<Vec<HostEvent>, HostError> {
        loop {
            match self.runtime.execute_pending_job() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(_) if self.shared.interrupted.get() => return Err(self.interrupted()),
                Err(e) => {
                    let message =
                        e.0.with(|ctx| describe(&ctx, CaughtError::from_error(&ctx, rquickjs::Error::Exception)));
                    return Err(HostError { message: format!("uncaught error in a promise job: {message}") });
                }
            }
        }
        // An interrupted async function can end as a rejected promise rather than an error of the job.
        if self.shared.interrupted.get() {
            return Err(self.interrupted());
        }
        if let Some(fault) = self.shared.fault.borrow_mut().take() {
            return Err(HostError { message: fault });
        }
        Ok(std::mem::take(&mut *self.shared.events.borrow_mut()))
    }

    /// The step's events are dropped: they are the partial work of JavaScript that was cut short.
    fn interrupted(&self) -> HostError {
        self.shared.events.borrow_mut().clear();
        HostError {
            message: format!(
                "process {} did not yield: interrupted while running JavaScript (a loop that never awaits?)",
                self.path.display()
            ),
        }
    }

    fn call_internal(
        &self,
        name: &str,
        args: impl for<'js> FnOnce(&Ctx<'js>, Function<'js>) -> rquickjs::Result<()>,
    ) -> Result<(), HostError> {
        self.call(|ctx| {
            let f: Function = self.internal.clone().restore(ctx)?.get(name)?;
            args(ctx, f)
        })
    }

    /// Run `f` in the context; an error is described as JavaScript reports it, and JavaScript cut short by
    /// the interrupt flag is reported as such.
    fn call(&self, f: impl for<'js> FnOnce(&Ctx<'js>) -> rquickjs::Result<()>) -> Result<(), HostError> {
        let result = self.context.with(|ctx| f(&ctx).map_err(|e| host_error(&ctx, e)));
        if self.shared.interrupted.get() {
            return Err(self.interrupted());
        }
        result
    }
}

impl ProcessHost for JsHost {
    fn set_replaying(&mut self, replaying: bool) {
        // Replay re-creates objects the journal says the process already made; most are freed by reference
        // counting as results arrive. The cycle collector waits until replay ends.
        self.runtime.set_gc_threshold(if replaying { usize::MAX } else { GC_THRESHOLD });
        // The runtime defines this function; a failure here would be a bug in runtime.js, and the only
        // effect of ignoring it is call sites recorded (or not) while replaying.
        let _ = self.call_internal("setReplaying", |_, f| f.call::<_, ()>((replaying,)));
    }

    fn restart(&mut self) -> Result<(), HostError> {
        *self = JsHost::load_interruptible(&self.path, self.interrupt.clone())
            .map_err(|e| HostError { message: e.to_string() })?;
        Ok(())
    }

    fn start(&mut self, run_id: &str, inputs: &Json, seed: u32, now_ms: i64) -> Result<Vec<HostEvent>, HostError> {
        self.shared.now_ms.set(now_ms);
        let process = self.process.clone();
        let inputs = inputs.to_string();
        self.call_internal("start", |ctx, start| {
            let f = process.restore(ctx)?;
            start.call::<_, ()>((f, inputs, run_id, seed))
        })?;
        self.settle()
    }

    fn message(&mut self, from: &str, body: &Json, now_ms: i64) -> Result<Vec<HostEvent>, HostError> {
        self.shared.now_ms.set(now_ms);
        let json = body.to_string();
        self.call_internal("message", |_, message| message.call::<_, ()>((from, json)))?;
        self.settle()
    }

    fn bound(&mut self, member: &str, session: &str) -> Result<(), HostError> {
        self.call_internal("bound", |_, bound| bound.call::<_, ()>((member, session)))
    }

    fn deliver(
        &mut self,
        effect: &str,
        outcome: &Result<Json, ErrorInfo>,
        now_ms: i64,
    ) -> Result<Vec<HostEvent>, HostError> {
        self.shared.now_ms.set(now_ms);
        // The result crosses as the value JSON.parse would make of its text (see `tojs`); an error as its
        // fields, which runtime.js turns into an Error.
        let (ok, value) = match outcome {
            Ok(v) => (true, std::borrow::Cow::Borrowed(v)),
            Err(e) => (
                false,
                std::borrow::Cow::Owned(serde_json::to_value(e).unwrap_or_else(|_| Json::Object(Default::default()))),
            ),
        };
        self.call(|ctx| {
            let value = tojs::to_js(ctx, &value)?;
            self.deliver.clone().restore(ctx)?.call::<_, bool>((effect, ok, value)).map(|_| ())
        })?;
        self.settle()
    }
}

/// Evaluate runtime.js and the built-in "tutti" module, before any process code runs; returns runtime.js's
/// entry points. They pass through a global only while the built-in module evaluates: it captures what it
/// exports, and process code never sees the global.
fn install_runtime(ctx: &Ctx<'_>, shared: &Rc<Shared>, name: &str) -> Result<Persistent<Object<'static>>, Error> {
    install_host(ctx, shared)?;
    let internal: Object = eval_runtime(ctx).catch(ctx).map_err(|e| load_error(name, e))?;
    ctx.globals().set(modules::BUILTIN_GLOBAL, internal.clone())?;
    let evaluated = modules::declare_builtin(ctx).catch(ctx).map_err(|e| load_error(name, e));
    ctx.globals().remove(modules::BUILTIN_GLOBAL)?;
    evaluated?;
    Ok(Persistent::save(ctx, internal))
}

/// runtime.js, compiled to bytecode by build.rs (strict, global, named `tutti:runtime`), run: its value is
/// runtime.js's entry points. Reading bytecode instead of parsing the source saves a few milliseconds on
/// every command that loads a process.
fn eval_runtime<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Object<'js>> {
    let raw = ctx.as_raw().as_ptr();
    // SAFETY: the bytes are what build.rs wrote with JS_WriteObject from runtime.js, using this same QuickJS
    // (the same rquickjs-sys), so JS_ReadObject reads a well-formed function it trusts. JS_EvalFunction takes
    // ownership of that function; the value it returns is owned by the `Value` made from it.
    let value = unsafe {
        let flags = qjs::JS_READ_OBJ_BYTECODE as i32;
        let function = qjs::JS_ReadObject(raw, RUNTIME_BYTECODE.as_ptr(), RUNTIME_BYTECODE.len() as _, flags);
        if qjs::JS_IsException(function) {
            return Err(rquickjs::Error::Exception);
        }
        Value::from_raw(ctx.clone(), qjs::JS_EvalFunction(raw, function))
    };
    if value.is_exception() {
        return Err(rquickjs::Error::Exception);
    }
    Object::from_value(value)
}

/// The functions runtime.js calls, on a `__tutti_host` global it removes before any process code runs.
fn install_host(ctx: &Ctx<'_>, shared: &Rc<Shared>) -> rquickjs::Result<()> {
    let host = Object::new(ctx.clone())?;
    // An effect request: `[args, task]` as values, walked straight to JSON, or as `JSON.stringify`'s text of
    // them. False when the walk gave up: runtime.js then calls again with the text.
    let (s, classes) = (shared.clone(), tojson::Classes::read(ctx)?);
    host.set(
        "request",
        Function::new(
            ctx.clone(),
            move |effect: Value<'_>,
                  scope: Value<'_>,
                  task_id: Value<'_>,
                  kind: Value<'_>,
                  title: Value<'_>,
                  callsite: Value<'_>,
                  values: Value<'_>| {
                let values = match values.as_string() {
                    Some(text) => match text.to_string() {
                        Ok(text) => Values::Text(text),
                        Err(e) => Values::Unreadable(e.to_string()),
                    },
                    None => match tojson::to_json(values.ctx(), classes, &values) {
                        Some(Json::Array(pair)) => match <[Json; 2]>::try_from(pair) {
                            Ok([args, task]) => Values::Walked(args, task),
                            Err(_) => return false,
                        },
                        _ => return false,
                    },
                };
                let fields = [
                    text_field(&effect),
                    text_field(&scope),
                    text_field(&task_id),
                    text_field(&kind),
                    text_field(&title),
                    text_field(&callsite),
                ];
                push_request(&s, fields, values);
                true
            },
        )?,
    )?;
    let s = shared.clone();
    host.set(
        "log",
        Function::new(ctx.clone(), move |scope: String, message: String| {
            s.events.borrow_mut().push(HostEvent::Log { scope, message });
        })?,
    )?;
    let s = shared.clone();
    host.set(
        "finish",
        Function::new(ctx.clone(), move |ok: bool, json: String| {
            let event = if ok {
                HostEvent::Finished(Ok(serde_json::from_str(&json).unwrap_or(Json::Null)))
            } else {
                let mut info = serde_json::from_str(&json).unwrap_or_else(|_| ErrorInfo::new("Error", json.clone()));
                callee::name_callee(&mut info);
                HostEvent::Finished(Err(info))
            };
            s.events.borrow_mut().push(event);
        })?,
    )?;
    let s = shared.clone();
    host.set(
        "halt",
        Function::new(ctx.clone(), move |reason: String, json: String| {
            let payload = serde_json::from_str(&json).unwrap_or(Json::Null);
            s.events.borrow_mut().push(HostEvent::Halted { reason, payload });
        })?,
    )?;
    let s = shared.clone();
    host.set("now", Function::new(ctx.clone(), move || s.now_ms.get() as f64)?)?;
    let s = shared.clone();
    host.set(
        "cancel",
        Function::new(ctx.clone(), move |effect: String| {
            s.events.borrow_mut().push(HostEvent::Cancel { effect: effect.into() })
        })?,
    )?;
    let s = shared.clone();
    host.set("group", Function::new(ctx.clone(), move |json: String| push_group(&s, &json))?)?;
    let s = shared.clone();
    host.set(
        "send",
        Function::new(ctx.clone(), move |scope: String, to: String, json: String| {
            let body = serde_json::from_str(&json).unwrap_or(Json::Null);
            s.events.borrow_mut().push(HostEvent::Send { scope, to, body });
        })?,
    )?;
    let s = shared.clone();
    host.set(
        "checkpoint",
        Function::new(ctx.clone(), move |group: String, completed: f64, json: String| {
            let value = serde_json::from_str(&json).unwrap_or(Json::Null);
            s.events.borrow_mut().push(HostEvent::Checkpoint { group, completed: completed.max(0.0) as u64, value });
        })?,
    )?;
    let s = shared.clone();
    host.set(
        "groupClosed",
        Function::new(ctx.clone(), move |group: String| s.events.borrow_mut().push(HostEvent::GroupClosed { group }))?,
    )?;
    ctx.globals().set("__tutti_host", host)
}

/// An effect request's arguments and task (null while replaying), as they crossed from runtime.js.
enum Values {
    /// Walked to JSON already (see `tojson`).
    Walked(Json, Json),
    /// `JSON.stringify`'s text of `[args, task]`, for what the walk leaves to it.
    Text(String),
    /// A text that does not convert to Rust's (a bug in runtime.js), with why.
    Unreadable(String),
}

/// An effect request from runtime.js: its identity and labels as JavaScript strings (title and call site may be
/// null), and its values. A resume sends tens of thousands of requests.
fn push_request(shared: &Shared, fields: [TextField; 6], values: Values) {
    let fault = |e: &dyn std::fmt::Display, shown: &dyn std::fmt::Display| {
        *shared.fault.borrow_mut() = Some(format!("malformed effect request ({e}): {shown}"));
    };
    let (args, task) = match values {
        Values::Walked(args, task) => (args, task),
        Values::Text(body) => match serde_json::from_str::<(Json, Json)>(&body) {
            Ok(values) => values,
            Err(e) => return fault(&e, &body),
        },
        Values::Unreadable(why) => return fault(&why, &"the JSON text of [args, task]"),
    };
    let [effect, scope, task_id, kind, title, callsite] = fields;
    let required = |field: TextField, name: &str| match field {
        TextField::Text(text) => Ok(text),
        _ => Err(format!("`{name}` is not a string")),
    };
    let optional = |field: TextField, name: &str| match field {
        TextField::Text(text) => Ok(Some(text)),
        TextField::Absent => Ok(None),
        TextField::Other => Err(format!("`{name}` is not a string")),
    };
    let labels = (|| {
        Ok::<_, String>((
            required(effect, "effect")?,
            required(scope, "scope")?,
            required(task_id, "taskId")?,
            required(kind, "kind")?,
            optional(title, "title")?,
            optional(callsite, "callsite")?,
        ))
    })();
    match labels {
        Ok((effect, scope, task_id, kind, title, frame)) => {
            let kind = tutti_engine::Kind::parse(&kind);
            let callsite = frame.as_deref().and_then(call_site);
            let request = EffectRequest { effect: effect.into(), scope, task_id, kind, title, callsite, args, task };
            shared.events.borrow_mut().push(HostEvent::Request(request));
        }
        Err(e) => fault(&e, &Json::Array(vec![args, task])),
    }
}

/// The call site in a stack frame's text, `    at f (file:line:col)`: `file:line:col`, unless the frame is
/// tutti's own code or native. The site starts after the first ` (`, so a path may hold parentheses.
fn call_site(frame: &str) -> Option<String> {
    let line = frame.trim_end();
    let inner = line.strip_suffix(')')?;
    let site = &inner[inner.find(" (")? + 2..];
    (!site.starts_with("tutti:") && site != "native").then(|| site.to_string())
}

/// A request field as runtime.js passed it.
enum TextField {
    Text(String),
    /// `null` or `undefined`.
    Absent,
    /// Anything else (a bug in runtime.js).
    Other,
}

fn text_field(value: &Value<'_>) -> TextField {
    if value.is_null() || value.is_undefined() {
        return TextField::Absent;
    }
    match value.as_string().map(rquickjs::String::to_string) {
        Some(Ok(text)) => TextField::Text(text),
        _ => TextField::Other,
    }
}

#[derive(serde::Deserialize)]
struct WireGroup {
    group: String,
    members: Vec<tutti_journal::event::MemberInfo>,
    persistent: bool,
    #[serde(default)]
    budget: Option<serde_json::Value>,
    #[serde(default, rename = "memberBudget")]
    member_budget: Option<serde_json::Value>,
}

fn push_group(shared: &Shared, json: &str) {
    match serde_json::from_str::<WireGroup>(json) {
        Ok(g) => shared.events.borrow_mut().push(HostEvent::GroupOpened {
            group: g.group,
            members: g.members,
            persistent: g.persistent,
            budget: g.budget,
            member_budget: g.member_budget,
        }),
        Err(e) => *shared.fault.borrow_mut() = Some(format!("malformed group ({e}): {json}")),
    }
}

fn process_export<'js>(namespace: &Object<'js>, path: &str) -> Result<Function<'js>, Error> {
    for name in ["process", "default"] {
        if let Ok(f) = namespace.get::<_, Function>(name) {
            return Ok(f);
        }
    }
    let found: Vec<String> = namespace.keys::<String>().filter_map(Result::ok).collect();
    let found = if found.is_empty() { "none".to_string() } else { found.join(", ") };
    Err(Error::MissingExport { path: path.to_string(), found })
}

fn describe(_ctx: &Ctx<'_>, e: CaughtError<'_>) -> String {
    match e {
        CaughtError::Exception(ex) => {
            let mut text = ex.message().unwrap_or_default();
            if let Some(stack) = ex.stack().filter(|s| !s.trim().is_empty()) {
                text.push('\n');
                text.push_str(stack.trim_end());
            }
            text
        }
        CaughtError::Value(v) => format!("{v:?}"),
        CaughtError::Error(e) => e.to_string(),
    }
}

fn load_error(path: &str, e: CaughtError<'_>) -> Error {
    let message = match &e {
        CaughtError::Exception(ex) => {
            let name = ex.get::<_, String>("name").unwrap_or_else(|_| "Error".into());
            let mut text = format!("{name}: {}", ex.message().unwrap_or_default());
            if let Some(stack) = ex.stack().filter(|s| !s.trim().is_empty()) {
                text.push('\n');
                text.push_str(stack.trim_end());
            }
            text
        }
        CaughtError::Value(v) => format!("{v:?}"),
        CaughtError::Error(e) => e.to_string(),
    };
    Error::Load { path: path.to_string(), message }
}

fn host_error(ctx: &Ctx<'_>, e: rquickjs::Error) -> HostError {
    HostError { message: describe(ctx, CaughtError::from_error(ctx, e)) }
}

#[cfg(test)]
mod tests {
    use super::call_site;

    #[test]
    fn the_call_site_is_taken_from_the_frame_unless_it_is_tuttis_own_or_native() {
        assert_eq!(call_site("    at process (/p/flow.js:12:7)\n").as_deref(), Some("/p/flow.js:12:7"));
        assert_eq!(call_site("    at <anonymous> (/p/a (copy).js:3:1)").as_deref(), Some("/p/a (copy).js:3:1"));
        assert_eq!(call_site("    at request (tutti:runtime:201:5)"), None);
        assert_eq!(call_site("    at map (native)"), None);
        assert_eq!(call_site("    at /p/flow.js:12:7"), None, "no parentheses: no site");
        assert_eq!(call_site(""), None);
    }
}
