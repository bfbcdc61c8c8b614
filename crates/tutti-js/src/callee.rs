//! Naming the callee of QuickJS's bare `TypeError: not a function`: the error's first stack frame gives the
//! file, line and column of the call, and the source there names what was called (`ctx.getBreakpointData is
//! not a function`). Anything it cannot read leaves the error as it was.

use serde_json::Value;
use tutti_journal::ErrorInfo;

pub(crate) fn name_callee(info: &mut ErrorInfo) {
    if info.name != "TypeError" || info.message != "not a function" {
        return;
    }
    let Some(stack) = info.data.as_ref().and_then(|d| d.get("stack")).and_then(Value::as_str) else { return };
    let Some((file, line, column)) = first_frame(stack) else { return };
    let Ok(text) = std::fs::read_to_string(file) else { return };
    if let Some(callee) = callee_at(&text, line, column) {
        info.message = format!("{callee} is not a function");
    }
}

/// `(file, line, column)` of the first `at … (FILE:LINE:COLUMN)` frame.
fn first_frame(stack: &str) -> Option<(&str, usize, usize)> {
    let frame = stack.lines().find_map(|l| l.trim().strip_prefix("at "))?;
    let inner = frame.rsplit_once('(').map_or(frame, |(_, rest)| rest).trim_end_matches(')');
    let mut parts = inner.rsplitn(3, ':');
    let column = parts.next()?.parse().ok()?;
    let line = parts.next()?.parse().ok()?;
    Some((parts.next()?, line, column))
}

/// The dotted name (`a.b.c`) whose last part starts or contains 1-based `column` of `line`, when a call follows.
fn callee_at(text: &str, line: usize, column: usize) -> Option<String> {
    let chars: Vec<char> = text.lines().nth(line.checked_sub(1)?)?.chars().collect();
    let is_name = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    let at = column.checked_sub(1).filter(|&i| i < chars.len() && is_name(chars[i]))?;
    let mut start = at;
    while start > 0 && (is_name(chars[start - 1]) || chars[start - 1] == '.') {
        start -= 1;
    }
    let mut end = at;
    while end < chars.len() && is_name(chars[end]) {
        end += 1;
    }
    let called = chars[end..].iter().find(|c| !c.is_whitespace()).is_some_and(|&c| c == '(' || c == '?');
    let name: String = chars[start..end].iter().collect::<String>().trim_start_matches('.').to_string();
    (called && !name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callee_is_read_from_the_call_site() {
        let source = "export async function process(inputs, ctx) {\n  const data = ctx.getBreakpointData();\n}\n";
        assert_eq!(callee_at(source, 2, 20).as_deref(), Some("ctx.getBreakpointData"));
        assert_eq!(callee_at("  helper (1);", 1, 3).as_deref(), Some("helper"));
        assert_eq!(callee_at("  x = y;", 1, 3), None, "no call there");
        assert_eq!(first_frame("TypeError: not a function\n    at process (/p/a.js:2:20)\n"), Some(("/p/a.js", 2, 20)));
    }

    #[test]
    fn the_message_names_the_callee_when_the_file_can_be_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("p.js");
        std::fs::write(&file, "async function process(i, ctx) {\n  return ctx.task.run(1);\n}\n").expect("write");
        let stack = format!("TypeError: not a function\n    at process ({}:2:19)", file.display());
        let mut info = ErrorInfo::new("TypeError", "not a function").with_data(serde_json::json!({ "stack": stack }));
        name_callee(&mut info);
        assert_eq!(info.message, "ctx.task.run is not a function");
        let mut other = ErrorInfo::new("TypeError", "x is undefined");
        name_callee(&mut other);
        assert_eq!(other.message, "x is undefined");
    }
}
