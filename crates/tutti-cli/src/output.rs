//! Everything tutti prints goes through here: data on stdout, progress and errors on stderr, the live view on
//! a terminal, plain event lines otherwise, and the mapping of errors to exit codes.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use serde_json::Value;
use tutti_engine::{Observer, Progress};

mod live;
use live::Live;

/// Exit codes, as documented in `tutti --help`.
pub(crate) const EXIT_OK: i32 = 0;
pub(crate) const EXIT_FAILED: i32 = 1;
pub(crate) const EXIT_USAGE: i32 = 2;

/// A problem with what the user gave: exit code 2.
#[derive(Debug)]
pub(crate) struct UserError(String);

impl UserError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// Print an error with its causes and pick the exit code.
pub(crate) fn report_error(e: &anyhow::Error) -> i32 {
    let mut text = format!("tutti: error: {e}");
    for cause in e.chain().skip(1) {
        text.push_str(&format!("\n  caused by: {cause}"));
    }
    stderr_line(&text);
    if is_user_error(e) { EXIT_USAGE } else { EXIT_FAILED }
}

fn is_user_error(e: &anyhow::Error) -> bool {
    if e.downcast_ref::<UserError>().is_some() || e.downcast_ref::<tutti_js::Error>().is_some() {
        return true;
    }
    if let Some(engine) = e.downcast_ref::<tutti_engine::Error>() {
        return engine.is_user_error() || matches!(engine, tutti_engine::Error::Journal(j) if journal_user_error(j));
    }
    e.downcast_ref::<tutti_journal::Error>().is_some_and(journal_user_error)
}

fn journal_user_error(e: &tutti_journal::Error) -> bool {
    use tutti_journal::Error::*;
    matches!(e, Corrupt { .. } | SchemaTooNew { .. } | UnknownRun(_) | Open { .. } | Connect { .. } | BadUrl { .. })
}

/// Print data on stdout. Control characters other than newlines and tabs are escaped: titles, messages and
/// answers come from process files and agents, and must not drive the user's terminal.
pub(crate) fn data(text: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (`| head`) is not an error worth a panic.
    let _ = writeln!(out, "{}", escape_controls(text));
}

/// One line on stderr, control characters escaped. A failed write (a closed terminal after SIGHUP) is ignored:
/// the driver must go on to stop its effects and journal, not panic.
fn stderr_line(text: &str) {
    // One write per line: stderr is unbuffered, and `writeln!` would write the text and the newline apart.
    let mut line = escape_controls(text).into_owned();
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// What a person needs to see of a failure beyond its message, one line each, indented by `indent`: what the
/// agent CLI last said (a timeout), the tail of its stderr, and an answer held to a schema with the rules it
/// broke. Read from the error's `data` (or the `data` a process's rethrown error carries).
pub(crate) fn causes(error: &tutti_journal::ErrorInfo, indent: &str) -> String {
    let Some(data) = error.data.as_ref() else { return String::new() };
    let data = if data.get("data").is_some_and(serde_json::Value::is_object) { &data["data"] } else { data };
    let cut = |text: &str, lines: usize| -> String {
        let all: Vec<&str> = text.trim_end().lines().collect();
        let shown: Vec<String> = all
            .iter()
            .take(lines)
            .map(|l| escape_controls(&l.chars().take(200).collect::<String>()).into_owned())
            .collect();
        let more =
            if all.len() > lines { format!("\n{indent}  … {} more lines", all.len() - lines) } else { String::new() };
        format!("{}{more}", shown.join(&format!("\n{indent}  ")))
    };
    let mut out = String::new();
    if let Some(last) = data.get("lastError").and_then(serde_json::Value::as_str) {
        out.push_str(&format!("\n{indent}the CLI last said: {}", cut(last, 3)));
    }
    if let Some(stderr) = data.get("stderr").and_then(serde_json::Value::as_str).filter(|s| !s.trim().is_empty()) {
        let tail: Vec<&str> = stderr.trim_end().lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        out.push_str(&format!("\n{indent}stderr (last lines):\n{indent}  {}", cut(&tail.join("\n"), 8)));
    }
    if let Some(errors) = data.get("errors").and_then(serde_json::Value::as_array) {
        let rules: Vec<&str> = errors.iter().filter_map(serde_json::Value::as_str).collect();
        out.push_str(&format!("\n{indent}schema: {}", escape_controls(&rules.join("; "))));
    }
    if let Some(raw) = data.get("raw") {
        let text = match raw {
            serde_json::Value::String(s) => s.clone(),
            other => serde_json::to_string_pretty(other).unwrap_or_default(),
        };
        out.push_str(&format!("\n{indent}the answer:\n{indent}  {}", cut(&text, 20)));
    }
    if data.get(tutti_engine::harness::ENVIRONMENTAL) == Some(&serde_json::Value::Bool(true)) {
        out.push_str(&format!(
            "\n{indent}(the harness's environment failed, not the task: check its program, key and base_url)"
        ));
    }
    out
}

/// `text` with every control character except newline and tab shown as an escape (`\u{1b}`).
pub(crate) fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

pub(crate) fn json(value: &Value) {
    data(&serde_json::to_string_pretty(value).unwrap_or_default());
}

pub(crate) fn json_line(value: &Value) {
    data(&value.to_string());
}

/// A progress note on stderr.
pub(crate) fn note(text: &str) {
    stderr_line(&format!("tutti: {text}"));
}

/// The observer for a run: a live view on a terminal, plain lines otherwise. `process` is announced with the
/// run id once the run exists in the journal.
/// `go_on` is the command that continues the run if this driver lets go (`resume`, or `iterate` for an outer
/// agent's loop).
pub(crate) fn observer(process: &str, go_on: &'static str) -> Box<dyn Observer> {
    let process = Intro { process: process.to_string(), go_on };
    if std::io::stderr().is_terminal() {
        Box::new(Live::new(process))
    } else {
        Box::new(Plain { started: Instant::now(), process })
    }
}

/// What the first line of a run says: its process, and how to continue it.
pub(super) struct Intro {
    process: String,
    go_on: &'static str,
}

pub(super) fn announce(p: &Progress, intro: &Intro) {
    if let Progress::Attached { run_id, .. } = p {
        let (process, go_on) = (&intro.process, intro.go_on);
        note(&format!("run {run_id} of {process} ({go_on} with `tutti {go_on} {run_id}`)"));
    }
}

fn describe(effect: &str, title: &Option<String>) -> String {
    match title {
        Some(t) => format!("{effect} \"{t}\""),
        None => effect.to_string(),
    }
}

pub(super) fn permanent_line(p: &Progress) -> Option<String> {
    Some(match p {
        Progress::Attached { run_id, resumed: true, replayed } => {
            format!("resumed run {run_id} (replayed {replayed} journal events)")
        }
        Progress::Attached { .. } => return None,
        Progress::CodeChanged { old_hash, new_hash } => {
            format!("process code changed since the run started ({old_hash} -> {new_hash}); replay checks each call")
        }
        Progress::ChangesAccepted { effect, journaled, replayed, superseded } => {
            let again: Vec<&str> = superseded.iter().map(|e| e.as_str()).collect();
            format!(
                "accepted the change at {effect}: the journal had {journaled}, the process now calls {replayed}; \
                 running again: {}",
                again.join(", ")
            )
        }
        Progress::Started { effect, kind, title, harness, attempt } => {
            let again = if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
            format!("started {} [{kind} on {harness}]{again}", describe(effect, title))
        }
        Progress::Finished { effect, title, elapsed_ms, error: None } => {
            format!("done    {} in {:.2}s", describe(effect, title), *elapsed_ms as f64 / 1000.0)
        }
        Progress::Finished { effect, title, error: Some(e), .. } => {
            format!("failed  {}: {}: {}{}", describe(effect, title), e.name, e.message, causes(e, "          "))
        }
        Progress::Waiting { effect, kind, title, wake_ms: None } if kind == "breakpoint" => {
            format!("waiting {} [{kind}]: approve with `tutti approve RUN {effect}`", describe(effect, title))
        }
        Progress::Waiting { effect, kind, title, wake_ms: None } => {
            format!(
                "waiting {} [{kind}]: post its result with `tutti post RUN {effect} --value JSON`",
                describe(effect, title)
            )
        }
        Progress::Waiting { effect, title, wake_ms: Some(ms), .. } => {
            format!("sleeping {} until {} UTC", describe(effect, title), crate::commands::utc(*ms))
        }
        Progress::Redispatched { effect, attempt } => {
            format!("redispatching {effect} (attempt {attempt}): its driver stopped before it finished")
        }
        Progress::Queued { effect, reason } => format!("queued  {effect}: {reason}"),
        Progress::Log { scope, message } => format!("log     [{scope}] {message}"),
        Progress::Tick | Progress::Usage { .. } => return None,
    })
}

/// Plain lines with a time offset, for logs and pipes.
struct Plain {
    started: Instant,
    process: Intro,
}

impl Observer for Plain {
    fn progress(&mut self, p: Progress) {
        announce(&p, &self.process);
        if let Some(line) = permanent_line(&p) {
            stderr_line(&format!("[{:>7.2}s] {line}", self.started.elapsed().as_secs_f64()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_but_lines_and_tabs_stay() {
        assert_eq!(escape_controls("plain\tline\nnext"), "plain\tline\nnext");
        assert_eq!(escape_controls("\x1b[2Jred\x07"), "\\u{1b}[2Jred\\u{7}");
        assert_eq!(escape_controls("bell\u{9b}31m"), "bell\\u{9b}31m");
    }
}
