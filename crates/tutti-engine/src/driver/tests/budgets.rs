//! Budgets in the dispatcher: usage without a cost is priced from the table, an attempt whose cost is not
//! known yet runs alone, admitted attempts are journaled with their reservation, and those that do not fit
//! fail with `BudgetExceeded` without starting.

use super::*;
use crate::prices::{Price, Prices};

/// A probe whose every attempt reports 100,000 input tokens of model `m` (no cost of its own) after 20 ms.
fn metered() -> (Arc<dyn crate::harness::Harness>, Arc<Mutex<Seen>>) {
    arc(Probe::new("a", |job| {
        let usage =
            tutti_journal::Usage { input_tokens: 100_000, model: Some("m".into()), ..tutti_journal::Usage::default() };
        Act::Costs(Duration::from_millis(20), usage, Ok(job.args.clone()))
    }))
}

#[test]
fn a_run_budget_prices_usage_admits_what_fits_and_refuses_the_rest_without_starting_it() {
    let mut rig = Rig::new();
    rig.max_parallel = 4;
    rig.run_options = json!({ "budget": { "run": { "usd": 1.0 } } });
    // $3 per million input tokens: each attempt costs $0.30.
    let mut prices = Prices::none();
    prices.set("m", Price { input: 3.0, output: 0.0, cache_read: 0.0, cache_write: 0.0 }, "test prices");
    rig.prices = prices;
    let (probe, seen) = metered();
    let requests =
        (1..=6).map(|i| request(&format!("root/{i}"), "agent", json!(i), json!({ "harness": "a" }))).collect();
    let mut host = Script::fan_out(requests);
    let end = rig.run(&mut host, vec![probe]);
    let output = end.output.expect("an output");
    let ok = (1..=6).filter(|i| output[format!("root/{i}")] == json!(i)).count();
    let refused = (1..=6).filter(|i| output[format!("root/{i}")] == "!BudgetExceeded").count();
    assert_eq!((ok, refused), (3, 3), "$0.30 each: three fit in $1.00 ({output})");
    let seen = lock(&seen);
    assert_eq!(seen.starts.len(), 3, "a refused effect never starts: {:?}", seen.starts);
    assert!(seen.most <= 2, "the first attempt ran alone, then what its cost left room for: {}", seen.most);
    drop(seen);

    let events = rig.events();
    let priced: Vec<(Option<f64>, Option<String>)> = events
        .iter()
        .filter_map(|e| match e {
            Event::EffectUsage { usage, .. } => Some((usage.cost_usd, usage.priced.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(priced.len(), 3);
    assert!(
        priced.iter().all(
            |(usd, source)| usd.is_some_and(|u| (u - 0.3).abs() < 1e-9) && source.as_deref() == Some("test prices")
        )
    );
    let reserved: Vec<f64> = events
        .iter()
        .filter_map(|e| if let Event::BudgetReserved { usd, .. } = e { Some(*usd) } else { None })
        .collect();
    assert_eq!(reserved.len(), 3, "{events:?}");
    assert_eq!(reserved[0], 0.0, "nothing was known of the first attempt's cost");
    assert!(reserved[1..].iter().all(|usd| (usd - 0.3).abs() < 1e-9), "then the mean of what ran: {reserved:?}");
    let refusals = events
        .iter()
        .filter(|e| matches!(e, Event::BudgetExceeded { scope, action, effect: Some(_), .. } if scope == "run" && action == "refused"))
        .count();
    assert_eq!(refusals, 3);
    // Each refusal is journaled before the effect's failure.
    let first_refusal = events.iter().position(|e| matches!(e, Event::BudgetExceeded { .. })).expect("a refusal");
    let first_failure = events
        .iter()
        .position(|e| matches!(e, Event::EffectResolved { outcome: tutti_journal::Outcome::Error { .. }, .. }))
        .expect("a failure");
    assert!(first_refusal < first_failure);
}
