//! The harnesses a run may use, by name, and the routing of a task to one of them. Capability-based
//! routing across agent CLIs builds on this; for now a task goes to its first named harness that exists,
//! else to the run's default agent harness.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tutti_journal::ErrorInfo;

use crate::harness::Harness;
use crate::kind::Kind;

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

    /// Replace every harness with `wrap(harness)` (a layer every job of the run goes through, such as worktree
    /// isolation). The wrapper keeps the harness's name.
    pub fn wrap(&mut self, wrap: impl Fn(Arc<dyn Harness>) -> Arc<dyn Harness>) {
        for harness in self.by_name.values_mut() {
            *harness = wrap(Arc::clone(harness));
        }
    }

    /// The harness for agent-like tasks that name none (`--harness`, or `[defaults] harness`).
    /// The harness agent tasks go to when they name none.
    pub fn default_agent(&self) -> Option<&str> {
        self.default_agent.as_deref()
    }

    pub fn set_default_agent(&mut self, name: Option<String>) {
        self.default_agent = name;
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Harness>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Where a task of `kind` described by `task` runs: the first harness that the task prefers (`harness`,
    /// `execution.harness`), else the default agent harness, else — when the task `requires` capabilities —
    /// any harness that has them; always skipping harnesses that lack a required capability or are not
    /// available. The others that qualify are the fallbacks, in order.
    ///
    /// A `node` or `shell` task with nothing for tutti to execute (no script, no command: a description only)
    /// goes to an agent like a custom kind, as babysitter hands it to its orchestrating agent; the reason says so.
    pub fn route(&self, kind: &Kind, task: &Value, args: &Value) -> Result<Route, ErrorInfo> {
        let handed = match (kind.own_harness(), nothing_to_execute(kind, task, args)) {
            (Some(own), None) => {
                return match self.by_name.get(own) {
                    Some(_) => {
                        Ok(Route { harness: own.to_string(), reason: format!("{kind} task"), fallbacks: Vec::new() })
                    }
                    None => Err(ErrorInfo::new("NoHarness", format!("no `{own}` harness is configured"))),
                };
            }
            (_, why) => why,
        };
        let mut route = self.route_to_agents(kind, task)?;
        if let Some(why) = handed {
            route.reason = format!("{why}, so an agent performs it from its description: {}", route.reason);
        }
        Ok(route)
    }

    fn route_to_agents(&self, kind: &Kind, task: &Value) -> Result<Route, ErrorInfo> {
        let wanted = preferences(task);
        let requires = requirements(task);
        let mut order: Vec<(String, String)> =
            wanted.iter().map(|n| (n.clone(), format!("preferred by the task ({n})"))).collect();
        if let Some(d) = &self.default_agent {
            order.push((d.clone(), format!("the default agent harness ({d})")));
        }
        if !requires.is_empty() {
            // An external harness (an outer agent) takes a task only when chosen: it qualifies for anything.
            let external = |n: &str| self.by_name.get(n).is_some_and(|h| h.is_external());
            for name in self.names().filter(|n| !matches!(*n, "shell" | "node") && !external(n)) {
                order.push((name.to_string(), format!("has the required capabilities [{}]", requires.join(", "))));
            }
        }
        let mut chosen: Vec<(String, String)> = Vec::new();
        let mut skipped: Vec<String> = Vec::new();
        for (name, reason) in order {
            if chosen.iter().any(|(n, _)| *n == name) || skipped.iter().any(|s| s.starts_with(&format!("{name}:"))) {
                continue;
            }
            match self.qualifies(&name, &requires) {
                Ok(()) => chosen.push((name, reason)),
                Err(why) => skipped.push(format!("{name}: {why}")),
            }
        }
        let mut chosen = chosen.into_iter();
        let Some((harness, mut reason)) = chosen.next() else {
            return Err(self.no_harness(kind, &wanted, &requires, &skipped));
        };
        if !skipped.is_empty() {
            reason.push_str(&format!("; skipped {}", skipped.join("; ")));
        }
        Ok(Route { harness, reason, fallbacks: chosen.map(|(n, _)| n).collect() })
    }

    /// Why `name` cannot take a task needing `requires`, if it cannot.
    fn qualifies(&self, name: &str, requires: &[String]) -> Result<(), String> {
        let Some(h) = self.by_name.get(name) else { return Err("not configured".into()) };
        if h.is_external() {
            return Ok(());
        }
        let has = h.capabilities();
        let missing: Vec<&str> = requires.iter().filter(|r| !has.contains(r)).map(String::as_str).collect();
        if !missing.is_empty() {
            return Err(format!("lacks {}", missing.join(", ")));
        }
        h.availability()
    }

    fn no_harness(&self, kind: &Kind, wanted: &[String], requires: &[String], skipped: &[String]) -> ErrorInfo {
        let configured: Vec<&str> = self.names().filter(|n| !matches!(*n, "shell" | "node")).collect();
        let mut message = format!("no harness for {kind} task");
        if !wanted.is_empty() {
            message.push_str(&format!(" (it asks for {})", wanted.join(", ")));
        }
        if !requires.is_empty() {
            message.push_str(&format!(" (it requires {})", requires.join(", ")));
        }
        if !skipped.is_empty() {
            message.push_str(&format!(": {}", skipped.join("; ")));
        }
        message.push_str(&format!(
            "; pass --harness NAME or set `harness` under [defaults] in tutti.toml (configured: {})",
            if configured.is_empty() { "none".to_string() } else { configured.join(", ") }
        ));
        ErrorInfo::new("NoHarness", message)
    }
}

/// A routing decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub harness: String,
    /// Why, for the journal.
    pub reason: String,
    /// The next harnesses to try if this one turns out to be unavailable.
    pub fallbacks: Vec<String>,
}

/// The capabilities a task requires (`requires: ["edit", ...]`).
/// Why tutti cannot run a `node` or `shell` task itself, if it cannot: it names no script or command.
fn nothing_to_execute(kind: &Kind, task: &Value, args: &Value) -> Option<&'static str> {
    let given = |v: Option<&Value>| v.is_some_and(|v| v.as_str().is_some_and(|s| !s.trim().is_empty()));
    match kind {
        Kind::Node if !given(task.pointer("/node/script")) && !given(task.pointer("/node/entry")) => {
            Some("a node task with no node.script or node.entry")
        }
        Kind::Shell
            if [task.pointer("/shell/command"), task.get("command"), args.get("command")]
                .into_iter()
                .all(|v| v.is_none_or(Value::is_null)) =>
        {
            Some("a shell task with no shell.command")
        }
        _ => None,
    }
}

fn requirements(task: &Value) -> Vec<String> {
    task.get("requires")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default()
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

    struct Fake(&'static str, &'static [&'static str], bool);
    impl Harness for Fake {
        fn name(&self) -> &str {
            self.0
        }
        fn capabilities(&self) -> Vec<String> {
            self.1.iter().map(|s| s.to_string()).collect()
        }
        fn availability(&self) -> Result<(), String> {
            if self.2 { Ok(()) } else { Err("not installed".into()) }
        }
        fn start(&self, _: crate::Job, _: crate::Reporter) -> Result<Box<dyn crate::Running>, crate::harness::Error> {
            unreachable!("routing tests start nothing")
        }
    }

    fn set() -> Harnesses {
        let mut h = Harnesses::new();
        h.add(Arc::new(Fake("cheap", &["shell"], true)));
        h.add(Arc::new(Fake("strong", &["edit", "shell", "web"], true)));
        h.add(Arc::new(Fake("gone", &["edit", "shell", "web"], false)));
        h
    }

    #[test]
    fn requirements_pick_a_capable_harness_and_say_why() {
        let r = set().route(&Kind::Agent, &json!({"requires": ["edit"]}), &Value::Null).unwrap();
        assert_eq!(r.harness, "strong");
        assert!(
            r.reason.contains("required capabilities [edit]") && r.reason.contains("cheap: lacks edit"),
            "{}",
            r.reason
        );
        assert!(r.reason.contains("gone: not installed"), "{}", r.reason);
    }

    #[test]
    fn preferences_come_first_and_the_rest_are_fallbacks() {
        let r = set().route(&Kind::Agent, &json!({"harness": ["gone", "cheap", "strong"]}), &Value::Null).unwrap();
        assert_eq!((r.harness.as_str(), r.fallbacks.clone()), ("cheap", vec!["strong".to_string()]));
        assert!(r.reason.contains("preferred by the task (cheap)") && r.reason.contains("gone: not installed"));
    }

    #[test]
    fn no_capable_harness_is_a_clear_error() {
        let e = set().route(&Kind::Agent, &json!({"requires": ["gpu"]}), &Value::Null).unwrap_err();
        assert!(e.message.contains("requires gpu") && e.message.contains("strong: lacks gpu"), "{}", e.message);
    }

    #[test]
    fn a_node_or_shell_task_with_nothing_to_execute_goes_to_an_agent_and_says_why() {
        let mut h = set();
        h.add(Arc::new(Fake("node", &[], true)));
        h.add(Arc::new(Fake("shell", &[], true)));
        h.set_default_agent(Some("strong".into()));
        let described = json!({"kind": "node", "title": "tally votes", "node": {"description": "count them"}});
        let r = h.route(&Kind::Node, &described, &Value::Null).unwrap();
        assert_eq!(r.harness, "strong");
        assert!(r.reason.starts_with("a node task with no node.script or node.entry, so an agent"), "{}", r.reason);
        let scripted = json!({"kind": "node", "node": {"entry": "tally.js"}});
        assert_eq!(h.route(&Kind::Node, &scripted, &Value::Null).unwrap().harness, "node");
        let r = h.route(&Kind::Shell, &json!({"kind": "shell", "shell": {}}), &Value::Null).unwrap();
        assert!(r.harness == "strong" && r.reason.contains("no shell.command"), "{}", r.reason);
        let in_args = h.route(&Kind::Shell, &json!({"kind": "shell"}), &json!({"command": "ls"})).unwrap();
        assert_eq!(in_args.harness, "shell");
    }

    struct Outside;
    impl Harness for Outside {
        fn name(&self) -> &str {
            "external"
        }
        fn is_external(&self) -> bool {
            true
        }
        fn start(&self, _: crate::Job, _: crate::Reporter) -> Result<Box<dyn crate::Running>, crate::harness::Error> {
            unreachable!("an external harness is never started")
        }
    }

    #[test]
    fn an_external_harness_takes_any_task_when_chosen_and_none_by_capability() {
        let mut h = set();
        h.add(Arc::new(Outside));
        let by_capability = h.route(&Kind::Agent, &json!({"requires": ["edit"]}), &Value::Null).unwrap();
        assert_eq!(by_capability.harness, "strong");
        h.set_default_agent(Some("external".into()));
        let chosen = h.route(&Kind::Agent, &json!({"requires": ["gpu"]}), &Value::Null).unwrap();
        assert_eq!(chosen.harness, "external");
    }

    #[test]
    fn no_harness_error_names_the_fix() {
        let h = Harnesses::new();
        let e = h.route(&Kind::Agent, &json!({"harness": "claude"}), &Value::Null).unwrap_err();
        assert!(e.message.contains("--harness"), "{}", e.message);
        assert!(e.message.contains("claude"), "{}", e.message);
    }
}
