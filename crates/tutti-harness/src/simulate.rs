//! `tutti run --simulate`: a harness that answers every job at once, without running anything. Agent tasks get
//! a canned answer (by task id, title or effect id) or the smallest value that fits their output schema or
//! `io.outputs` hints; shell and node tasks get a successful result with empty output; merges report merged.
//! It stands in for every harness of the project under its name, so routing reads the same as in a real run.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tutti_engine::harness::Error;
use tutti_engine::{Harness, Job, Kind, Outcome, Reporter, Running};
use tutti_journal::ErrorInfo;

use crate::echo::Done;

/// Answers given in advance (`--simulate=FILE`): a JSON object from task id, title or effect id to the value
/// to answer with. `{"$error": {"name", "message"}}` makes that task fail instead.
#[derive(Clone, Debug, Default)]
pub struct Canned(BTreeMap<String, Value>);

impl Canned {
    /// Read a canned-answers file; the error names the file and what is wrong with it.
    pub fn load(path: &Path) -> Result<Canned, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("--simulate file {}: {e}", path.display()))?;
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(answers)) => Ok(Canned(answers.into_iter().collect())),
            Ok(_) => Err(format!(
                "--simulate file {}: must be a JSON object from task id or title to the answer",
                path.display()
            )),
            Err(e) => Err(format!("--simulate file {}: not valid JSON: {e}", path.display())),
        }
    }

    fn answer_for(&self, job: &Job) -> Option<&Value> {
        let keys = [Some(job.task_id.as_str()), job.title.as_deref(), Some(job.effect.as_str())];
        keys.into_iter().flatten().find_map(|k| self.0.get(k))
    }
}

/// One project harness, simulated.
pub struct Simulated {
    name: String,
    capabilities: Vec<String>,
    canned: Arc<Canned>,
}

impl Simulated {
    pub fn new(name: &str, capabilities: Vec<String>, canned: Arc<Canned>) -> Self {
        Self { name: name.to_string(), capabilities, canned }
    }

    /// What `job` is answered with.
    pub fn outcome(&self, job: &Job) -> Outcome {
        if let Some(value) = self.canned.answer_for(job) {
            return match value.get("$error") {
                Some(e) => {
                    let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    let name = Some(text("name")).filter(|n| !n.is_empty()).unwrap_or_else(|| "Error".into());
                    Err(ErrorInfo::new(name, text("message")).into())
                }
                None => Ok(value.clone()),
            };
        }
        Ok(match &job.kind {
            Kind::Shell | Kind::Node => json!({ "success": true, "exitCode": 0, "stdout": "", "stderr": "" }),
            Kind::Merge => json!({ "status": "merged", "branch": job.args.get("branch"), "commit": null }),
            _ => smallest_answer(&job.task),
        })
    }
}

impl Harness for Simulated {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_pure(&self) -> bool {
        true
    }

    fn capabilities(&self) -> Vec<String> {
        self.capabilities.clone()
    }

    fn start(&self, job: Job, reporter: Reporter) -> Result<Box<dyn Running>, Error> {
        reporter.finish(self.outcome(&job));
        Ok(Box::new(Done))
    }
}

/// The smallest answer an agent task could give: from its output schema, else its `io.outputs` hints, else `{}`.
pub fn smallest_answer(task: &Value) -> Value {
    let schema = tutti_engine::output_schema(task).filter(|s| s.is_object() && jsonschema::validator_for(s).is_ok());
    if let Some(schema) = schema {
        return smallest(schema, schema, 0);
    }
    match task.pointer("/io/outputs") {
        Some(Value::Object(hints)) => {
            Value::Object(hints.iter().map(|(k, hint)| (k.clone(), from_hint(hint))).collect())
        }
        _ => json!({}),
    }
}

/// A value for an `io.outputs` hint: a type name (`"string"`, `"number[]"`...) or a small schema.
fn from_hint(hint: &Value) -> Value {
    match hint {
        Value::String(t) if t.ends_with("[]") => json!([]),
        Value::String(t) => match t.to_ascii_lowercase().as_str() {
            "number" | "integer" => json!(0),
            "boolean" => json!(false),
            "array" => json!([]),
            "object" => json!({}),
            _ => json!(""),
        },
        Value::Object(_) => smallest(hint, hint, 0),
        _ => Value::Null,
    }
}

/// The smallest value that fits `schema` as far as its common keywords go: `const`, `enum`, `default`, the first
/// of `oneOf`/`anyOf`/`allOf`, `$ref` within the schema, and by type: `""` padded to `minLength` (or a
/// sample for a known `format`), `minimum` or 0, `false`, `minItems` items, and an object with every declared
/// property at its smallest (process code reads optional fields too). A `pattern` is not generated.
fn smallest(schema: &Value, root: &Value, depth: usize) -> Value {
    let Value::Object(s) = schema else { return Value::Null };
    if depth > 24 {
        return Value::Null;
    }
    let next = |sub: &Value| smallest(sub, root, depth + 1);
    if let Some(target) = s.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
        return root.pointer(target).map_or(Value::Null, next);
    }
    if let Some(v) = s.get("const").or_else(|| s.get("enum").and_then(|e| e.get(0))).or_else(|| s.get("default")) {
        return v.clone();
    }
    for combined in ["oneOf", "anyOf", "allOf"] {
        if let Some(first) = s.get(combined).and_then(|c| c.get(0)) {
            return next(first);
        }
    }
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let kind = types.iter().copied().find(|t| *t != "null").or(types.first().copied());
    let kind = kind.unwrap_or(if s.contains_key("items") { "array" } else { "object" });
    match kind {
        "null" => Value::Null,
        "boolean" => json!(false),
        "integer" | "number" => number(s, kind == "integer"),
        "string" => string(s),
        "array" => {
            let n = s.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
            match s.get("items") {
                Some(Value::Array(tuple)) => Value::Array(tuple.iter().map(next).collect()),
                Some(item) => Value::Array((0..n).map(|_| next(item)).collect()),
                None => Value::Array(vec![Value::Null; n]),
            }
        }
        _ => {
            let mut out = Map::new();
            for (key, sub) in s.get("properties").and_then(Value::as_object).into_iter().flatten() {
                out.insert(key.clone(), next(sub));
            }
            for key in s.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                out.entry(key.to_string()).or_insert_with(|| json!(""));
            }
            Value::Object(out)
        }
    }
}

fn number(s: &Map<String, Value>, integer: bool) -> Value {
    let bound = |k: &str| s.get(k).and_then(Value::as_f64);
    let step = if integer { 1.0 } else { 0.5 };
    let low = bound("minimum").or(bound("exclusiveMinimum").map(|m| m + step));
    let high = bound("maximum").or(bound("exclusiveMaximum").map(|m| m - step));
    let v = match (low, high) {
        (Some(l), _) => l,
        (None, Some(h)) if h < 0.0 => h,
        _ => 0.0,
    };
    let v = if integer { v.ceil() } else { v };
    if v.fract() == 0.0 && v.abs() < 9.0e15 { json!(v as i64) } else { json!(v) }
}

fn string(s: &Map<String, Value>) -> Value {
    let sample = match s.get("format").and_then(Value::as_str) {
        Some("date-time") => "1970-01-01T00:00:00Z",
        Some("date") => "1970-01-01",
        Some("time") => "00:00:00Z",
        Some("email") => "a@example.com",
        Some("uri" | "url" | "iri") => "https://example.com/",
        Some("uuid") => "00000000-0000-0000-0000-000000000000",
        Some("ipv4") => "127.0.0.1",
        _ => "",
    };
    let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
    let mut text = sample.to_string();
    while text.chars().count() < min {
        text.push('x');
    }
    Value::String(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::job;

    fn fits(schema: Value) -> Value {
        let value = smallest(&schema, &schema, 0);
        let validator = jsonschema::validator_for(&schema).expect("a valid schema");
        assert!(validator.is_valid(&value), "{value} does not fit {schema}");
        value
    }

    #[test]
    fn the_smallest_answer_fits_its_schema() {
        let schema = json!({
            "type": "object", "required": ["verdict", "score", "tags", "when", "kind"],
            "properties": {
                "verdict": { "type": "string", "minLength": 3 }, "score": { "type": "integer", "minimum": 1, "maximum": 5 },
                "tags": { "type": "array", "items": { "type": "string" }, "minItems": 2 },
                "when": { "type": "string", "format": "date-time" }, "kind": { "enum": ["bug", "feature"] },
                "note": { "type": ["string", "null"] }, "ratio": { "type": "number", "exclusiveMinimum": 0 },
                "item": { "$ref": "#/$defs/item" }, "either": { "oneOf": [{ "type": "boolean" }, { "type": "string" }] }
            },
            "$defs": { "item": { "type": "object", "properties": { "id": { "type": "integer" } }, "required": ["id"] } }
        });
        let value = fits(schema);
        assert_eq!(value["verdict"], "xxx");
        assert_eq!((value["score"].clone(), value["tags"].clone()), (json!(1), json!(["", ""])));
        assert_eq!((value["kind"].clone(), value["item"].clone()), (json!("bug"), json!({ "id": 0 })));
        assert_eq!((value["note"].clone(), value["either"].clone()), (json!(""), json!(false)));
        assert_eq!(fits(json!({ "type": "array" })), json!([]));
        assert_eq!(fits(json!({ "type": "integer", "maximum": -3 })), json!(-3));
    }

    #[test]
    fn io_hints_and_no_schema_give_an_object() {
        let task = json!({ "io": { "outputs": { "summary": "string", "files": "string[]", "count": "number" } } });
        assert_eq!(smallest_answer(&task), json!({ "summary": "", "files": [], "count": 0 }));
        assert_eq!(smallest_answer(&json!({ "kind": "agent" })), json!({}));
        let invalid = json!({ "outputSchema": { "type": "any" } });
        assert_eq!(smallest_answer(&invalid), json!({}), "an invalid schema counts as none");
        let skill = json!({ "kind": "skill", "skill": { "name": "s", "outputSchema": {
            "type": "object", "required": ["artifacts"], "properties": { "artifacts": { "type": "array" } } } } });
        assert_eq!(smallest_answer(&skill), json!({ "artifacts": [] }), "a skill's schema is in its own block");
    }

    #[test]
    fn canned_answers_go_by_task_id_then_title_and_may_fail() {
        let canned = Canned(
            [
                ("review".to_string(), json!({ "ok": 1 })),
                ("Deploy".to_string(), json!({ "$error": { "message": "no" } })),
            ]
            .into_iter()
            .collect(),
        );
        let h = Simulated::new("claude", vec![], Arc::new(canned));
        let dir = std::path::Path::new("/");
        let mut j = job("agent", json!({ "kind": "agent" }), json!({}), dir);
        j.task_id = "review".into();
        assert_eq!(h.outcome(&j), Ok(json!({ "ok": 1 })));
        j.task_id = "deploy-task".into();
        j.title = Some("Deploy".into());
        assert_eq!(h.outcome(&j).map_err(|e| e.error().message.clone()), Err("no".to_string()));
        let shell = job("shell", json!({ "kind": "shell", "shell": { "command": "rm -rf /" } }), json!({}), dir);
        assert_eq!(h.outcome(&shell), Ok(json!({ "success": true, "exitCode": 0, "stdout": "", "stderr": "" })));
    }
}
