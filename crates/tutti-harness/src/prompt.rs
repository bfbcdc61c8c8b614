//! Rendering a task description's agent prompt into the text an agent gets. Shared by every agent adapter;
//! it does not add adapter-specific instructions (how to return JSON, output schemas, messages).

use serde_json::{Map, Value};

/// The text of `task.agent.prompt`: a string as it is; an object `{ role, task, context, instructions,
/// outputFormat, ... }` as labelled sections ("Role: ...", "Task: ...", "Context:" with JSON,
/// "Instructions:" as a numbered list, "Output format:", then any other fields as JSON); without an agent
/// prompt, the whole description as JSON.
pub fn render_prompt(task: &Value) -> String {
    // A `skill` (or custom kind) task keeps its prompt in the block named by its kind, as `agent` does.
    let own = task.get("kind").and_then(Value::as_str).and_then(|k| task.get(k)).and_then(|b| b.get("prompt"));
    match task.pointer("/agent/prompt").or(own) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Object(fields)) => render_fields(fields),
        Some(Value::Null) | None => format!("{}\n", pretty(task)),
        Some(other) => format!("{}\n", pretty(other)),
    }
}

/// Messages for this turn, as a section that goes before the prompt ("" when there are none).
pub fn render_messages(messages: &[tutti_engine::harness::Inbound]) -> String {
    if messages.is_empty() {
        return String::new();
    }
    let lines: Vec<String> = messages
        .iter()
        .map(|m| match &m.body {
            Value::String(text) => format!("- from {}: {text}", m.from),
            other => format!("- from {}: {other}", m.from),
        })
        .collect();
    format!("Messages for you:\n{}\n\n", lines.join("\n"))
}

const KNOWN: [&str; 5] = ["role", "task", "context", "instructions", "outputFormat"];

fn render_fields(fields: &Map<String, Value>) -> String {
    let mut sections = Vec::new();
    let present = |key: &str| fields.get(key).filter(|v| !v.is_null());
    if let Some(role) = present("role") {
        sections.push(format!("Role: {}", inline(role)));
    }
    if let Some(task) = present("task") {
        sections.push(format!("Task: {}", inline(task)));
    }
    if let Some(context) = present("context") {
        sections.push(format!("Context:\n{}", block(context)));
    }
    if let Some(instructions) = present("instructions") {
        sections.push(format!("Instructions:\n{}", numbered(instructions)));
    }
    if let Some(format) = present("outputFormat") {
        sections.push(format!("Output format:\n{}", block(format)));
    }
    for (key, value) in fields.iter().filter(|(k, v)| !KNOWN.contains(&k.as_str()) && !v.is_null()) {
        sections.push(format!("{key}:\n{}", block(value)));
    }
    let mut text = sections.join("\n\n");
    text.push('\n');
    text
}

/// A string as it is, anything else as compact JSON.
fn inline(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A string as it is, anything else as indented JSON.
fn block(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => pretty(other),
    }
}

fn numbered(instructions: &Value) -> String {
    match instructions {
        Value::Array(items) => {
            let lines: Vec<String> =
                items.iter().enumerate().map(|(i, item)| format!("{}. {}", i + 1, inline(item))).collect();
            lines.join("\n")
        }
        other => block(other),
    }
}

fn pretty(value: &Value) -> String {
    // Serializing a Value cannot fail (its map keys are strings); fall back to compact form regardless.
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_string_prompt_is_used_as_it_is() {
        assert_eq!(render_prompt(&json!({"agent": {"prompt": "Fix the bug."}})), "Fix the bug.");
    }

    #[test]
    fn an_object_prompt_becomes_labelled_sections() {
        let task = json!({"agent": {"prompt": {
            "role": "reviewer",
            "task": "Review the diff",
            "context": {"files": ["a.rs"]},
            "instructions": ["Read it", "Comment"],
            "outputFormat": "JSON",
            "extra": 1,
        }}});
        let expected = "Role: reviewer\n\nTask: Review the diff\n\nContext:\n{\n  \"files\": [\n    \"a.rs\"\n  ]\n}\
                        \n\nInstructions:\n1. Read it\n2. Comment\n\nOutput format:\nJSON\n\nextra:\n1\n";
        assert_eq!(render_prompt(&task), expected);
    }

    #[test]
    fn a_skill_task_prompt_is_read_from_its_own_block() {
        let task = json!({"kind": "skill", "skill": {"name": "rag", "prompt": {"task": "Index it"}}});
        assert_eq!(render_prompt(&task), "Task: Index it\n");
    }

    #[test]
    fn missing_sections_are_left_out() {
        let task = json!({"agent": {"prompt": {"task": "Do it", "role": null}}});
        assert_eq!(render_prompt(&task), "Task: Do it\n");
    }

    #[test]
    fn without_an_agent_prompt_the_description_is_rendered_as_json() {
        let task = json!({"kind": "research", "topic": "x"});
        assert_eq!(render_prompt(&task), "{\n  \"kind\": \"research\",\n  \"topic\": \"x\"\n}\n");
    }
}
