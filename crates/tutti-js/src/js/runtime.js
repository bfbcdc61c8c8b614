// tutti's process runtime: the `ctx` object, defineTask, scopes and effect identities, deterministic Date
// and Math.random. Evaluated once per process host, before the process module loads. Talks to the Rust host
// only through `__tutti_host` (request, log, finish, halt, now), which it hides from process code, and returns
// its entry points to the host as the script's value.
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
    constructor(path, member) {
      this.path = path;
      this.calls = 0;
      this.branches = 0;
      // The group member this scope belongs to, if any: its tasks run on the member's harness.
      this.member = member;
    }
    nextId() {
      return this.path + "/" + this.calls++;
    }
    branch() {
      return this.branchAt(this.branches++);
    }
    // The branch with index `index`, taken earlier (by `branch`, or as one of `count` reserved at once).
    branchAt(index) {
      return new Scope(this.path + "/parallel:" + index, this.member);
    }
    reserve(count) {
      const first = this.branches;
      this.branches += count;
      return first;
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
  // that gets built: a full backtrace would be most of the cost of a request. Its text (`    at f
  // (file:line:col)`) goes to the host as it is: the host takes the site out of it.
  function callsite(entry) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 1;
    const holder = {};
    Error.captureStackTrace(holder, entry);
    Error.stackTraceLimit = limit;
    return String(holder.stack || "");
  }

  // ---- task definitions ----
  // Task definitions by id. babysitter's library reaches it as `globalTaskRegistry.definitions` to drop an id
  // that two imported modules both define (`definitions.delete(id)`), so a later defineTask may reuse it.
  const definitions = new Map();
  const globalTaskRegistry = Object.freeze({
    definitions,
    hasTask: (id) => definitions.has(id),
    listDefinitions: () => [...definitions.values()].map((d) => ({ id: d.id, kind: d.statics?.kind })).sort((a, b) => a.id.localeCompare(b.id)),
  });
  const TASK = Symbol("tutti.task");
  const EFFECT = Symbol("tutti.effect");
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
    if (definitions.has(id))
      throw new Error(`defineTask: duplicate task id "${id}" (two modules define it; drop one with globalTaskRegistry.definitions.delete("${id}") first)`);
    // Like the published SDK, a second argument that is not a function fails when the task is called, not
    // when the file loads: a file may define tasks it never calls.
    const invalid = build !== undefined && typeof build !== "function";
    const def = Object.freeze({ [TASK]: true, id, build, statics, invalid });
    definitions.set(id, def);
    return def;
  }
  function describe(def, args, taskCtx) {
    if (def.invalid)
      throw new TypeError(`defineTask("${def.id}"): the second argument must be a builder function (args, taskCtx) => ({ kind, ... }), not ${typeof def.build}`);
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
    if (desc.isolation !== undefined && desc.isolation !== "worktree" && desc.isolation !== "none") {
      const e = new TypeError(`task "${def.id}": isolation ${JSON.stringify(desc.isolation)} is not known: use "worktree" (its own git worktree and branch) or leave it out`);
      e.name = "IsolationError";
      throw e;
    }
    if (desc.isolation === "none") delete desc.isolation;
    return desc;
  }

  // ---- effects ----
  const pending = new Map();
  // Taken at load, so that a process that replaces Promise.withResolvers does not break its own requests (and
  // cheaper than looking the global up on every request).
  const withResolvers = Promise.withResolvers.bind(Promise);
  let runId = "";
  // While the host replays a journal, requests leave out what the journal already holds.
  let replaying = false;
  function toError(info) {
    const e = new Error(info.message);
    e.name = info.name || "Error";
    if (info.data !== undefined) e.data = info.data;
    // A budget refusal carries its scope, limit and spend on the error itself, for a coordinator to act on.
    if (e.name === "BudgetExceeded" && info.data && typeof info.data === "object")
      for (const k of ["scope", "measure", "limit", "spent"]) e[k] = info.data[k];
    return e;
  }
  // A priority is a finite number (higher goes first within the run's limits); none is undefined.
  // `where` names the caller in an error: a function, so that the message is built only when one is thrown.
  function checkPriority(p, where) {
    if (p === undefined || p === null) return undefined;
    if (typeof p !== "number" || !Number.isFinite(p))
      throw new TypeError(`${where()}: priority must be a number (higher goes first), not ${JSON.stringify(p)}`);
    return p;
  }
  // A request's priority: ctx.task's option, else the task's own, else its group's.
  function priorityOf(def, opts, desc, member) {
    const asked = opts ? opts.priority : undefined;
    if (asked !== undefined && asked !== null) return checkPriority(asked, () => `ctx.task("${def.id}")`);
    if (desc.priority !== undefined && desc.priority !== null) return checkPriority(desc.priority, () => `task "${def.id}"`);
    return member ? member._group.priority : undefined;
  }
  function request(scope, def, args, opts, entry) {
    const effectId = scope.nextId();
    const labels = opts ? normalizeLabels(opts.labels || (opts.label ? [opts.label] : undefined)) : opts;
    const taskCtx = { effectId, taskId: def.id, runId, label: labels && labels[0], labels: labels || [] };
    // The builder runs in the requesting scope (inScope without its closure: this is every request's path).
    const saved = current;
    current = scope;
    let desc;
    try {
      desc = describe(def, args, taskCtx);
    } finally {
      current = saved;
    }
    const member = scope.member;
    if (member && member.harness && !replaying) desc = { ...desc, harness: preferFirst(member.harness, desc.harness) };
    // A member of an isolated group works in its own worktree, the same in every round.
    if (member && member._group.isolation && desc.isolation === undefined && !replaying) desc = { ...desc, isolation: member._group.isolation };
    const priority = priorityOf(def, opts, desc, member);
    if (priority !== undefined && !replaying) desc = { ...desc, priority };
    // A retry policy given with the call overrides the task's own; so does a budget.
    if (opts && opts.retry !== undefined && !replaying) desc = { ...desc, retry: opts.retry };
    if (opts && opts.budget !== undefined && !replaying) desc = { ...desc, budget: opts.budget };
    // A merge's resolver works in the worktree that holds the conflicted merge.
    if (opts && typeof opts.worktree === "string" && !replaying) desc = { ...desc, worktree: opts.worktree };
    // The code that awaits the result continues in the caller's scope (a coordinator awaiting a member's task
    // stays the coordinator).
    // Its settlers wait in `pending` (withResolvers: no executor closure capturing this call's locals).
    const settlers = withResolvers();
    settlers.scope = scope;
    settlers.caller = current;
    pending.set(effectId, settlers);
    const promise = settlers.promise;
    promise[EFFECT] = effectId;
    // The arguments and task cross as values (the host walks plain data straight to JSON); what it will not
    // walk crosses as JSON.stringify's text, so that both give the same JSON.
    const kind = desc.kind;
    const title = typeof desc.title === "string" ? desc.title : null;
    const site = replaying ? null : callsite(entry);
    const values = [args === undefined ? null : args, replaying ? null : desc];
    if (!host.request(effectId, scope.path, def.id, kind, title, site, values))
      host.request(effectId, scope.path, def.id, kind, title, site, JSON.stringify(values));
    return promise;
  }
  function preferFirst(first, prefs) {
    const rest = prefs === undefined ? [] : Array.isArray(prefs) ? prefs : [prefs];
    return [first, ...rest.filter((h) => h !== first)];
  }
  function cancelEffect(effectId) {
    if (effectId !== undefined && pending.has(effectId)) host.cancel(effectId);
  }
  // Cancels what `scope` requested and is still pending, in request order (what cancelling a member's item
  // stops). It scans the pending effects: such cancels are rare, and a set kept per scope cost every fan-out
  // branch one.
  function cancelScope(scope) {
    for (const [id, p] of pending) if (p.scope === scope) cancelEffect(id);
  }
  function builtinTask(id, kind) {
    definitions.set(id, { id, statics: { kind } });
    return Object.freeze({ [TASK]: true, id, build: undefined, statics: { kind } });
  }
  const breakpointTask = builtinTask("tutti/breakpoint", "breakpoint");
  const sleepTask = builtinTask("tutti/sleep", "sleep");
  const mergeTask = builtinTask("tutti/merge", "merge");

  // ---- ctx.parallel ----
  // Starts `start(0)` to `start(n - 1)` in order, at most `limit` at a time; resolves with their results in
  // index order, or rejects with the first failure.
  function settleAll(parent, n, start, limit) {
    return new Promise((resolve, reject) => {
      const results = new Array(n);
      let next = 0, done = 0, failed = false;
      if (n === 0) return resolve(results);
      const startNext = () => {
        const i = next++;
        let p;
        try {
          p = Promise.resolve(start(i));
        } catch (e) {
          p = Promise.reject(e);
        }
        p.then(
          (v) => {
            results[i] = v;
            done++;
            if (failed) return;
            if (done === n) {
              current = parent;
              resolve(results);
            } else if (next < n) startNext();
          },
          (e) => {
            if (failed) return;
            failed = true;
            current = parent;
            reject(e);
          },
        );
      };
      const first = Math.min(limit, n);
      for (let k = 0; k < first; k++) startNext();
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
      return settleAll(parent, starters.length, (i) => starters[i](), limitOf(opts));
    },
    map(items, fn, opts) {
      if (!Array.isArray(items)) throw new TypeError("ctx.parallel.map expects an array");
      if (typeof fn !== "function") throw new TypeError("ctx.parallel.map expects a function");
      const parent = current;
      // Every item is a branch: their indices are taken now, so a branch's path does not depend on when a
      // concurrency limit lets it start. No closures per item: a fan-out's cost is per item.
      const list = items.slice();
      const base = parent.reserve(list.length);
      const start = (i) => {
        const saved = current;
        current = parent.branchAt(base + i);
        try {
          return fn(list[i], i);
        } finally {
          current = saved;
        }
      };
      return settleAll(parent, list.length, start, limitOf(opts));
    },
  });


  // ---- groups ----
  // A group and its members get their identities from their names: member scopes are
  // `group:NAME/MEMBER`, the same in every iteration and after a restart. Names are restricted so that they
  // cannot forge another scope or address ('/'), or carry control characters into logs and terminals.
  // The engine holds journaled names to the same rule (tutti_engine::identity::is_safe_name).
  const SAFE_NAME = /^(?!\.)[A-Za-z0-9._-]{1,64}$/;
  const NAME_RULE = "may use letters, digits, '.', '_' and '-' (1-64 characters, not starting with '.')";
  function checkName(what, name, where) {
    if (typeof name === "string" && SAFE_NAME.test(name)) return;
    const shown = typeof name === "string" ? JSON.stringify(name) : String(name);
    const prefix = where === undefined ? `ctx.group(${shown})` : `ctx.group(${JSON.stringify(where)}): member ${shown}`;
    throw new TypeError(`${prefix}: ${what} names ${NAME_RULE}`);
  }
  function memberTask(def, args, opts) {
    checkTask(def, "member.task");
    return request(this._scope, def, args, opts, memberTask);
  }
  class Member {
    constructor(group, name, harness) {
      this.group = group.name;
      this.name = name;
      this.harness = harness;
      this.session = null;
      Object.defineProperty(this, "_group", { value: group });
      Object.defineProperty(this, "_scope", { value: new Scope(`group:${group.name}/${name}`, this) });
    }
  }
  Member.prototype.task = memberTask;
  // A turn of the member's own, to read its messages: it resumes the member's session (when its group is
  // persistent) with the waiting messages at the top of the prompt.
  const wakeTask = builtinTask("tutti/wake", "agent");
  function wake() {
    const def = { ...wakeTask, statics: { kind: "agent", title: `wake ${this.group}/${this.name}`, agent: { prompt: "Read the messages above and act on them." } } };
    return request(this._scope, def, null, undefined, wake);
  }
  Member.prototype.wake = wake;

  function completionPolicy(completion) {
    if (completion === undefined) return undefined;
    if (completion === "any") return { minSuccessful: 1 };
    if (completion && typeof completion === "object") {
      const { minSuccessful, toleratedFailures } = completion;
      if (Number.isInteger(minSuccessful) && minSuccessful >= 1) return { minSuccessful };
      if (Number.isInteger(toleratedFailures) && toleratedFailures >= 0) return { toleratedFailures };
    }
    throw new TypeError('group.map: completion must be { minSuccessful: k }, { toleratedFailures: k } or "any"');
  }

  class Group {
    constructor(name, opts) {
      const spec = opts.members ?? 1;
      const names = typeof spec === "number" ? Array.from({ length: spec }, (_, i) => `m${i + 1}`) : spec.map(String);
      for (const n of names) checkName("member", n, name);
      if (names.length === 0) throw new TypeError(`ctx.group("${name}"): a group needs at least one member`);
      if (new Set(names).size !== names.length) throw new TypeError(`ctx.group("${name}"): member names must be unique`);
      const harnesses = opts.harness === undefined ? [] : Array.isArray(opts.harness) ? opts.harness : [opts.harness];
      this.name = name;
      this.persistent = opts.persistent !== false;
      if (opts.isolation !== undefined && opts.isolation !== "worktree" && opts.isolation !== "none") {
        const e = new TypeError(`ctx.group("${name}"): isolation ${JSON.stringify(opts.isolation)} is not known: use "worktree" (one worktree and branch per member) or leave it out`);
        e.name = "IsolationError";
        throw e;
      }
      Object.defineProperty(this, "isolation", { value: opts.isolation === "worktree" ? "worktree" : undefined });
      Object.defineProperty(this, "priority", { value: checkPriority(opts.priority, () => `ctx.group("${name}")`) });
      this.maxConcurrency = limitOf(opts);
      this.members = Object.freeze(names.map((n, i) => new Member(this, n, harnesses.length ? harnesses[i % harnesses.length] : null)));
      Object.defineProperty(this, "_queue", { value: [] });
      Object.defineProperty(this, "_waiters", { value: [] });
      Object.defineProperty(this, "_items", { value: new Map() });
      this.closed = false;
      host.group(JSON.stringify({
        group: name,
        members: this.members.map((m) => ({ name: m.name, harness: m.harness })),
        persistent: this.persistent,
        budget: opts.budget,
        memberBudget: opts.memberBudget,
      }));
    }
    member(name) {
      const m = this.members.find((x) => x.name === name);
      if (!m) throw new Error(`group "${this.name}" has no member "${name}" (members: ${this.members.map((x) => x.name).join(", ")})`);
      return m;
    }
    // Completions, failures and checkpoints, in journal order (the order results are delivered).
    _push(event) {
      const waiter = this._waiters.shift();
      if (waiter) waiter(event);
      else this._queue.push(event);
    }
    _settled(member, effectId, ok, value) {
      const index = this._items.get(member);
      const event = { type: ok ? "completed" : value && value.name === "Cancelled" ? "cancelled" : "failed", member: member.name, effect: effectId };
      if (index !== undefined) event.index = index;
      if (ok) event.value = value;
      else event.error = value;
      this._push(event);
    }
    next() {
      if (this._queue.length) return Promise.resolve(this._queue.shift());
      const scope = current;
      return new Promise((resolve) =>
        this._waiters.push((event) => {
          current = scope;
          resolve(event);
        }),
      );
    }
    async *events() {
      while (!this.closed || this._queue.length) yield await this.next();
    }
    close() {
      if (this.closed) return;
      this.closed = true;
      for (const m of this.members) cancelScope(m._scope);
      host.groupClosed(this.name);
    }
    all(fn) {
      if (typeof fn !== "function") throw new TypeError("group.all expects a function (member) => ...");
      const parent = current;
      const runs = this.members.map((m) => {
        try {
          return Promise.resolve(inScope(m._scope, () => fn(m)));
        } catch (e) {
          return Promise.reject(e);
        }
      });
      return Promise.all(runs).then(
        (values) => {
          current = parent;
          return values;
        },
        (e) => {
          for (const m of this.members) cancelScope(m._scope);
          current = parent;
          throw e;
        },
      );
    }
    map(items, fn, opts = {}) {
      if (!Array.isArray(items)) throw new TypeError("group.map expects an array of items");
      if (typeof fn !== "function") throw new TypeError("group.map expects a function (item, member, index) => ...");
      return new FanOut(this, items, fn, opts).promise;
    }
  }

  // The lifecycle of a fan-out item and of a member serving one fan-out, as transition tables. Every move
  // goes through move(), which refuses one the table lacks: that is a bug in this runtime, not in the process.
  //   item:   pending -> running (a free member takes it) | cancelled (the fan-in ended first)
  //           running -> ok | error (its member settled it) | cancelled (the fan-in ended first)
  //           ok, error, cancelled: final
  //   member: free -> busy (it takes an item); busy -> free (its item settled) | released (the fan-in ended
  //           while it worked: its scope is cancelled); released: final for this fan-out
  const ITEM_MOVES = { pending: ["running", "cancelled"], running: ["ok", "error", "cancelled"], ok: [], error: [], cancelled: [] };
  const MEMBER_MOVES = { free: ["busy"], busy: ["free", "released"], released: [] };
  function move(table, what, from, to) {
    if (!table[from].includes(to)) throw new Error(`tutti runtime: ${what}: illegal move ${from} -> ${to}`);
    return to;
  }

  // One group.map: items go to free members, one item per member at a time; partial results are
  // checkpointed every `checkpointEvery` completions; a completion policy may end it early.
  class FanOut {
    constructor(group, items, fn, opts) {
      this.group = group;
      this.items = items;
      this.fn = fn;
      this.parent = current;
      this.policy = completionPolicy(opts.completion);
      const c = opts.concurrency ?? opts.maxConcurrency;
      this.limit = Math.min(group.members.length, typeof c === "number" && c >= 1 ? Math.floor(c) : Infinity, group.maxConcurrency);
      this.every = Number.isInteger(opts.checkpointEvery) && opts.checkpointEvery > 0 ? opts.checkpointEvery : 0;
      this.results = items.map(() => ({ status: "pending" }));
      this.free = [...group.members];
      this.memberState = new Map(group.members.map((m) => [m, "free"]));
      this.next = 0;
      this.running = 0;
      this.done = false;
      this.counts = { succeeded: 0, failed: 0, completed: 0 };
      this.promise = new Promise((resolve, reject) => {
        this.resolve = resolve;
        this.reject = reject;
      });
      this.pump();
    }
    pump() {
      while (!this.done && this.free.length && this.next < this.items.length && this.running < this.limit) {
        const i = this.next++;
        const m = this.free.shift();
        this.running++;
        this.item(i, { status: "running", member: m });
        this.member(m, "busy");
        this.group._items.set(m, i);
        let p;
        try {
          p = Promise.resolve(inScope(m._scope, () => this.fn(this.items[i], m, i)));
        } catch (e) {
          p = Promise.reject(e);
        }
        p.then((v) => this.settle(i, m, true, v), (e) => this.settle(i, m, false, e));
      }
      if (!this.done && this.running === 0 && this.next >= this.items.length) {
        this.end(true, this.policy ? this.settled() : this.results.map((r) => r.value));
      }
    }
    settle(i, m, ok, v) {
      if (this.done || this.results[i].status !== "running") return;
      this.running--;
      this.member(m, "free");
      this.free.push(m);
      this.group._items.delete(m);
      this.counts.completed++;
      if (ok) {
        this.counts.succeeded++;
        this.item(i, { status: "ok", value: v });
      } else {
        this.counts.failed++;
        this.item(i, { status: "error", error: errorInfo(v) });
        if (!this.policy) return this.end(false, v);
      }
      if (this.every && this.counts.completed % this.every === 0) this.checkpoint();
      const p = this.policy;
      if (p && p.minSuccessful !== undefined && this.counts.succeeded >= p.minSuccessful) return this.end(true, this.settled());
      if (p && p.toleratedFailures !== undefined && this.counts.failed > p.toleratedFailures) return this.end(true, this.settled());
      this.pump();
    }
    item(i, next) {
      move(ITEM_MOVES, `group "${this.group.name}" item ${i}`, this.results[i].status, next.status);
      this.results[i] = next;
    }
    member(m, next) {
      this.memberState.set(m, move(MEMBER_MOVES, `group "${this.group.name}" member ${m.name}`, this.memberState.get(m), next));
    }
    checkpoint() {
      const partial = this.results.map((r) => (r.status === "ok" ? { status: "ok", value: r.value } : r.status === "error" ? { status: "error", error: r.error } : { status: r.status }));
      const value = { completed: this.counts.completed, items: partial };
      host.checkpoint(this.group.name, this.counts.completed, JSON.stringify(value));
      this.group._push({ type: "checkpoint", value });
    }
    settled() {
      let cancelled = 0;
      const items = this.results.map((r) => {
        if (r.status === "ok") return { status: "ok", value: r.value };
        if (r.status === "error") return { status: "error", error: r.error };
        cancelled++;
        return { status: "cancelled" };
      });
      return { items, succeeded: this.counts.succeeded, failed: this.counts.failed, cancelled };
    }
    end(ok, value) {
      this.done = true;
      // Whatever still runs is cancelled (process trees killed, journaled); what never started is too.
      this.results.forEach((r, i) => {
        if (r.status === "running") {
          cancelScope(r.member._scope);
          this.group._items.delete(r.member);
          this.member(r.member, "released");
          this.item(i, { status: "cancelled" });
        } else if (r.status === "pending") this.item(i, { status: "cancelled" });
      });
      if (ok && this.policy) value = this.settled();
      current = this.parent;
      if (ok) this.resolve(value);
      else this.reject(value);
    }
  }
  const groups = new Map();
  function group(name, opts = {}) {
    checkName("group", name);
    let g = groups.get(name);
    if (!g) {
      g = new Group(name, opts);
      groups.set(name, g);
    }
    return g;
  }

  // ---- messages ----
  // Messages to the coordinator arrive in journal order (replay re-delivers them at the same points).
  const mailbox = [];
  const receivers = [];
  function matches(want, from) {
    return want === undefined || want === from || (want.endsWith("/*") && from.startsWith(want.slice(0, -1)));
  }
  function send(to, body, opts) {
    if (typeof to !== "string" || to.length === 0) throw new TypeError("ctx.send: `to` must be an address: coordinator, GROUP/MEMBER or GROUP/*");
    host.send(current.path, to, JSON.stringify(body === undefined ? null : body));
    if (!(opts && opts.wake)) return undefined;
    // { wake: true }: the addressed members take a turn of their own now; resolves to their answers.
    const slash = to.indexOf("/");
    const g = slash > 0 ? groups.get(to.slice(0, slash)) : undefined;
    if (!g) throw new TypeError(`ctx.send: { wake: true } needs a member address (GROUP/MEMBER or GROUP/*), not "${to}"`);
    const who = to.slice(slash + 1);
    const members = who === "*" ? g.members : [g.member(who)];
    const turns = members.map((m) => m.wake());
    return who === "*" ? Promise.all(turns) : turns[0];
  }
  function receive(opts = {}) {
    const i = mailbox.findIndex((m) => matches(opts.from, m.from));
    if (i >= 0) return Promise.resolve(mailbox.splice(i, 1)[0]);
    const scope = current;
    return new Promise((settle) => {
      const resolve = (v) => {
        current = scope;
        settle(v);
      };
      const waiter = { from: opts.from, resolve, timer: undefined };
      receivers.push(waiter);
      if (typeof opts.timeoutMs === "number" && opts.timeoutMs >= 0) {
        waiter.timer = request(current, sleepTask, { targetEpochMs: host.now() + opts.timeoutMs }, undefined, receive);
        waiter.timer.then(() => {
          const k = receivers.indexOf(waiter);
          if (k >= 0) {
            receivers.splice(k, 1);
            resolve(null);
          }
        }, () => {});
      }
    });
  }
  function message(from, json) {
    current = root;
    const msg = { from, body: JSON.parse(json) };
    const slash = from.indexOf("/");
    const g = slash > 0 ? groups.get(from.slice(0, slash)) : undefined;
    if (g) g._push({ type: "message", member: from.slice(slash + 1), from, body: msg.body });
    const k = receivers.findIndex((w) => matches(w.from, from));
    if (k < 0) return mailbox.push(msg);
    const [waiter] = receivers.splice(k, 1);
    if (waiter.timer) cancelEffect(waiter.timer[EFFECT]);
    waiter.resolve(msg);
  }

  // ---- background effects and races ----
  function spawn(def, args, opts) {
    checkTask(def, "ctx.spawn");
    const p = request(current, def, args, opts, spawn);
    p.catch(() => {});
    const effectId = p[EFFECT];
    return Object.freeze({
      effectId,
      then: (a, b) => p.then(a, b),
      catch: (f) => p.catch(f),
      finally: (f) => p.finally(f),
      cancel: () => cancelEffect(effectId),
    });
  }
  function contenders(args, what) {
    const list = args.length === 1 && Array.isArray(args[0]) ? args[0] : args;
    if (list.length === 0) throw new TypeError(`${what} needs at least one effect`);
    return list;
  }
  function cancelLosers(list) {
    for (const x of list) cancelEffect(x && (x[EFFECT] ?? x.effectId));
  }
  function race(...args) {
    const list = contenders(args, "ctx.race");
    const parent = current;
    const done = () => {
      current = parent;
      cancelLosers(list);
    };
    return Promise.race(list).then((v) => (done(), v), (e) => { done(); throw e; });
  }
  function any(...args) {
    const list = contenders(args, "ctx.any");
    const parent = current;
    const done = () => {
      current = parent;
      cancelLosers(list);
    };
    return Promise.any(list).then((v) => (done(), v), (e) => { done(); throw e; });
  }

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
  // ctx.merge(items, { onConflict, into }): merge the branches of isolated results (or branch names), one after
  // the other, into an integration branch (`tutti/RUN/merge` unless `into` names one). Every step is an effect
  // of its own (merge, then on a conflict the resolver and finish, or abort), so a restart redoes nothing.
  function merge(items, opts) {
    if (!Array.isArray(items)) throw new TypeError("ctx.merge expects an array of isolated results or branch names");
    const { onConflict, into } = opts ?? {};
    if (onConflict !== undefined) checkTask(onConflict, "ctx.merge: onConflict");
    if (into !== undefined && (typeof into !== "string" || into.length === 0)) throw new TypeError("ctx.merge: into must be a branch name");
    const branches = items.map((item, i) => {
      const b = typeof item === "string" ? item : item && item.worktree && item.worktree.branch;
      if (typeof b !== "string" || b.length === 0)
        throw new TypeError(`ctx.merge: item ${i} has no worktree (the result of a task with isolation: "worktree") and is not a branch name`);
      return b;
    });
    const scope = current;
    const target = into ?? `tutti/${runId}/merge`;
    const text = (e) => (e && e.message ? `${e.name || "Error"}: ${e.message}` : String(e));
    const step = (args) => {
      current = scope;
      return request(scope, mergeTask, { into: target, ...args }, undefined, merge);
    };
    const run = async () => {
      const out = { branch: target, commit: null, merged: [], resolved: [], failed: [] };
      for (const branch of branches) {
        let r;
        try {
          r = await step({ step: "merge", branch, resolver: onConflict !== undefined });
        } catch (e) {
          out.failed.push({ branch, error: text(e) });
          continue;
        }
        if (r.commit) out.commit = r.commit;
        if (r.status === "merged") {
          out.merged.push(branch);
          continue;
        }
        if (r.status !== "conflict") {
          out.failed.push({ branch, error: r.error });
          continue;
        }
        try {
          current = scope;
          await request(scope, onConflict, { branch, into: target, files: r.files, base: r.base }, { worktree: r.path }, merge);
        } catch (e) {
          try {
            await step({ step: "abort", branch });
          } catch (_) {}
          out.failed.push({ branch, error: `the conflict resolver failed: ${text(e)}` });
          continue;
        }
        let done;
        try {
          done = await step({ step: "finish", branch, files: r.files });
        } catch (e) {
          out.failed.push({ branch, error: text(e) });
          continue;
        }
        if (done.commit) out.commit = done.commit;
        if (done.status === "resolved") out.resolved.push(branch);
        else out.failed.push({ branch, error: done.error });
      }
      current = scope;
      return out;
    };
    return run();
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
      group,
      send,
      receive,
      spawn,
      race,
      any,
      breakpoint,
      sleepUntil,
      merge,
      log(...args) {
        host.log(current.path, format(args));
      },
      hook(type, payload) {
        host.log(current.path, "hook " + type + " " + JSON.stringify(payload ?? null));
        return Promise.resolve();
      },
      // ctx.checkpoint(name, value), or babysitter's ctx.checkpoint(payload): journaled, never blocks.
      checkpoint(a, b) {
        const named = typeof a === "string" && b !== undefined;
        host.checkpoint(named ? a : "", 0, JSON.stringify((named ? b : a) ?? null));
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
  // `value` is the result as JSON.parse makes it (the host builds it), or the error's fields.
  function deliver(effectId, ok, value) {
    const p = pending.get(effectId);
    if (!p) return false;
    pending.delete(effectId);
    current = p.caller;
    const member = p.scope.member;
    if (member) member._group._settled(member, effectId, ok, value);
    if (ok) p.resolve(value);
    else p.reject(toError(value));
    return true;
  }
  // The Rust host keeps this object (the script's value) and lends it to the built-in module while that
  // evaluates; no global holds it, so process code cannot deliver results or toggle replay.
  return Object.freeze({
    start,
    deliver,
    message,
    bound(address, session) {
      const slash = address.indexOf("/");
      const g = groups.get(address.slice(0, slash));
      const m = g && g.members.find((x) => x.name === address.slice(slash + 1));
      if (m) m.session = session;
    },
    defineTask,
    globalTaskRegistry,
    setReplaying(on) {
      replaying = on;
    },
  });
})();
