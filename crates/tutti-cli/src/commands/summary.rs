//! The account `tutti run` and `tutti resume` print when a run ends: wall time, how its effects ended, tokens and
//! cost per harness and per member, and the slowest effects. Read from the journal.

use std::collections::BTreeMap;

use tutti_engine::budget::Ledger;
use tutti_journal::{Event, Record, Usage};

use crate::commands::inspect::effects;

/// The run's account, or `None` when it ran no effect.
pub(crate) fn summary(records: &[Record], ledger: &Ledger) -> Option<String> {
    let views = effects(records);
    if views.is_empty() {
        return None;
    }
    let wall = match (records.first(), records.last()) {
        (Some(a), Some(b)) => (b.ts_ms - a.ts_ms).max(0) as f64 / 1000.0,
        _ => 0.0,
    };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, v) in &views {
        *counts.entry(v.state).or_default() += 1;
    }
    let mut by_harness: BTreeMap<String, (Usage, u64)> = BTreeMap::new();
    let mut by_member: BTreeMap<String, (Usage, u64)> = BTreeMap::new();
    let mut started: BTreeMap<String, i64> = BTreeMap::new();
    let mut took: Vec<(i64, String)> = Vec::new();
    for r in records {
        match &r.event {
            Event::EffectUsage { effect, harness, usage, .. } => {
                let unpriced = if usage.cost_usd.is_none() { usage.tokens() } else { 0 };
                let add = |entry: &mut (Usage, u64)| {
                    entry.0.add(usage);
                    entry.1 += unpriced;
                };
                add(by_harness.entry(harness.clone()).or_default());
                if let Some((g, m)) = effect.member() {
                    add(by_member.entry(format!("{g}/{m}")).or_default());
                }
            }
            Event::EffectStarted { effect, .. } => {
                started.insert(effect.to_string(), r.ts_ms);
            }
            Event::EffectResolved { effect, .. } => {
                if let Some(t) = started.remove(effect.as_str()) {
                    took.push((r.ts_ms - t, effect.to_string()));
                }
            }
            _ => {}
        }
    }
    let states: Vec<String> = counts.iter().map(|(state, n)| format!("{n} {state}")).collect();
    let mut out = format!("summary: {wall:.1}s wall, {} effects ({})", views.len(), states.join(", "));
    // Tokens with no known price are said apart, never counted as $0.
    let line = |(u, unpriced): &(Usage, u64)| {
        let cost = match (u.cost_usd, unpriced) {
            (Some(usd), 0) => format!(", ${usd:.4}"),
            (Some(usd), n) => format!(", ${usd:.4} + {n} tokens unpriced"),
            (None, n) if *n > 0 => ", unpriced".to_string(),
            (None, _) => String::new(),
        };
        format!("{} in / {} out tokens{cost}", u.input_tokens, u.output_tokens)
    };
    for (name, u) in &by_harness {
        out.push_str(&format!("\n  harness {name:<12} {}", line(u)));
    }
    for (name, u) in &by_member {
        out.push_str(&format!("\n  member  {name:<12} {}", line(u)));
    }
    let end = records.last().map_or(0, |r| r.ts_ms);
    for (scope, account) in ledger.accounts() {
        out.push_str(&format!(
            "\n  budget  {:<12} {}",
            scope.to_string(),
            tutti_engine::budget::describe(&account.to_json(scope, end))
        ));
    }
    took.sort_by(|a, b| b.cmp(a));
    let slowest: Vec<String> = took.iter().take(3).map(|(ms, e)| format!("{e} {:.1}s", *ms as f64 / 1000.0)).collect();
    if !slowest.is_empty() {
        out.push_str(&format!("\n  slowest {}", slowest.join(", ")));
    }
    Some(out)
}
