//! The walk against `JSON.parse(JSON.stringify(v))`: where it walks, it must give exactly that value; where it
//! gives up, the text path decides.

use proptest::prelude::*;
use rquickjs::{CatchResultExt, Context, Runtime, Value};
use serde_json::Value as Json;

use super::{Classes, to_json};

/// For each JavaScript expression: what the walk gives, and what the text path gives.
fn both(expressions: &[&str]) -> Vec<(Option<Json>, Option<Json>)> {
    let runtime = Runtime::new().unwrap();
    let context = Context::full(&runtime).unwrap();
    context.with(|ctx| {
        let classes = Classes::read(&ctx).unwrap();
        expressions
            .iter()
            .map(|source| {
                let value: Value = ctx.eval(format!("({source})")).catch(&ctx).unwrap();
                let walked = to_json(&ctx, classes, &value);
                assert!(!ctx.has_exception(), "{source}: the walk left an exception pending");
                let stringify: rquickjs::Function = ctx.eval("(v) => JSON.stringify([v])").unwrap();
                let text: String = stringify.call((value,)).catch(&ctx).unwrap();
                // A lone surrogate's escape is not JSON serde reads: that request fails either way.
                let expected = serde_json::from_str::<Json>(&text).ok().map(|mut v| v[0].take());
                (walked, expected)
            })
            .collect()
    })
}

#[test]
fn plain_data_is_walked_to_what_json_stringify_gives() {
    let walked = [
        "null",
        "true",
        "0",
        "-0",
        "42",
        "-7",
        "2 ** 31",
        "2 ** 53 - 1",
        "-(2 ** 53 - 1)",
        "3 * 1.0",
        "NaN",
        "-Infinity",
        "undefined",
        "() => 1",
        "Symbol('s')",
        r#""é \u2028 \"quoted\" \\ \n \u0001 😀""#,
        "[1, undefined, function () {}, Symbol('s'), , 3]",
        "{ a: 1, b: undefined, c: () => 1, [Symbol('k')]: 1, 2: 'x', 1: 'y', '': 'empty' }",
        "{ nested: { deeper: [{ x: [[]] }, {}] }, list: [null, false, 'x'] }",
        "new (class Point { constructor() { this.x = 1; this.y = -2; } })()",
        "Object.assign(Object.create(null), { a: 1 })",
        "Object.defineProperty({ seen: 1 }, 'hidden', { value: 2, enumerable: false })",
        "{ get computed() { return [5, 'five']; } }",
        r#"JSON.parse('{"__proto__": 1, "constructor": 2}')"#,
        "Array.from({ length: 50 }, (_, i) => ({ i, name: 'item' + i }))",
    ];
    for (source, (walked, expected)) in walked.iter().zip(both(&walked)) {
        assert!(walked.is_some() && walked == expected, "{source}: walked {walked:?}, text {expected:?}");
    }
}

#[test]
fn what_json_stringify_treats_its_own_way_is_left_to_it() {
    let left = [
        "0.5",
        "2 ** 53",
        "1e21",
        "-1e-7",
        "new Date(0)",
        "{ toJSON() { return 1; } }",
        "{ toJSON: 5 }",
        "{ inner: { toJSON() { return 'x'; } } }",
        "new Number(3)",
        "new String('s')",
        "new Boolean(false)",
        "[new Map([[1, 2]])]",
        "new Proxy({ a: 1 }, {})",
        "new Error('e')",
        "Promise.resolve(1)",
        r#""lone \ud800 surrogate""#,
        "{ deep: JSON.parse('['.repeat(100) + ']'.repeat(100)) }",
        "(() => { const a = { n: 1 }; a.self = { back: [a] }; return [1, 2]; })()",
    ];
    for (source, (walked, _)) in left.iter().zip(both(&left)) {
        // The last one is plain: it shows the list is not just refused wholesale.
        if *source == left[left.len() - 1] {
            assert!(walked.is_some(), "{source}");
        } else {
            assert_eq!(walked, None, "{source}");
        }
    }
}

#[test]
fn a_cycle_or_a_throwing_getter_gives_up_and_leaves_no_exception_pending() {
    let runtime = Runtime::new().unwrap();
    let context = Context::full(&runtime).unwrap();
    context.with(|ctx| {
        let classes = Classes::read(&ctx).unwrap();
        for source in
            ["(() => { const a = {}; a.self = a; return a; })()", "({ get bad() { throw new Error('no'); } })"]
        {
            let value: Value = ctx.eval(source).unwrap();
            assert_eq!(to_json(&ctx, classes, &value), None, "{source}");
            assert!(!ctx.has_exception(), "{source}");
            let after: i32 = ctx.eval("1 + 1").unwrap();
            assert_eq!(after, 2);
        }
    });
}

fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(Json::from),
        any::<i32>().prop_map(Json::from),
        (-1e6f64..1e6).prop_map(Json::from),
        "\\PC{0,12}".prop_map(Json::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            proptest::collection::btree_map("[a-z0-9_]{0,6}", inner, 0..6)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn parsed_json_walks_to_what_json_stringify_gives(value in json_value()) {
        let source = format!("JSON.parse({})", serde_json::to_string(&value.to_string()).unwrap());
        let (walked, expected) = both(&[&source]).remove(0);
        let text = value.to_string();
        if walked.is_some() {
            prop_assert_eq!(walked, expected);
        } else {
            // Only numbers with a fraction, and strings holding U+FFFD (it might stand for a lone surrogate).
            prop_assert!(text.contains('.') || text.contains('e') || text.contains('\u{FFFD}'), "left to the text path: {}", text);
        }
    }
}
