//! Output schemas: an agent task's answer is checked against the task's `outputSchema` (or
//! `agent.outputSchema`) with a real JSON Schema validator. The driver gives a failing answer one
//! corrective turn in the same session before it turns it into a task error that carries the raw answer.

use serde_json::Value;

/// The output schema of an agent-like task, if it has a valid one. An invalid one (`type: "any"`) counts as
/// none: babysitter's library has such files, and they run there (see [`invalid`] for the warning).
pub(crate) fn of(kind: &crate::kind::Kind, task: &Value) -> Option<Value> {
    if !kind.is_agent_like() {
        return None;
    }
    declared(task).filter(|s| jsonschema::validator_for(s).is_ok()).cloned()
}

/// Where a task declares its output schema (valid or not): `agent.outputSchema`, the block named by its kind
/// (`skill.outputSchema` for a `skill` task), else `outputSchema`.
pub fn declared(task: &Value) -> Option<&Value> {
    schema_blocks(task).filter_map(|block| schema_in(task, block)).find(|s| s.is_object() || s.is_boolean())
}

/// The blocks that may hold a task's `outputSchema`, in the order they are looked at: `agent`, the block named by
/// its kind, then the task itself (`None`). No allocation: every dispatched effect asks.
fn schema_blocks(task: &Value) -> impl Iterator<Item = Option<&str>> {
    let kind = task.get("kind").and_then(Value::as_str).filter(|k| *k != "agent" && !k.contains(['/', '~']));
    [Some(Some("agent")), kind.map(Some), Some(None)].into_iter().flatten()
}

fn schema_in<'v>(task: &'v Value, block: Option<&str>) -> Option<&'v Value> {
    match block {
        Some(block) => task.get(block)?.get("outputSchema"),
        None => task.get("outputSchema"),
    }
}

/// Why an agent-like task's declared output schema is not a valid JSON Schema, if it is not.
pub(crate) fn invalid(kind: &crate::kind::Kind, task: &Value) -> Option<String> {
    if !kind.is_agent_like() {
        return None;
    }
    jsonschema::validator_for(declared(task)?).err().map(|e| e.to_string())
}

/// The task as a harness should see it: without an output schema that is not valid JSON Schema, so that no
/// agent is asked to fit one.
pub(crate) fn without_invalid(task: &Value) -> Value {
    let bad: Vec<Option<&str>> = schema_blocks(task)
        .filter(|block| {
            schema_in(task, *block)
                .is_some_and(|s| (s.is_object() || s.is_boolean()) && jsonschema::validator_for(s).is_err())
        })
        .collect();
    let mut cleaned = task.clone();
    for block in bad {
        let holder = match block {
            Some(block) => cleaned.get_mut(block),
            None => Some(&mut cleaned),
        };
        if let Some(Value::Object(fields)) = holder {
            fields.remove("outputSchema");
        }
    }
    cleaned
}

/// Why `value` does not fit `schema` (empty when it does). A schema that is itself invalid is reported as
/// such: a task cannot be held to a schema nobody can check.
pub(crate) fn violations(schema: &Value, value: &Value) -> Vec<String> {
    match jsonschema::validator_for(schema) {
        Ok(validator) => validator
            .iter_errors(value)
            .take(8)
            .map(|e| {
                // The rule's name, so that "does not match" says which rule: `pattern`, `enum`, `format`...
                let rule = e.kind().keyword().to_string();
                let at = e.instance_path().to_string();
                if at.is_empty() { format!("{e} (rule `{rule}`)") } else { format!("{at}: {e} (rule `{rule}`)") }
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
        let pattern = json!({"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"});
        let errors = violations(&pattern, &json!("string"));
        assert!(errors[0].ends_with("(rule `pattern`)") && errors[0].contains("^[A-Z]{3}-[0-9]+$"), "{errors:?}");
        assert_eq!(of(&crate::kind::Kind::Shell, &task), None);
    }

    #[test]
    fn an_invalid_schema_counts_as_none_and_says_why() {
        let agent = crate::kind::Kind::Agent;
        let task = json!({"kind": "agent", "outputSchema": {"type": "any"}, "agent": {"prompt": "x"}});
        assert_eq!(of(&agent, &task), None);
        assert!(invalid(&agent, &task).is_some_and(|why| why.contains("any")), "{:?}", invalid(&agent, &task));
        assert_eq!(without_invalid(&task), json!({"kind": "agent", "agent": {"prompt": "x"}}));
        let nested =
            json!({"agent": {"prompt": "x", "outputSchema": {"type": "any"}}, "outputSchema": {"type": "object"}});
        assert_eq!(without_invalid(&nested), json!({"agent": {"prompt": "x"}, "outputSchema": {"type": "object"}}));
        let fine = json!({"outputSchema": {"type": "object"}});
        assert_eq!((invalid(&agent, &fine), without_invalid(&fine)), (None, fine.clone()));
        let skill =
            json!({"kind": "skill", "skill": {"name": "x", "outputSchema": {"type": "object", "required": ["a"]}}});
        assert_eq!(of(&crate::kind::Kind::parse("skill"), &skill), Some(json!({"type": "object", "required": ["a"]})));
    }
}
