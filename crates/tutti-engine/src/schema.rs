//! Output schemas: an agent task's answer is checked against the task's `outputSchema` (or
//! `agent.outputSchema`) with a real JSON Schema validator. The driver gives a failing answer one
//! corrective turn in the same session before it turns it into a task error that carries the raw answer.

use serde_json::Value;

/// The output schema of an agent-like task, if it has one.
pub(crate) fn of(kind: &crate::kind::Kind, task: &Value) -> Option<Value> {
    if !kind.is_agent_like() {
        return None;
    }
    [task.pointer("/agent/outputSchema"), task.get("outputSchema")]
        .into_iter()
        .flatten()
        .find(|s| s.is_object() || s.is_boolean())
        .cloned()
}

/// Why `value` does not fit `schema` (empty when it does). A schema that is itself invalid is reported as
/// such: a task cannot be held to a schema nobody can check.
pub(crate) fn violations(schema: &Value, value: &Value) -> Vec<String> {
    match jsonschema::validator_for(schema) {
        Ok(validator) => validator
            .iter_errors(value)
            .take(8)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() { e.to_string() } else { format!("{at}: {e}") }
            })
            .collect(),
        Err(e) => vec![format!("the task's outputSchema is not a valid JSON Schema: {e}")],
    }
}

/// The follow-up prompt of the corrective turn.
pub(crate) fn correction(errors: &[String]) -> String {
    format!(
        "Your last answer does not match the required output schema:\n- {}\nReply again with only the corrected JSON value.",
        errors.join("\n- ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn agent_tasks_have_schemas_and_violations_name_the_field() {
        let task = json!({"agent": {"outputSchema": {"type": "object", "required": ["verdict"],
            "properties": {"verdict": {"type": "string"}}}}});
        let schema = of(&crate::kind::Kind::Agent, &task).unwrap();
        assert!(violations(&schema, &json!({"verdict": "ok"})).is_empty());
        let errors = violations(&schema, &json!({"verdict": 3}));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("/verdict:"), "{errors:?}");
        assert!(!violations(&schema, &json!({})).is_empty());
        assert_eq!(of(&crate::kind::Kind::Shell, &task), None);
    }
}
