//! The harnesses a run may use, by name, and the routing of a task to one of them. Capability-based
//! routing across agent CLIs builds on this; for now a task goes to its first named harness that exists,
//! else to the run's default agent harness.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tutti_journal::ErrorInfo;

use crate::harness::Harness;

/// Kinds the engine runs itself, without a harness.
pub(crate) fn is_internal(kind: &str) -> bool {
    matches!(kind, "breakpoint" | "sleep")
}

/// The harnesses of a run.
#[derive(Clone, Default)]
pub struct Harnesses {
    by_name: BTreeMap<String, Arc<dyn Harness>>,
    default_agent: Option<String>,
}

impl Harnesses {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, harness: Arc<dyn Harness>) {
        self.by_name.insert(harness.name().to_string(), harness);
    }

    /// The harness for agent-like tasks that name none (`--harness`, or `[defaults] harness`).
    pub fn set_default_agent(&mut self, name: Option<String>) {
        self.default_agent = name;
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Harness>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// The harness that runs a task of `kind` described by `task`.
    pub fn route(&self, kind: &str, task: &Value) -> Result<String, ErrorInfo> {
        if matches!(kind, "shell" | "node") {
            return self.by_name.contains_key(kind).then(|| kind.to_string()).ok_or_else(|| {
                ErrorInfo::new("NoHarness", format!("no `{kind}` harness is configured"))
            });
        }
        let wanted = preferences(task);
        if let Some(name) = wanted.iter().find(|n| self.by_name.contains_key(n.as_str())) {
            return Ok(name.clone());
        }
        if let Some(name) = self.default_agent.as_ref().filter(|n| self.by_name.contains_key(n.as_str())) {
            return Ok(name.clone());
        }
        let configured: Vec<&str> = self.names().filter(|n| !matches!(*n, "shell" | "node")).collect();
        Err(ErrorInfo::new(
            "NoHarness",
            format!(
                "no harness for {kind} task{}: pass --harness NAME or set `harness` under [defaults] in tutti.toml \
                 (configured: {})",
                if wanted.is_empty() { String::new() } else { format!(" (it asks for {})", wanted.join(", ")) },
                if configured.is_empty() { "none".to_string() } else { configured.join(", ") }
            ),
        ))
    }
}

/// The harness names a task asks for, in preference order: `harness` (a name or a list), then babysitter's
/// `execution.harness`.
fn preferences(task: &Value) -> Vec<String> {
    let from = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
            _ => Vec::new(),
        }
    };
    let mut names = from(task.get("harness"));
    names.extend(from(task.get("execution").and_then(|e| e.get("harness"))));
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn preferences_read_both_fields() {
        let t = json!({"harness": ["a", "b"], "execution": {"harness": "c"}});
        assert_eq!(preferences(&t), vec!["a", "b", "c"]);
        assert!(preferences(&json!({})).is_empty());
    }

    #[test]
    fn no_harness_error_names_the_fix() {
        let h = Harnesses::new();
        let e = h.route("agent", &json!({"harness": "claude"})).unwrap_err();
        assert!(e.message.contains("--harness"), "{}", e.message);
        assert!(e.message.contains("claude"), "{}", e.message);
    }
}
