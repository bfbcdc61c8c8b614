//! Task kinds as a type. A process names a task's kind with a string (`agent`, `shell`, a custom kind the
//! library invents); the engine turns it into a [`Kind`] once, where the request arrives, and decides by
//! the variant from then on: what it runs itself, what goes to its own harness, what may be held to an output
//! schema. The journal keeps the name.

use std::fmt;

/// What a task is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Agent,
    Skill,
    Shell,
    Node,
    /// Waits for a person (`tutti approve`), or approves itself with `--non-interactive`.
    Breakpoint,
    /// Waits for the clock (`ctx.sleepUntil`).
    Sleep,
    /// One step of `ctx.merge`: merge a branch into the integration branch, finish a resolved merge, or abort
    /// one; run by the `merge` harness.
    Merge,
    /// Any other kind (`orchestrator_task`, the library's custom kinds): runs as an agent task whose prompt
    /// renders the whole description.
    Other(String),
}

impl Kind {
    /// The kind a process names.
    pub fn parse(name: &str) -> Kind {
        match name {
            "agent" => Kind::Agent,
            "skill" => Kind::Skill,
            "shell" => Kind::Shell,
            "node" => Kind::Node,
            "breakpoint" => Kind::Breakpoint,
            "sleep" => Kind::Sleep,
            "merge" => Kind::Merge,
            other => Kind::Other(other.to_string()),
        }
    }

    /// The name, as journaled.
    pub fn as_str(&self) -> &str {
        match self {
            Kind::Agent => "agent",
            Kind::Skill => "skill",
            Kind::Shell => "shell",
            Kind::Node => "node",
            Kind::Breakpoint => "breakpoint",
            Kind::Sleep => "sleep",
            Kind::Merge => "merge",
            Kind::Other(name) => name,
        }
    }

    /// The engine runs it itself, without a harness.
    pub fn is_internal(&self) -> bool {
        matches!(self, Kind::Breakpoint | Kind::Sleep)
    }

    /// The harness that alone runs this kind (`shell`, `node`, `merge`); other kinds are routed among agents.
    pub fn own_harness(&self) -> Option<&'static str> {
        match self {
            Kind::Shell => Some("shell"),
            Kind::Node => Some("node"),
            Kind::Merge => Some("merge"),
            _ => None,
        }
    }

    /// An agent answers it: its answer may be held to an output schema.
    pub fn is_agent_like(&self) -> bool {
        !self.is_internal() && self.own_harness().is_none()
    }
}

impl From<&str> for Kind {
    fn from(name: &str) -> Self {
        Kind::parse(name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_custom_kinds_are_agent_like() {
        for name in ["agent", "skill", "shell", "node", "breakpoint", "sleep", "merge", "orchestrator_task"] {
            assert_eq!(Kind::parse(name).as_str(), name);
        }
        assert_eq!(Kind::parse("orchestrator_task"), Kind::Other("orchestrator_task".into()));
        assert!(Kind::parse("orchestrator_task").is_agent_like());
        assert!(Kind::Sleep.is_internal() && !Kind::Sleep.is_agent_like());
        assert_eq!((Kind::Shell.own_harness(), Kind::Agent.own_harness()), (Some("shell"), None));
        assert!(!Kind::Node.is_agent_like());
    }
}
