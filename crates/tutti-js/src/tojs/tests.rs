//! The build against `JSON.parse` of serde's text: the same values, property by property.

use proptest::prelude::*;
use rquickjs::{CatchResultExt, Context, Function, Runtime, Value};
use serde_json::{Value as Json, json};

use super::to_js;

/// Compares two JavaScript values as `JSON.parse` makes them: the same primitives (`Object.is`, so `-0` is
/// not `0`), the same prototypes, the same own keys in the same order, with the same descriptors.
const SAME: &str = r#"(function same(a, b, at) {
  if (typeof a !== typeof b) return `${at}: ${typeof a} against ${typeof b}`;
  if (a === null || typeof a !== "object") return Object.is(a, b) ? "" : `${at}: ${String(a)} against ${String(b)}`;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return `${at}: another prototype`;
  const ka = Reflect.ownKeys(a), kb = Reflect.ownKeys(b);
  if (ka.join("\u0001") !== kb.join("\u0001")) return `${at}: keys [${ka}] against [${kb}]`;
  for (const k of ka) {
    const da = Object.getOwnPropertyDescriptor(a, k), db = Object.getOwnPropertyDescriptor(b, k);
    if (da.writable !== db.writable || da.enumerable !== db.enumerable || da.configurable !== db.configurable)
      return `${at}.${k}: another descriptor`;
    const d = same(da.value, db.value, `${at}.${k}`);
    if (d) return d;
  }
  return "";
})"#;

/// For each value: "" when the build and `JSON.parse` agree, else where they differ.
fn differences(values: &[Json], prelude: &str) -> Vec<String> {
    let runtime = Runtime::new().unwrap();
    let context = Context::full(&runtime).unwrap();
    context.with(|ctx| {
        let _: Value = ctx.eval(prelude).catch(&ctx).unwrap();
        let same: Function = ctx.eval(SAME).catch(&ctx).unwrap();
        let parse: Function = ctx.eval("(text) => JSON.parse(text)").unwrap();
        values
            .iter()
            .map(|v| {
                let built = to_js(&ctx, v).catch(&ctx).unwrap();
                let parsed: Value = parse.call((v.to_string(),)).catch(&ctx).unwrap();
                same.call::<_, String>((built, parsed, "value")).catch(&ctx).unwrap()
            })
            .collect()
    })
}

#[test]
fn values_are_built_as_json_parse_makes_them() {
    let values = [
        json!(null),
        json!(true),
        json!(0),
        json!(-0.0),
        json!(42),
        json!(-7),
        json!(2147483647),
        json!(2147483648u64),
        json!(-2147483649i64),
        json!(9007199254740993u64),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(0.1),
        json!(1e300),
        json!(5e-324),
        json!(3.0),
        json!("é \u{2028} \"quoted\" \\ \n \u{0} 😀"),
        json!([]),
        json!({}),
        json!([1, [2, [3, []]], {"a": [null]}]),
        json!({"b": 1, "a": 2, "2": "x", "1": "y", "": "empty", "__proto__": {"p": 1}, "constructor": 3}),
        json!({"nested": {"deeper": [{"x": [[]]}, {}]}, "list": [null, false, "x"]}),
    ];
    let found = differences(&values, "0");
    for (value, difference) in values.iter().zip(&found) {
        assert_eq!(difference, "", "{value}");
    }
}

#[test]
fn setters_a_process_put_on_the_prototypes_do_not_run() {
    let prelude = r#"
        Object.defineProperty(Object.prototype, "x", { set() { throw new Error("setter ran"); }, configurable: true });
        Object.defineProperty(Array.prototype, "0", { set() { throw new Error("setter ran"); }, configurable: true });
        0"#;
    let values = [json!({"x": 1}), json!([1, 2])];
    assert_eq!(differences(&values, prelude), ["", ""]);
}

fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(|x| json!(x)),
        ".{0,8}".prop_map(Json::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            proptest::collection::btree_map(".{0,6}", inner, 0..6).prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_values_are_built_as_json_parse_makes_them(value in json_value()) {
        prop_assert_eq!(differences(std::slice::from_ref(&value), "0"), [""]);
    }
}
