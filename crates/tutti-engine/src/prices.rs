//! The price table: US dollars per million tokens for each model (input, output, cache read, cache write),
//! used to cost usage whose harness reported only tokens (codex, gemini, a pi or opencode provider without
//! prices). Defaults ship for the models the pinned CLIs use, dated; `[prices."MODEL"]` in tutti.toml
//! overrides or extends them. Usage with no known price stays unpriced: its tokens count, its cost is unknown,
//! never $0.

use std::collections::BTreeMap;

use tutti_journal::Usage;

/// When the default prices were read, and from where.
pub const DEFAULTS_AS_OF: &str = "2026-12-02";

/// One model's list price, in US dollars per million tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
}

impl Price {
    /// What `usage` costs at this price.
    pub fn cost(&self, usage: &Usage) -> f64 {
        (usage.input_tokens as f64 * self.input
            + usage.output_tokens as f64 * self.output
            + usage.cache_read_tokens as f64 * self.cache_read
            + usage.cache_write_tokens as f64 * self.cache_write)
            / 1_000_000.0
    }
}

/// The defaults: each from the catalog the pinned CLI itself ships (claude-code 2.1.332's baked-in model
/// catalog for Claude models, pi-ai 0.73.1's `models.generated.js` for OpenAI and Google models), read on
/// [`DEFAULTS_AS_OF`]. `(model, input, output, cache read, cache write)`.
const DEFAULTS: &[(&str, f64, f64, f64, f64)] = &[
    // claude's default model (no --model), and the other current Claude models.
    ("claude-opus-5-5", 4.0, 20.0, 0.2, 5.0),
    ("claude-opus-4-5", 5.0, 25.0, 0.5, 6.25),
    ("claude-sonnet-5-5", 2.0, 10.0, 0.1, 2.5),
    ("claude-sonnet-4-5", 3.0, 15.0, 0.3, 3.75),
    ("claude-haiku-4-5", 1.0, 5.0, 0.1, 1.25),
    // codex's catalog model that tutti's gateway setup names.
    ("gpt-5.5", 5.0, 30.0, 0.5, 0.0),
    ("gpt-5", 1.25, 10.0, 0.125, 0.0),
    ("gpt-5-mini", 0.25, 2.0, 0.025, 0.0),
    // gemini's model when tutti passes none (`-m gemini-2.5-flash`).
    ("gemini-2.5-flash", 0.3, 2.5, 0.03, 0.0),
    ("gemini-2.5-pro", 1.25, 10.0, 0.125, 0.0),
];

/// Prices by model name, each with where it came from.
#[derive(Clone, Debug)]
pub struct Prices {
    by_model: BTreeMap<String, (Price, String)>,
}

impl Default for Prices {
    fn default() -> Self {
        let source = format!("default prices ({DEFAULTS_AS_OF})");
        let by_model = DEFAULTS
            .iter()
            .map(|&(model, input, output, cache_read, cache_write)| {
                (model.to_string(), (Price { input, output, cache_read, cache_write }, source.clone()))
            })
            .collect();
        Self { by_model }
    }
}

impl Prices {
    /// No prices at all.
    pub fn none() -> Self {
        Self { by_model: BTreeMap::new() }
    }

    /// Set `model`'s price, saying where it came from (`tutti.toml [prices."m"]`).
    pub fn set(&mut self, model: &str, price: Price, source: impl Into<String>) {
        self.by_model.insert(model.to_string(), (price, source.into()));
    }

    /// The price of `model`: its own entry, else that of the name without a date or a provider prefix
    /// (`claude-sonnet-4-5-20250929`, `tutti/gpt-5.5`, `anthropic/claude-opus-5-5`).
    pub fn get(&self, model: &str) -> Option<&(Price, String)> {
        if let Some(found) = self.by_model.get(model) {
            return Some(found);
        }
        let bare = model.rsplit('/').next().unwrap_or(model);
        let undated = bare.rsplit_once('-').filter(|(_, d)| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()));
        self.by_model.get(bare).or_else(|| undated.and_then(|(name, _)| self.by_model.get(name)))
    }

    /// `usage` with its cost filled from the table when its harness reported none and its model has a price.
    /// A reported cost is kept as it is.
    pub fn price(&self, mut usage: Usage) -> Usage {
        if usage.cost_usd.is_some() {
            return usage;
        }
        if let Some((price, source)) = usage.model.as_deref().and_then(|m| self.get(m)) {
            usage.cost_usd = Some(price.cost(&usage));
            usage.priced = Some(source.clone());
        }
        usage
    }

    /// Every model and its price, for `tutti doctor`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Price, &str)> {
        self.by_model.iter().map(|(m, (p, s))| (m.as_str(), p, s.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(model: Option<&str>, cost: Option<f64>) -> Usage {
        Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            cache_read_tokens: 2_000_000,
            cache_write_tokens: 0,
            cost_usd: cost,
            model: model.map(String::from),
            priced: None,
        }
    }

    #[test]
    fn a_reported_cost_is_kept_and_tokens_alone_are_priced_from_the_table() {
        let prices = Prices::default();
        let reported = prices.price(usage(Some("gpt-5.5"), Some(0.5)));
        assert_eq!((reported.cost_usd, reported.priced), (Some(0.5), None));
        let priced = prices.price(usage(Some("gpt-5.5"), None));
        // 1M input at $5 + 0.1M output at $30 + 2M cache reads at $0.50.
        assert!((priced.cost_usd.expect("priced") - 9.0).abs() < 1e-9, "{priced:?}");
        assert_eq!(priced.priced.as_deref(), Some("default prices (2026-12-02)"));
    }

    #[test]
    fn an_unknown_model_or_none_stays_unpriced_never_zero() {
        let prices = Prices::default();
        assert_eq!(prices.price(usage(Some("mock-model"), None)).cost_usd, None);
        assert_eq!(prices.price(usage(None, None)).cost_usd, None);
    }

    #[test]
    fn a_configured_price_overrides_and_names_its_source_and_prefixes_and_dates_are_ignored() {
        let mut prices = Prices::default();
        let price = Price { input: 1.0, output: 2.0, cache_read: 0.0, cache_write: 0.0 };
        prices.set("gpt-5.5", price, "tutti.toml [prices.\"gpt-5.5\"]");
        let u = prices.price(usage(Some("tutti/gpt-5.5"), None));
        assert!((u.cost_usd.expect("priced") - 1.2).abs() < 1e-9);
        assert_eq!(u.priced.as_deref(), Some("tutti.toml [prices.\"gpt-5.5\"]"));
        assert!(prices.get("claude-sonnet-4-5-20250929").is_some(), "a dated name has its model's price");
        assert!(prices.get("claude-sonnet-4-5-fast").is_none());
    }
}
