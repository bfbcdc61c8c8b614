//! Budgets: limits on what a run spends (US dollars, tokens, turns, wall-clock time), set per run, harness,
//! group, member and task, nested — an attempt starts only if every scope it counts against has room — and
//! the [`Ledger`] that keeps each scope's spend.
//!
//! The ledger is built only from journal events ([`Ledger::observe`]): the driver feeds it every event it
//! records, a resuming driver every journaled one first, and `tutti status` the journal it reads. So spend
//! after a restart is what the journal says, never reset and never counted twice; an attempt that really ran
//! again (a re-dispatch after a crash) costs again and is counted as a re-run.
//!
//! A scope's spend is the usage its attempts reported (the CLI's own cost, else the price table's; tokens
//! without a price count as tokens and as "unpriced", never as $0), the attempts it started (turns), and the
//! wall-clock time since it began (the run's creation, the group's opening, the task's request — journaled
//! times, so a restart does not reset it). Before an attempt starts, its scopes' spend plus what running
//! attempts are still expected to spend plus its own expected cost (a harness's `reserve_usd`, else the mean
//! of its last turns) must fit; the reservation is journaled as `budget_reserved` and held until the attempt
//! ends. While a harness's cost is unknown, a budgeted scope runs one of its attempts at a time.

use std::collections::{BTreeMap, VecDeque};

use crate::hash::{HashMap, HashSet};
use std::fmt;

use serde_json::{Map, Value, json};
use tutti_journal::{EffectId, ErrorInfo, Event, Payload, Record};

/// How many of a harness's last attempts give its expected cost.
const RECENT: usize = 5;
/// The share of a limit at which the run warns, once per scope and measure.
const WARN_AT: f64 = 0.8;

/// What a budget limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Measure {
    Usd,
    Tokens,
    Turns,
    Time,
}

impl Measure {
    pub const ALL: [Measure; 4] = [Measure::Usd, Measure::Tokens, Measure::Turns, Measure::Time];

    /// The field that sets it: `usd`, `tokens`, `turns`, `timeMs`.
    pub fn name(self) -> &'static str {
        match self {
            Measure::Usd => "usd",
            Measure::Tokens => "tokens",
            Measure::Turns => "turns",
            Measure::Time => "timeMs",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// An amount beside a limit that gives its unit: `$0.15`, `2,000,000`, `10`, `1h 30m` (as in
    /// `3 of 10 turns`).
    pub fn bare(self, amount: f64) -> String {
        match self {
            Measure::Tokens => thousands(amount as u64),
            Measure::Turns => (amount as u64).to_string(),
            Measure::Usd | Measure::Time => self.show(amount),
        }
    }

    /// An amount of this measure as people read it: `$0.15`, `2,000,000 tokens`, `10 turns`, `1h 30m`.
    pub fn show(self, amount: f64) -> String {
        match self {
            Measure::Usd if amount > 0.0 && amount < 0.01 => format!("${amount:.4}"),
            Measure::Usd => format!("${amount:.2}"),
            Measure::Tokens => format!("{} tokens", thousands(amount as u64)),
            Measure::Turns => format!("{} turns", amount as u64),
            Measure::Time => duration(amount as u64),
        }
    }
}

/// What happens to a scope's running attempts when it reaches its budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnExceed {
    /// They finish; nothing new starts (the default).
    #[default]
    Finish,
    /// They are stopped at once, process trees and all, and fail with `BudgetExceeded`.
    Cancel,
}

/// A budget: `{ usd, tokens, turns, timeMs, onExceed }`, every field optional.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    pub usd: Option<f64>,
    pub tokens: Option<u64>,
    pub turns: Option<u64>,
    pub time_ms: Option<u64>,
    pub on_exceed: OnExceed,
}

/// Currency names people may reach for; budgets are in US dollars only.
const CURRENCIES: &[&str] = &["eur", "gbp", "jpy", "cny", "inr", "cad", "aud", "chf", "dollars", "cost", "price"];

impl Limits {
    /// Read a budget. `what` names it in errors: `ctx.group("reviewers") budget`, `tutti.toml [budget]`.
    pub fn parse(value: &Value, what: &str) -> Result<Limits, String> {
        let Value::Object(map) = value else {
            return Err(format!(
                "{what} must be an object like {{ usd: 5, tokens: 2000000, turns: 40, timeMs: 7200000 }}, not {value}"
            ));
        };
        let mut limits = Limits::default();
        for (key, v) in map {
            match key.as_str() {
                "usd" => limits.usd = Some(amount(v, what, key)?),
                "tokens" => limits.tokens = Some(count(v, what, key)?),
                "turns" => limits.turns = Some(count(v, what, key)?),
                "timeMs" => limits.time_ms = Some(count(v, what, key)?),
                "onExceed" => {
                    limits.on_exceed = match v.as_str() {
                        Some("finish") => OnExceed::Finish,
                        Some("cancel") => OnExceed::Cancel,
                        _ => {
                            return Err(format!(
                                "{what}.onExceed must be \"finish\" (running attempts finish; the default) or \
                                 \"cancel\" (they are stopped at once), not {v}"
                            ));
                        }
                    }
                }
                other if CURRENCIES.contains(&other.to_ascii_lowercase().as_str()) => {
                    return Err(format!("{what}.{other}: budgets are in US dollars; use `usd`"));
                }
                other => {
                    return Err(format!(
                        "{what}.{other} is not a budget field (known: usd, tokens, turns, timeMs, onExceed)"
                    ));
                }
            }
        }
        Ok(limits)
    }

    /// Whether it limits nothing.
    pub fn is_empty(&self) -> bool {
        Measure::ALL.iter().all(|m| self.limit(*m).is_none())
    }

    pub fn limit(&self, measure: Measure) -> Option<f64> {
        match measure {
            Measure::Usd => self.usd,
            Measure::Tokens => self.tokens.map(|n| n as f64),
            Measure::Turns => self.turns.map(|n| n as f64),
            Measure::Time => self.time_ms.map(|n| n as f64),
        }
    }

    /// The first measure in which this (a member's budget) is larger than `outer` (its group's).
    pub fn larger_than(&self, outer: &Limits) -> Option<Measure> {
        Measure::ALL.into_iter().find(|m| matches!((self.limit(*m), outer.limit(*m)), (Some(a), Some(b)) if a > b))
    }

    /// As journaled: `{ usd, tokens, turns, timeMs, onExceed }` with only the fields set.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        for m in Measure::ALL {
            if let Some(limit) = self.limit(m) {
                let value = if m == Measure::Usd { json!(limit) } else { json!(limit as u64) };
                map.insert(m.name().to_string(), value);
            }
        }
        if self.on_exceed == OnExceed::Cancel {
            map.insert("onExceed".into(), json!("cancel"));
        }
        Value::Object(map)
    }
}

fn amount(v: &Value, what: &str, key: &str) -> Result<f64, String> {
    v.as_f64()
        .filter(|f| f.is_finite() && *f >= 0.0)
        .ok_or_else(|| format!("{what}.{key} must be a number of at least 0, not {v}"))
}

fn count(v: &Value, what: &str, key: &str) -> Result<u64, String> {
    v.as_f64()
        .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0)
        .map(|f| f as u64)
        .ok_or_else(|| format!("{what}.{key} must be a whole number of at least 0, not {v}"))
}

/// Where a budget applies. Ordered narrowest first: a refusal names the narrowest scope without room.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Task(EffectId),
    /// `GROUP/MEMBER`.
    Member(String),
    Group(String),
    Harness(String),
    Run,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Task(id) => write!(f, "task {id}"),
            Scope::Member(m) => write!(f, "member {m}"),
            Scope::Group(g) => write!(f, "group {g}"),
            Scope::Harness(h) => write!(f, "harness {h}"),
            Scope::Run => f.write_str("run"),
        }
    }
}

impl Scope {
    /// Read a scope as journaled (its `Display` form).
    pub fn parse(text: &str) -> Option<Scope> {
        if text == "run" {
            return Some(Scope::Run);
        }
        let (kind, name) = text.split_once(' ')?;
        Some(match kind {
            "task" => Scope::Task(name.into()),
            "member" => Scope::Member(name.into()),
            "group" => Scope::Group(name.into()),
            "harness" => Scope::Harness(name.into()),
            _ => return None,
        })
    }
}

/// What a scope has spent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Spent {
    /// Priced usage, in US dollars.
    pub usd: f64,
    /// Every token, priced or not.
    pub tokens: u64,
    /// Attempts started.
    pub turns: u64,
    /// Tokens of usage with no known price (not in `usd`).
    pub unpriced_tokens: u64,
    /// What attempts that ran again after a crash (re-dispatches) spent, included above.
    pub rerun_usd: f64,
    pub rerun_turns: u64,
}

/// A scope with a budget, and what it has spent.
#[derive(Clone, Debug)]
pub struct Account {
    pub limits: Limits,
    /// When the scope began (journal time), for `timeMs`.
    pub started_ms: i64,
    pub spent: Spent,
    /// The measure it reached, and what was done (`finish`, `cancel`), once it has.
    pub exceeded: Option<(Measure, String)>,
    /// Effects refused for want of room.
    pub refused: u64,
    warned: HashSet<Measure>,
}

impl Account {
    fn new(limits: Limits, started_ms: i64) -> Self {
        Self { limits, started_ms, spent: Spent::default(), exceeded: None, refused: 0, warned: HashSet::default() }
    }

    /// What it has spent of `measure` at `now_ms`.
    pub fn spent_of(&self, measure: Measure, now_ms: i64) -> f64 {
        match measure {
            Measure::Usd => self.spent.usd,
            Measure::Tokens => self.spent.tokens as f64,
            Measure::Turns => self.spent.turns as f64,
            Measure::Time => (now_ms - self.started_ms).max(0) as f64,
        }
    }

    /// As `--json` shows it.
    pub fn to_json(&self, scope: &Scope, now_ms: i64) -> Value {
        let spent = json!({
            "usd": self.spent.usd,
            "tokens": self.spent.tokens,
            "turns": self.spent.turns,
            "timeMs": self.spent_of(Measure::Time, now_ms) as u64,
            "unpricedTokens": self.spent.unpriced_tokens,
            "rerunUsd": self.spent.rerun_usd,
            "rerunTurns": self.spent.rerun_turns,
        });
        json!({
            "scope": scope.to_string(),
            "limits": self.limits.to_json(),
            "spent": spent,
            "exceeded": self.exceeded.as_ref().map(|(m, action)| json!({ "measure": m.name(), "action": action })),
            "refused": self.refused,
        })
    }
}

/// A scope that has no room: `BudgetExceeded { scope, limit, spent }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Exceeded {
    pub scope: Scope,
    pub measure: Measure,
    pub limit: f64,
    pub spent: f64,
    /// What the refused attempt was expected to spend, when that is why it does not fit.
    pub expected: Option<f64>,
}

impl Exceeded {
    pub fn describe(&self) -> String {
        let m = self.measure;
        let mut text = format!("the budget of {}: {} of {} spent", self.scope, m.bare(self.spent), m.show(self.limit));
        if let Some(expected) = self.expected {
            text.push_str(&format!(", and the next attempt is expected to spend about {}", m.show(expected)));
        }
        text
    }

    /// The error an effect that may not start fails with; the process can catch it (`e.name`, `e.scope`,
    /// `e.limit`, `e.spent`).
    pub fn error(&self, effect: &EffectId) -> ErrorInfo {
        ErrorInfo::new("BudgetExceeded", format!("effect {effect} cannot start: {}", self.describe()))
            .with_data(self.data())
    }

    /// What a `BudgetExceeded` error carries: `{ scope, measure, limit, spent }`.
    pub fn data(&self) -> Value {
        json!({ "scope": self.scope.to_string(), "measure": self.measure.name(), "limit": self.limit, "spent": self.spent })
    }
}

/// What a budget check decided about an attempt.
#[derive(Debug, PartialEq)]
pub enum Check {
    /// It may start, holding this reservation (no scopes: no budget applies).
    Admit(Reservation),
    /// It would fit once attempts running in this scope have ended: ask again then.
    Wait(Scope),
    /// It cannot start.
    Refuse(Exceeded),
}

/// What an admitted attempt holds until it ends.
#[derive(Debug, Default, PartialEq)]
pub struct Reservation {
    pub scopes: Vec<Scope>,
    pub usd: f64,
    pub tokens: u64,
}

/// One attempt that has started (or is about to), and what it holds and has used.
#[derive(Debug)]
struct Attempt {
    attempt: u32,
    /// Its start is journaled (it counts in `busy`).
    started: bool,
    harness: Option<String>,
    scopes: Vec<Scope>,
    reserved_usd: f64,
    reserved_tokens: u64,
    used_usd: f64,
    used_tokens: u64,
}

impl Attempt {
    fn outstanding(&self) -> (f64, u64) {
        ((self.reserved_usd - self.used_usd).max(0.0), self.reserved_tokens.saturating_sub(self.used_tokens))
    }
}

/// Every budgeted scope of a run and its spend, built from journal events.
#[derive(Debug, Default)]
pub struct Ledger {
    accounts: BTreeMap<Scope, Account>,
    /// Each harness's configured expected cost per attempt (`reserve_usd`, `reserve_tokens`).
    reserve: HashMap<String, (Option<f64>, Option<u64>)>,
    /// What each harness's last attempts spent.
    recent: HashMap<String, VecDeque<(f64, u64)>>,
    running: HashMap<EffectId, Attempt>,
    /// Per scope: what its running attempts are still expected to spend, and how many have started — kept
    /// as attempts come and go, so that a check costs the same with ten thousand attempts running.
    held: HashMap<Scope, (f64, u64)>,
    busy: HashMap<Scope, usize>,
    /// Which kinds of scope have a budget at all (task, member, group, harness), so that an effect's scopes
    /// are found without building the names of kinds that have none.
    kinds: [bool; 4],
    /// Attempts that run again after their driver died.
    reruns: HashSet<(EffectId, u32)>,
}

impl Ledger {
    /// A ledger of the journal `records`, with no attempt running (a driver that reads them runs none yet).
    pub fn of(records: &[Record]) -> Self {
        let mut ledger = Self::default();
        for r in records {
            ledger.observe(&r.event, r.ts_ms);
        }
        ledger.forget_running();
        ledger
    }

    /// As [`Ledger::of`], reading the task descriptions the journal keeps out of line (a large task's
    /// `budget` is in its blob).
    pub fn of_loading(records: &[Record], blobs: &dyn tutti_journal::Blobs) -> Self {
        let mut ledger = Self::default();
        for r in records {
            match &r.event {
                Event::EffectRequested { effect, task: task @ Payload::Blob { .. }, .. } => {
                    if let Ok(task) = blobs.load(task) {
                        ledger.open_task(effect, &task, r.ts_ms);
                    }
                }
                event => ledger.observe(event, r.ts_ms),
            }
        }
        ledger.forget_running();
        ledger
    }

    /// Whether any scope has a budget.
    pub fn is_active(&self) -> bool {
        !self.accounts.is_empty()
    }

    pub fn accounts(&self) -> impl Iterator<Item = (&Scope, &Account)> {
        self.accounts.iter()
    }

    pub fn account(&self, scope: &Scope) -> Option<&Account> {
        self.accounts.get(scope)
    }

    /// Learn from one journal event, recorded at `ts_ms`.
    pub fn observe(&mut self, event: &Event, ts_ms: i64) {
        match event {
            Event::RunCreated { options, .. } => self.created(options, ts_ms),
            Event::GroupOpened { group, members, budget, member_budget, .. } => {
                let what = format!("ctx.group(\"{group}\")");
                if let Some(limits) = budget.as_ref().and_then(|b| Limits::parse(b, &what).ok()) {
                    self.open(Scope::Group(group.clone()), limits, ts_ms);
                }
                if let Some(limits) = member_budget.as_ref().and_then(|b| Limits::parse(b, &what).ok()) {
                    for m in members {
                        self.open(Scope::Member(format!("{group}/{}", m.name)), limits.clone(), ts_ms);
                    }
                }
            }
            Event::EffectRequested { effect, task: Payload::Inline(task), .. } => self.open_task(effect, task, ts_ms),
            Event::BudgetReserved { effect, attempt, scopes, usd, tokens } => {
                self.close(effect, false);
                let scopes: Vec<Scope> = scopes.iter().filter_map(|s| Scope::parse(s)).collect();
                self.adjust(&scopes, *usd, *tokens as i64);
                let a = Attempt {
                    attempt: *attempt,
                    started: false,
                    harness: None,
                    scopes,
                    reserved_usd: *usd,
                    reserved_tokens: *tokens,
                    used_usd: 0.0,
                    used_tokens: 0,
                };
                self.running.insert(effect.clone(), a);
            }
            Event::EffectStarted { effect, attempt, harness, .. } => {
                if self.running.get(effect).is_some_and(|a| a.attempt != *attempt || a.started) {
                    self.close(effect, false);
                }
                let scopes = self.scopes_of(effect, Some(harness));
                let rerun = self.reruns.contains(&(effect.clone(), *attempt));
                for scope in &scopes {
                    if let Some(account) = self.accounts.get_mut(scope) {
                        account.spent.turns += 1;
                        account.spent.rerun_turns += u64::from(rerun);
                    }
                }
                let a = self.running.entry(effect.clone()).or_insert_with(|| Attempt {
                    attempt: *attempt,
                    started: false,
                    harness: None,
                    scopes: scopes.clone(),
                    reserved_usd: 0.0,
                    reserved_tokens: 0,
                    used_usd: 0.0,
                    used_tokens: 0,
                });
                a.harness = Some(harness.clone());
                a.started = true;
                // Its reservation was held against the scopes it was admitted in; it runs in those.
                for scope in &a.scopes {
                    *self.busy.entry(scope.clone()).or_default() += 1;
                }
            }
            Event::EffectRedispatched { effect, attempt, .. } => {
                self.close(effect, false);
                self.reruns.insert((effect.clone(), *attempt));
            }
            Event::EffectUsage { effect, attempt, harness, usage } => {
                let (usd, tokens) = (usage.cost_usd, usage.tokens());
                let rerun = self.reruns.contains(&(effect.clone(), *attempt));
                for scope in self.scopes_of(effect, Some(harness)) {
                    if let Some(account) = self.accounts.get_mut(&scope) {
                        account.spent.usd += usd.unwrap_or(0.0);
                        account.spent.tokens += tokens;
                        if usd.is_none() {
                            account.spent.unpriced_tokens += tokens;
                        }
                        if rerun {
                            account.spent.rerun_usd += usd.unwrap_or(0.0);
                        }
                    }
                }
                if let Some(a) = self.running.get_mut(effect).filter(|a| a.attempt == *attempt) {
                    let before = a.outstanding();
                    a.used_usd += usd.unwrap_or(0.0);
                    a.used_tokens += tokens;
                    let after = a.outstanding();
                    let scopes = a.scopes.clone();
                    self.adjust(&scopes, after.0 - before.0, after.1 as i64 - before.1 as i64);
                }
            }
            // An attempt that ended with a result tells what its harness costs (nothing, for a shell command);
            // one cancelled, fallen back or cut short by a crash does not.
            Event::EffectResolved { effect, .. } | Event::EffectRetrying { effect, .. } => self.close(effect, true),
            Event::EffectCancelled { effect, .. } | Event::EffectRouted { effect, .. } => self.close(effect, false),
            Event::BudgetExceeded { scope, measure, effect, action, .. } => {
                let (Some(scope), Some(measure)) = (Scope::parse(scope), Measure::parse(measure)) else { return };
                let Some(account) = self.accounts.get_mut(&scope) else { return };
                let reached = account.limits.limit(measure).is_some_and(|l| account.spent_of(measure, ts_ms) >= l);
                if effect.is_some() {
                    account.refused += 1;
                }
                if account.exceeded.is_none() && (effect.is_none() || reached) {
                    let action = match (effect, account.limits.on_exceed) {
                        (None, _) => action.clone(),
                        (Some(_), OnExceed::Finish) => "finish".to_string(),
                        (Some(_), OnExceed::Cancel) => "cancel".to_string(),
                    };
                    account.exceeded = Some((measure, action));
                }
            }
            _ => {}
        }
    }

    /// A task's own budget, from its description.
    fn open_task(&mut self, effect: &EffectId, task: &Value, ts_ms: i64) {
        if let Some(limits) = task.get("budget").and_then(|b| Limits::parse(b, "budget").ok()) {
            self.open(Scope::Task(effect.clone()), limits, ts_ms);
        }
    }

    /// The run's options carry `budget: { run, harness: { NAME: {...} }, reserve: { NAME: { usd, tokens } } }`.
    fn created(&mut self, options: &Value, ts_ms: i64) {
        let Some(budget) = options.get("budget") else { return };
        if let Some(limits) = budget.get("run").and_then(|b| Limits::parse(b, "budget").ok()) {
            self.open(Scope::Run, limits, ts_ms);
        }
        for (name, b) in budget.get("harness").and_then(Value::as_object).into_iter().flatten() {
            if let Ok(limits) = Limits::parse(b, "budget") {
                self.open(Scope::Harness(name.clone()), limits, ts_ms);
            }
        }
        for (name, r) in budget.get("reserve").and_then(Value::as_object).into_iter().flatten() {
            let usd = r.get("usd").and_then(Value::as_f64);
            let tokens = r.get("tokens").and_then(Value::as_u64);
            self.reserve.insert(name.clone(), (usd, tokens));
        }
    }

    fn open(&mut self, scope: Scope, limits: Limits, ts_ms: i64) {
        if !limits.is_empty() {
            if let Some(kind) = kind_of(&scope) {
                self.kinds[kind] = true;
            }
            self.accounts.entry(scope).or_insert_with(|| Account::new(limits, ts_ms));
        }
    }

    /// The attempt of `effect` ended: its reservation is released and, when it ended with a result
    /// (`sample`), what it used joins its harness's recent history.
    fn close(&mut self, effect: &EffectId, sample: bool) {
        let Some(a) = self.running.remove(effect) else { return };
        let (usd, tokens) = a.outstanding();
        self.adjust(&a.scopes, -usd, -(tokens as i64));
        if a.started {
            for scope in &a.scopes {
                let busy = self.busy.entry(scope.clone()).or_default();
                *busy = busy.saturating_sub(1);
                if *busy == 0 {
                    // Nothing runs in it: nothing is held either (no rounding left over).
                    self.held.remove(scope);
                }
            }
        }
        if let Some(h) = a.harness.filter(|_| sample && a.started) {
            let recent = self.recent.entry(h).or_default();
            recent.push_back((a.used_usd, a.used_tokens));
            if recent.len() > RECENT {
                recent.pop_front();
            }
        }
    }

    /// Add `usd` and `tokens` (either may be negative) to what `scopes` hold for running attempts.
    fn adjust(&mut self, scopes: &[Scope], usd: f64, tokens: i64) {
        for scope in scopes {
            let held = self.held.entry(scope.clone()).or_default();
            held.0 = (held.0 + usd).max(0.0);
            held.1 = held.1.saturating_add_signed(tokens);
        }
    }

    /// Forget the attempts in flight: after a rebuild from the journal, none runs (a resuming driver
    /// re-dispatches them, and their new starts are journaled).
    fn forget_running(&mut self) {
        self.running.clear();
        self.held.clear();
        self.busy.clear();
    }

    /// The budgeted scopes an attempt of `effect` on `harness` counts against, narrowest first.
    pub fn scopes_of(&self, effect: &EffectId, harness: Option<&str>) -> Vec<Scope> {
        if self.accounts.is_empty() {
            return Vec::new();
        }
        let mut scopes = Vec::with_capacity(2);
        let [task, member, group, harnesses] = self.kinds;
        if task {
            scopes.push(Scope::Task(effect.clone()));
        }
        if let Some((g, m)) = effect.member().filter(|_| member || group) {
            if member {
                scopes.push(Scope::Member(format!("{g}/{m}")));
            }
            if group {
                scopes.push(Scope::Group(g.to_string()));
            }
        }
        if let Some(h) = harness.filter(|_| harnesses) {
            scopes.push(Scope::Harness(h.to_string()));
        }
        scopes.push(Scope::Run);
        scopes.retain(|s| self.accounts.contains_key(s));
        scopes
    }

    /// What an attempt on `harness` is expected to spend: its configured reservation, else the mean of its
    /// last attempts in this run; `None` while neither is known.
    pub fn expected(&self, harness: &str) -> Option<(f64, u64)> {
        let configured = self.reserve.get(harness).copied().unwrap_or_default();
        let recent = self.recent.get(harness).filter(|r| !r.is_empty());
        let mean = recent.map(|r| {
            let n = r.len() as f64;
            (r.iter().map(|x| x.0).sum::<f64>() / n, (r.iter().map(|x| x.1 as f64).sum::<f64>() / n) as u64)
        });
        match (configured, mean) {
            ((None, None), None) => None,
            ((usd, tokens), mean) => {
                let (mean_usd, mean_tokens) = mean.unwrap_or_default();
                Some((usd.unwrap_or(mean_usd), tokens.unwrap_or(mean_tokens)))
            }
        }
    }

    /// What running attempts in `scope` are still expected to spend beyond what they have reported.
    fn outstanding(&self, scope: &Scope) -> (f64, u64) {
        self.held.get(scope).copied().unwrap_or_default()
    }

    /// May an attempt of `effect` start on `harness` at `now_ms`? While the harness's cost per attempt is
    /// unknown (no `reserve_usd`, no attempt of it ended yet), a scope that limits money or tokens runs one
    /// attempt at a time, so that it can overshoot by one attempt at most.
    pub fn check(&self, effect: &EffectId, harness: &str, now_ms: i64) -> Check {
        let scopes = self.scopes_of(effect, Some(harness));
        if scopes.is_empty() {
            return Check::Admit(Reservation::default());
        }
        let known = self.expected(harness);
        let (want_usd, want_tokens) = known.unwrap_or_default();
        let mut wait = None;
        for scope in &scopes {
            let Some(account) = self.accounts.get(scope) else { continue };
            let (out_usd, out_tokens) = self.outstanding(scope);
            let wants = [
                (Measure::Time, 0.0, 0.0),
                (Measure::Turns, 0.0, 1.0),
                (Measure::Usd, out_usd, want_usd),
                (Measure::Tokens, out_tokens as f64, want_tokens as f64),
            ];
            for (measure, outstanding, want) in wants {
                let Some(limit) = account.limits.limit(measure) else { continue };
                let spent = account.spent_of(measure, now_ms);
                let refuse = |expected| Exceeded { scope: scope.clone(), measure, limit, spent, expected };
                if spent >= limit || (measure == Measure::Turns && spent + want > limit) {
                    return Check::Refuse(refuse(None));
                }
                if !matches!(measure, Measure::Usd | Measure::Tokens) {
                    continue;
                }
                let busy = self.busy.get(scope).is_some_and(|n| *n > 0);
                if known.is_none() && busy || spent + outstanding + want > limit && outstanding > 0.0 {
                    wait.get_or_insert_with(|| scope.clone());
                } else if spent + outstanding + want > limit {
                    return Check::Refuse(refuse(Some(want)));
                }
            }
        }
        match wait {
            Some(scope) => Check::Wait(scope),
            None => Check::Admit(Reservation { scopes, usd: want_usd, tokens: want_tokens }),
        }
    }

    /// Scopes that have reached a limit of money, tokens or time and were not yet marked so (turns are
    /// only ever refused: the last allowed turn is not cut short).
    pub fn crossed(&self, now_ms: i64) -> Vec<(Exceeded, OnExceed)> {
        let mut out = Vec::new();
        for (scope, account) in self.accounts.iter().filter(|(_, a)| a.exceeded.is_none()) {
            for measure in [Measure::Usd, Measure::Tokens, Measure::Time] {
                let Some(limit) = account.limits.limit(measure) else { continue };
                let spent = account.spent_of(measure, now_ms);
                if spent >= limit {
                    let exceeded = Exceeded { scope: scope.clone(), measure, limit, spent, expected: None };
                    out.push((exceeded, account.limits.on_exceed));
                    break;
                }
            }
        }
        out
    }

    /// The effects with an attempt running in `scope`.
    pub fn running_in(&self, scope: &Scope) -> Vec<EffectId> {
        let mut ids: Vec<EffectId> = self
            .running
            .iter()
            .filter(|(_, a)| a.harness.is_some() && a.scopes.contains(scope))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Warnings for scopes that passed 80 % of a limit since the last call, once per scope and measure.
    pub fn warnings(&mut self, now_ms: i64) -> Vec<String> {
        let mut out = Vec::new();
        for (scope, account) in &mut self.accounts {
            for m in Measure::ALL {
                let Some(limit) = account.limits.limit(m).filter(|l| *l > 0.0) else { continue };
                let spent = account.spent_of(m, now_ms);
                if spent >= WARN_AT * limit && account.warned.insert(m) && account.exceeded.is_none() {
                    let pct = spent / limit * 100.0;
                    out.push(format!(
                        "{scope} has spent {} of its {} budget ({pct:.0}%)",
                        m.bare(spent),
                        m.show(limit)
                    ));
                }
            }
        }
        out
    }

    /// Every account as `--json` shows it.
    pub fn to_json(&self, now_ms: i64) -> Value {
        Value::Array(self.accounts.iter().map(|(s, a)| a.to_json(s, now_ms)).collect())
    }
}

/// The index in [`Ledger::kinds`] of a scope's kind (the run has none: it is always looked up).
fn kind_of(scope: &Scope) -> Option<usize> {
    match scope {
        Scope::Task(_) => Some(0),
        Scope::Member(_) => Some(1),
        Scope::Group(_) => Some(2),
        Scope::Harness(_) => Some(3),
        Scope::Run => None,
    }
}

/// A budget as [`Account::to_json`] shows it, in one line for people: `$0.62 of $1.00 (62%), 3 of 10 turns;
/// REACHED its usd limit: nothing new starts; 4 effect(s) refused (BudgetExceeded)`. One renderer for
/// `status`, `groups` and the end-of-run summary.
pub fn describe(b: &Value) -> String {
    let mut parts = Vec::new();
    for m in Measure::ALL {
        let Some(limit) = b["limits"][m.name()].as_f64() else { continue };
        let spent = b["spent"][m.name()].as_f64().unwrap_or(0.0);
        let pct = if limit > 0.0 { format!(" ({:.0}%)", spent / limit * 100.0) } else { String::new() };
        parts.push(format!("{} of {}{pct}", m.bare(spent), m.show(limit)));
    }
    let unpriced = b["spent"]["unpricedTokens"].as_u64().unwrap_or(0);
    if unpriced > 0 {
        parts.push(format!("{} unpriced", Measure::Tokens.show(unpriced as f64)));
    }
    let reruns = b["spent"]["rerunTurns"].as_u64().unwrap_or(0);
    if reruns > 0 {
        let usd = Measure::Usd.show(b["spent"]["rerunUsd"].as_f64().unwrap_or(0.0));
        parts.push(format!("{reruns} re-run attempt(s) costing {usd} included"));
    }
    let mut line = parts.join(", ");
    if let Some(measure) = b["exceeded"]["measure"].as_str() {
        let then =
            if b["exceeded"]["action"] == "cancel" { "running attempts cancelled" } else { "nothing new starts" };
        line.push_str(&format!("; REACHED its {measure} limit: {then}"));
    }
    if let Some(n) = b["refused"].as_u64().filter(|n| *n > 0) {
        line.push_str(&format!("; {n} effect(s) refused (BudgetExceeded)"));
    }
    line
}

/// `2000000` → `2,000,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Milliseconds as people read them: `1h 30m`, `4m 5s`, `12s`, `0.5s`.
fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{:.1}s", ms as f64 / 1000.0),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests;
