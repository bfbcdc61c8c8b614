// tutti's process runtime: the `ctx` object, defineTask, scopes and effect identities, deterministic Date
// and Math.random. Evaluated once per process host, before the process module loads. Talks to the Rust host
// only through `__tutti_host` (request, log, finish, halt, now), which it hides from process code.
(function () {
  "use strict";
  const host = globalThis.__tutti_host;
  delete globalThis.__tutti_host;

  // ---- deterministic time and randomness ----
  const RealDate = Date;
  function TuttiDate(...a) {
    if (!new.target) return new RealDate(host.now()).toString();
    return a.length === 0 ? new RealDate(host.now()) : new RealDate(...a);
  }
  TuttiDate.prototype = RealDate.prototype;
  Object.defineProperty(RealDate.prototype, "constructor", { value: TuttiDate, writable: true, configurable: true });
  TuttiDate.now = () => host.now();
  TuttiDate.UTC = RealDate.UTC;
  TuttiDate.parse = RealDate.parse;
  globalThis.Date = TuttiDate;

  let seed = 0x9e3779b9;
  function mulberry32() {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  Math.random = mulberry32;

  // ---- scopes ----
  // A scope hands out call indices; each parallel branch is a scope of its own, so concurrent branches never
  // race for indices. `current` is the scope of the code running now: set when a branch starts, and when an
  // effect's result is delivered (the continuations it wakes run in the scope that requested it).
  class Scope {
    constructor(path) {
      this.path = path;
      this.calls = 0;
      this.branches = 0;
    }
    nextId() {
      return this.path + "/" + this.calls++;
    }
    branch() {
      return new Scope(this.path + "/parallel:" + this.branches++);
    }
  }
  const root = new Scope("root");
  let current = root;
  function inScope(scope, f) {
    const saved = current;
    current = scope;
    try {
      return f();
    } finally {
      current = saved;
    }
  }

  // ---- call sites, for non-determinism errors ----
  // The call site is the frame that called `entry` (the ctx method the process called). One frame is all
  // that gets built: a full backtrace would be most of the cost of a request.
  function callsite(entry) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 1;
    const holder = {};
    Error.captureStackTrace(holder, entry);
    Error.stackTraceLimit = limit;
    const line = String(holder.stack || "").trimEnd();
    const open = line.lastIndexOf("(");
    if (open < 0 || !line.endsWith(")")) return null;
    const site = line.slice(open + 1, -1);
    return site.startsWith("tutti:") || site === "native" ? null : site;
  }

  // ---- task definitions ----
  const taskIds = new Set();
  const TASK = Symbol("tutti.task");
  function normalizeLabels(labels) {
    if (!Array.isArray(labels)) return labels;
    return [...new Set(labels.map((l) => String(l).trim()).filter((l) => l.length > 0))];
  }
  function defineTask(a, b, c) {
    let id, build, statics;
    if (typeof a === "object" && a !== null) {
      id = a.id ?? a.name;
      statics = { ...a };
      delete statics.id;
    } else {
      id = a;
      build = b;
      statics = c;
    }
    if (typeof id !== "string" || id.length === 0) throw new TypeError("defineTask: the task id must be a non-empty string");
    if (build !== undefined && typeof build !== "function")
      throw new TypeError(`defineTask("${id}"): the second argument must be a builder function`);
    if (taskIds.has(id)) throw new Error(`defineTask: duplicate task id "${id}"`);
    taskIds.add(id);
    return Object.freeze({ [TASK]: true, id, build, statics });
  }
  function describe(def, args, taskCtx) {
    let desc = def.statics ? { ...def.statics } : undefined;
    if (def.build) {
      const built = def.build(args, taskCtx);
      const plain = built && typeof built === "object" && typeof built.then !== "function";
      if (!desc) {
        if (!plain) throw new TypeError(`task "${def.id}": the builder must return a task description object`);
        desc = built;
      } else if (plain && typeof built.kind === "string") {
        desc = { ...desc, ...built };
      }
    }
    if (!desc || typeof desc.kind !== "string")
      throw new TypeError(`task "${def.id}": the task description has no "kind" (agent, shell, node, breakpoint, sleep, ...)`);
    if (desc.labels) desc.labels = normalizeLabels(desc.labels);
    return desc;
  }

  // ---- effects ----
  const pending = new Map();
  let runId = "";
  // While the host replays a journal, requests leave out what the journal already holds.
  let replaying = false;
  function toError(info) {
    const e = new Error(info.message);
    e.name = info.name || "Error";
    if (info.data !== undefined) e.data = info.data;
    return e;
  }
  function request(scope, def, args, opts, entry) {
    const effectId = scope.nextId();
    const labels = normalizeLabels(opts && (opts.labels || (opts.label ? [opts.label] : undefined)));
    const taskCtx = { effectId, taskId: def.id, runId, label: labels && labels[0], labels: labels || [] };
    const desc = inScope(scope, () => describe(def, args, taskCtx));
    const promise = new Promise((resolve, reject) => pending.set(effectId, { resolve, reject, scope }));
    host.request(
      JSON.stringify({
        effect: effectId,
        scope: scope.path,
        taskId: def.id,
        kind: desc.kind,
        title: typeof desc.title === "string" ? desc.title : null,
        callsite: replaying ? null : callsite(entry),
        args: args === undefined ? null : args,
        task: replaying ? null : desc,
      }),
    );
    return promise;
  }
  function builtinTask(id, kind) {
    taskIds.add(id);
    return Object.freeze({ [TASK]: true, id, build: undefined, statics: { kind } });
  }
  const breakpointTask = builtinTask("tutti/breakpoint", "breakpoint");
  const sleepTask = builtinTask("tutti/sleep", "sleep");

  // ---- ctx.parallel ----
  function settleAll(parent, starters, limit) {
    return new Promise((resolve, reject) => {
      const results = new Array(starters.length);
      let next = 0, done = 0, failed = false;
      if (starters.length === 0) return resolve(results);
      const startNext = () => {
        const i = next++;
        let p;
        try {
          p = Promise.resolve(starters[i]());
        } catch (e) {
          p = Promise.reject(e);
        }
        p.then(
          (v) => {
            results[i] = v;
            done++;
            if (failed) return;
            if (done === starters.length) {
              current = parent;
              resolve(results);
            } else if (next < starters.length) startNext();
          },
          (e) => {
            if (failed) return;
            failed = true;
            current = parent;
            reject(e);
          },
        );
      };
      const n = Math.min(limit, starters.length);
      for (let k = 0; k < n; k++) startNext();
    });
  }
  function limitOf(opts) {
    const m = opts && opts.maxConcurrency;
    return typeof m === "number" && m >= 1 ? Math.floor(m) : Infinity;
  }
  function starterFor(parent, item) {
    if (typeof item === "function") {
      const scope = parent.branch();
      return () => inScope(scope, item);
    }
    return () => item;
  }
  const parallel = Object.freeze({
    all(items, opts) {
      if (!Array.isArray(items)) throw new TypeError("ctx.parallel.all expects an array of thunks or promises");
      const parent = current;
      const starters = items.map((item) => starterFor(parent, item));
      return settleAll(parent, starters, limitOf(opts));
    },
    map(items, fn, opts) {
      if (!Array.isArray(items)) throw new TypeError("ctx.parallel.map expects an array");
      if (typeof fn !== "function") throw new TypeError("ctx.parallel.map expects a function");
      const parent = current;
      const starters = items.map((item, i) => starterFor(parent, () => fn(item, i)));
      return settleAll(parent, starters, limitOf(opts));
    },
  });

  // ---- ctx ----
  function format(args) {
    return args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" ");
  }
  function checkTask(def, what) {
    if (!def || def[TASK] !== true) throw new TypeError(`${what} expects a task created with defineTask`);
  }
  // The ctx methods that request effects are named functions: each is the `entry` whose caller is the call
  // site recorded with the request.
  function task(def, args, opts) {
    checkTask(def, "ctx.task");
    return request(current, def, args, opts, task);
  }
  function agent(desc) {
    const statics = { kind: "agent", ...desc, agent: desc.agent ?? { prompt: desc.prompt, outputSchema: desc.outputSchema } };
    return request(current, { [TASK]: true, id: "tutti/agent", build: undefined, statics }, null, undefined, agent);
  }
  function orchestratorTask(payload) {
    const statics = { kind: "orchestrator_task", ...payload };
    const def = { [TASK]: true, id: "tutti/orchestrator_task", build: undefined, statics };
    return request(current, def, payload, undefined, orchestratorTask);
  }
  function breakpoint(payload, opts) {
    const title = payload && typeof payload === "object" ? payload.title ?? payload.question : undefined;
    const def = typeof title === "string" ? { ...breakpointTask, statics: { kind: "breakpoint", title } } : breakpointTask;
    return request(current, def, payload === undefined ? null : payload, opts, breakpoint);
  }
  function sleepUntil(when) {
    const ms = typeof when === "number" ? when : new RealDate(when).getTime();
    if (!Number.isFinite(ms)) throw new TypeError(`ctx.sleepUntil: not a time: ${when}`);
    return request(current, sleepTask, { targetEpochMs: ms }, undefined, sleepUntil);
  }
  function makeCtx() {
    return Object.freeze({
      get runId() {
        return runId;
      },
      runDir: ".tutti/runs/" + runId,
      artifactsDir: ".tutti/runs/" + runId + "/artifacts",
      task,
      agent,
      orchestratorTask,
      parallel,
      breakpoint,
      sleepUntil,
      log(...args) {
        host.log(current.path, format(args));
      },
      hook(type, payload) {
        host.log(current.path, "hook " + type + " " + JSON.stringify(payload ?? null));
        return Promise.resolve();
      },
      checkpoint(payload) {
        host.log(current.path, "checkpoint " + JSON.stringify(payload ?? null));
      },
      now() {
        return new RealDate(host.now());
      },
      halt(reason, payload) {
        host.halt(String(reason ?? "halted"), JSON.stringify(payload ?? null));
        return new Promise(() => {});
      },
    });
  }

  // ---- entry points for the Rust host ----
  function errorInfo(e) {
    if (e instanceof Error) {
      const info = { name: e.name, message: e.message };
      const data = {};
      if (e.data !== undefined) data.data = e.data;
      if (e.stack) data.stack = String(e.stack);
      if (Object.keys(data).length) info.data = data;
      return info;
    }
    return { name: "Error", message: typeof e === "string" ? e : JSON.stringify(e) };
  }
  function start(processFn, inputsJson, id, seedValue) {
    runId = id;
    seed = seedValue | 0;
    current = root;
    let result;
    try {
      result = Promise.resolve(processFn(JSON.parse(inputsJson), makeCtx()));
    } catch (e) {
      result = Promise.reject(e);
    }
    result.then(
      (v) => host.finish(true, JSON.stringify(v === undefined ? null : v)),
      (e) => host.finish(false, JSON.stringify(errorInfo(e))),
    );
  }
  function deliver(effectId, ok, json) {
    const p = pending.get(effectId);
    if (!p) return false;
    pending.delete(effectId);
    current = p.scope;
    if (ok) p.resolve(JSON.parse(json));
    else p.reject(toError(JSON.parse(json)));
    return true;
  }
  Object.defineProperty(globalThis, "__tutti_internal", {
    value: Object.freeze({
      start,
      deliver,
      defineTask,
      setReplaying(on) {
        replaying = on;
      },
    }),
    enumerable: false,
  });
})();
