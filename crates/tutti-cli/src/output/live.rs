//! The terminal view of a run: finished work scrolls up as plain lines; below it, redrawn in place, a header
//! (running, done, failed, tokens and cost so far), one line per group member (harness, state, elapsed, its
//! latest tool call or message, tokens, $) and one per running effect outside any group. Dropping it clears the
//! redrawn area, so nothing stale stays on screen after the run or a Ctrl-C.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use tutti_engine::{Observer, Progress};
use tutti_journal::Usage;

use super::{announce, escape_controls, permanent_line};

/// Lines are cut to this many characters so that a redraw never wraps.
const WIDTH: usize = 120;

/// An effect that runs now.
struct Running {
    /// `kind on harness "title"`.
    what: String,
    harness: String,
    since: Instant,
    /// Its latest progress note (tool call, message, retry).
    note: Option<String>,
}

/// A group member, from its first turn on.
#[derive(Default)]
struct Member {
    harness: String,
    /// The effect of its turn in progress.
    turn: Option<String>,
    turns: u32,
    usage: Usage,
}

pub(super) struct Live {
    process: super::Intro,
    running: BTreeMap<String, Running>,
    members: BTreeMap<String, Member>,
    /// Usage of effects outside any group, by effect, and of the whole run.
    usage: BTreeMap<String, Usage>,
    total: Usage,
    done: usize,
    failed: usize,
    drawn: usize,
}

impl Drop for Live {
    fn drop(&mut self) {
        if self.drawn > 0 {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[{}A\x1b[J", self.drawn);
        }
    }
}

/// `1,234 tok $0.0123`, or `unpriced` when tokens were used but the harness reported no cost.
fn spent(u: &Usage) -> String {
    let tokens = u.input_tokens + u.output_tokens;
    let mut digits = tokens.to_string();
    let mut i = digits.len();
    while i > 3 {
        i -= 3;
        digits.insert(i, ',');
    }
    match (tokens, u.cost_usd) {
        (0, None) => String::new(),
        (_, Some(usd)) => format!("{digits} tok ${usd:.4}"),
        (_, None) => format!("{digits} tok unpriced"),
    }
}

impl Live {
    pub(super) fn new(process: super::Intro) -> Live {
        Live {
            process,
            running: BTreeMap::new(),
            members: BTreeMap::new(),
            usage: BTreeMap::new(),
            total: Usage::default(),
            done: 0,
            failed: 0,
            drawn: 0,
        }
    }

    /// The redrawn lines, without styles.
    fn lines(&self) -> Vec<String> {
        if self.running.is_empty() {
            return Vec::new();
        }
        let cost = spent(&self.total);
        let cost = if cost.is_empty() { String::new() } else { format!(" · {cost}") };
        let mut lines =
            vec![format!("  {} running · {} done · {} failed{cost}", self.running.len(), self.done, self.failed)];
        for (name, m) in &self.members {
            let turn = m.turn.as_ref().and_then(|e| self.running.get(e));
            let (mark, state) = match turn {
                Some(r) => ("●", format!("running {:.1}s", r.since.elapsed().as_secs_f64())),
                None => ("○", format!("idle after {} turn{}", m.turns, if m.turns == 1 { "" } else { "s" })),
            };
            let harness = turn.map_or(m.harness.as_str(), |r| r.harness.as_str());
            let note = turn.and_then(|r| r.note.as_deref()).map(|n| format!("  — {n}")).unwrap_or_default();
            lines.push(format!("  {mark} {name:<18} {harness:<10} {state:<18} {:<22}{note}", spent(&m.usage)));
        }
        for (effect, r) in self.running.iter().filter(|(e, _)| !self.is_member_turn(e)) {
            let usage = self.usage.get(effect).map(spent).unwrap_or_default();
            let note = r.note.as_deref().map(|n| format!("  — {n}")).unwrap_or_default();
            let elapsed = r.since.elapsed().as_secs_f64();
            lines.push(format!("  ⏵ {effect}  {}  {elapsed:.1}s {usage}{note}", r.what));
        }
        lines.into_iter().map(|l| escape_controls(&l).chars().take(WIDTH).collect()).collect()
    }

    fn is_member_turn(&self, effect: &str) -> bool {
        self.members.values().any(|m| m.turn.as_deref() == Some(effect))
    }

    fn redraw(&mut self, line: Option<String>) {
        let mut err = std::io::stderr().lock();
        if self.drawn > 0 {
            let _ = write!(err, "\r\x1b[{}A\x1b[J", self.drawn);
        }
        if let Some(line) = line {
            let _ = writeln!(err, "{}", escape_controls(&line));
        }
        let plain = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let lines = self.lines();
        self.drawn = lines.len();
        for (i, text) in lines.iter().enumerate() {
            let code = if i == 0 { "1" } else { "2" };
            let _ = if plain { writeln!(err, "{text}") } else { writeln!(err, "\x1b[{code}m{text}\x1b[0m") };
        }
    }

    /// Keep what the view shows up to date; true when the change is drawn by a redraw alone.
    fn apply(&mut self, p: &Progress) -> bool {
        match p {
            Progress::Started { effect, kind, title, harness, .. } => {
                let title = title.as_ref().map(|t| format!(" \"{t}\"")).unwrap_or_default();
                let what = format!("{kind} on {harness}{title}");
                let since = Instant::now();
                self.running.insert(effect.to_string(), Running { what, harness: harness.clone(), since, note: None });
                if let Some((g, m)) = effect.member() {
                    let member = self.members.entry(format!("{g}/{m}")).or_default();
                    (member.harness, member.turn) = (harness.clone(), Some(effect.to_string()));
                    member.turns += 1;
                }
                true
            }
            Progress::Finished { effect, error, .. } => {
                self.running.remove(effect.as_str());
                self.done += 1;
                self.failed += usize::from(error.is_some());
                for m in self.members.values_mut().filter(|m| m.turn.as_deref() == Some(effect.as_str())) {
                    m.turn = None;
                }
                false
            }
            Progress::Usage { effect, usage } => {
                self.total.add(usage);
                match effect.member() {
                    Some((g, m)) => self.members.entry(format!("{g}/{m}")).or_default().usage.add(usage),
                    None => self.usage.entry(effect.to_string()).or_default().add(usage),
                }
                true
            }
            // A running effect's progress updates its line instead of scrolling.
            Progress::Log { scope, message } if self.running.contains_key(scope) => {
                if let Some(r) = self.running.get_mut(scope) {
                    r.note = Some(message.clone());
                }
                true
            }
            Progress::Tick => true,
            _ => false,
        }
    }
}

impl Observer for Live {
    fn progress(&mut self, p: Progress) {
        announce(&p, &self.process);
        if self.apply(&p) {
            self.redraw(None);
        } else {
            let line = permanent_line(&p);
            self.redraw(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(effect: &str, harness: &str) -> Progress {
        Progress::Started {
            effect: effect.into(),
            kind: "agent".into(),
            title: None,
            harness: harness.into(),
            attempt: 1,
        }
    }

    #[test]
    fn members_keep_a_line_with_their_spend_and_the_header_sums_the_run() {
        let mut live = Live::new(crate::output::Intro { process: "p.js".into(), go_on: "resume" });
        live.apply(&started("group:crew/ann/0", "claude"));
        live.apply(&started("group:crew/ben/0", "codex"));
        live.apply(&started("root/3", "sh"));
        let usage = Usage { input_tokens: 1000, output_tokens: 234, cost_usd: Some(0.0125), ..Usage::default() };
        live.apply(&Progress::Usage { effect: "group:crew/ann/0".into(), usage });
        live.apply(&Progress::Finished { effect: "group:crew/ann/0".into(), title: None, elapsed_ms: 5, error: None });
        let unpriced = Usage { input_tokens: 10, output_tokens: 5, ..Usage::default() };
        live.apply(&Progress::Usage { effect: "group:crew/ben/0".into(), usage: unpriced });
        live.apply(&Progress::Log { scope: "group:crew/ben/0".into(), message: "tool: Read src/lib.rs".into() });
        let lines = live.lines();
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].contains("2 running · 1 done · 0 failed · 1,249 tok $0.0125"), "{}", lines[0]);
        assert!(
            lines[1].contains("○ crew/ann") && lines[1].contains("claude") && lines[1].contains("idle after 1 turn ")
        );
        assert!(lines[1].contains("1,234 tok $0.0125"), "{}", lines[1]);
        assert!(lines[2].contains("● crew/ben") && lines[2].contains("running"), "{}", lines[2]);
        assert!(lines[2].contains("15 tok unpriced") && lines[2].ends_with("— tool: Read src/lib.rs"), "{}", lines[2]);
        assert!(lines[3].contains("⏵ root/3  agent on sh"), "{}", lines[3]);
    }

    #[test]
    fn nothing_is_drawn_when_nothing_runs() {
        let mut live = Live::new(crate::output::Intro { process: "p.js".into(), go_on: "resume" });
        live.apply(&started("root/0", "sh"));
        live.apply(&Progress::Finished { effect: "root/0".into(), title: None, elapsed_ms: 5, error: None });
        assert!(live.lines().is_empty());
    }
}
