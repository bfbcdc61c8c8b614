//! Enforcing budgets (`budget.rs`): before an attempt starts, the ledger decides whether every scope it
//! counts against has room (admit and journal the reservation as `budget_reserved`; wait for running
//! attempts of the scope to end; or refuse, journaled as `budget_exceeded`, and fail the effect with
//! `BudgetExceeded`); when a scope reaches a limit, nothing new starts in it and, under `onExceed: "cancel"`,
//! its running attempts are stopped. Budgets given by the process are checked here.

use super::*;
use crate::budget::{Check, Exceeded, Limits, OnExceed, Reservation};

impl Driver<'_> {
    /// May an attempt of `id` start on `harness` now? `None`: it may not — it was refused (and resolved) or
    /// waits for room (and is queued again when an attempt ends).
    pub(super) fn budget_check(&mut self, id: &EffectId, harness: &str) -> Option<Reservation> {
        if !self.ledger.is_active() {
            return Some(Reservation::default());
        }
        match self.ledger.check(id, harness, wall_ms()) {
            Check::Admit(reservation) => Some(reservation),
            Check::Wait(scope) => {
                // Told once per wave: a wide fan-out waiting on the first attempt's cost is one line.
                if self.budget_waiting.is_empty() {
                    let reason = format!(
                        "waits for attempts running in {scope} to end: their cost decides whether it fits its budget"
                    );
                    self.observer.progress(Progress::Queued { effect: id.clone(), reason });
                }
                self.budget_waiting.push(id.clone());
                None
            }
            Check::Refuse(exceeded) => {
                self.refuse(id, exceeded);
                None
            }
        }
    }

    /// Journal what an admitted attempt of `id` holds, when a budget applies to it.
    pub(super) fn reserve(&mut self, id: &EffectId, reservation: Reservation) {
        if reservation.scopes.is_empty() {
            return;
        }
        let attempt = self.effects.get(id).map_or(1, |e| e.attempt);
        let scopes = reservation.scopes.iter().map(ToString::to_string).collect();
        let (usd, tokens) = (reservation.usd, reservation.tokens);
        self.record(Event::BudgetReserved { effect: id.clone(), attempt, scopes, usd, tokens });
    }

    /// `id` cannot start: journal the decision and fail it with `BudgetExceeded`.
    fn refuse(&mut self, id: &EffectId, exceeded: Exceeded) {
        self.budget_waiting.retain(|w| w != id);
        self.record(budget_event(&exceeded, Some(id.clone()), "refused"));
        let error = exceeded.error(id);
        self.observer.progress(Progress::Log { scope: "budget".into(), message: error.message.clone() });
        self.resolve(id, Err(error), false);
    }

    /// Effects that waited for room go back to the head of the queue (an attempt ended: they may fit now).
    pub(super) fn requeue_budget_waiting(&mut self) {
        for id in std::mem::take(&mut self.budget_waiting).into_iter().rev() {
            if self.effects.get(&id).is_some_and(|e| e.state.phase() == Phase::Queued) {
                self.scheduler.push_front(id);
            }
        }
    }

    /// Act on scopes that reached a limit (journaled once each; running attempts stopped under `cancel`,
    /// except `reporting`, whose attempt is ending as it reports) and warn once at 80 %.
    pub(super) fn enforce_budgets(&mut self, reporting: Option<&EffectId>) {
        let now = wall_ms();
        for (exceeded, on_exceed) in self.ledger.crossed(now) {
            let action = if on_exceed == OnExceed::Cancel { "cancel" } else { "finish" };
            self.record(budget_event(&exceeded, None, action));
            let then = match on_exceed {
                OnExceed::Finish => "nothing new starts in it; running attempts finish",
                OnExceed::Cancel => "nothing new starts in it; running attempts are stopped",
            };
            let message = format!("{}: {then}", exceeded.describe());
            self.observer.progress(Progress::Log { scope: "budget".into(), message });
            if on_exceed == OnExceed::Cancel {
                for id in self.ledger.running_in(&exceeded.scope) {
                    if Some(&id) == reporting {
                        continue;
                    }
                    let error = ErrorInfo::new(
                        "BudgetExceeded",
                        format!("effect {id} was stopped: {} (onExceed: \"cancel\")", exceeded.describe()),
                    )
                    .with_data(exceeded.data());
                    self.resolve(&id, Err(error), false);
                }
            }
        }
        for warning in self.ledger.warnings(now) {
            let message = format!("warning: {warning}");
            self.observer.progress(Progress::Log { scope: "budget".into(), message: message.clone() });
            self.record(Event::Log { scope: "budget".into(), message });
        }
    }

    /// Rebuild spend from the journal a resuming driver read; warnings already due are not given again.
    pub(super) fn restore_ledger(&mut self, records: &[Record]) {
        self.ledger = crate::budget::Ledger::of_loading(records, self.store.as_ref());
        self.ledger.warnings(wall_ms());
    }
}

fn budget_event(exceeded: &Exceeded, effect: Option<EffectId>, action: &str) -> Event {
    Event::BudgetExceeded {
        scope: exceeded.scope.to_string(),
        measure: exceeded.measure.name().to_string(),
        limit: exceeded.limit,
        spent: exceeded.spent,
        effect,
        action: action.to_string(),
    }
}

/// Check a task's `budget` (set on its description or by `ctx.task(def, args, { budget })`).
pub(super) fn task_budget(task: &Value, named: &str) -> Result<(), ErrorInfo> {
    match task.get("budget") {
        None | Some(Value::Null) => Ok(()),
        Some(b) => Limits::parse(b, &format!("{named}: budget"))
            .map(|_| ())
            .map_err(|why| ErrorInfo::new("InvalidBudget", why)),
    }
}

/// Check `ctx.group(name, { budget, memberBudget })`: each a valid budget, and a member's no larger than its
/// group's.
pub(super) fn group_budgets(group: &str, budget: Option<&Value>, member: Option<&Value>) -> Result<(), String> {
    let what = format!("ctx.group(\"{group}\")");
    let parse = |v: Option<&Value>, field: &str| -> Result<Option<Limits>, String> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(v) => Limits::parse(v, &format!("{what}: {field}")).map(Some),
        }
    };
    let (outer, inner) = (parse(budget, "budget")?, parse(member, "memberBudget")?);
    if let (Some(outer), Some(inner)) = (outer, inner)
        && let Some(m) = inner.larger_than(&outer)
    {
        let (a, b) = (inner.limit(m).unwrap_or_default(), outer.limit(m).unwrap_or_default());
        return Err(format!(
            "{what}: memberBudget.{name} ({}) is larger than the group's budget.{name} ({}): a member's budget must \
             fit in its group's",
            m.show(a),
            m.show(b),
            name = m.name()
        ));
    }
    Ok(())
}
