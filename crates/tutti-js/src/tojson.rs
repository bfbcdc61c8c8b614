//! JavaScript values straight to JSON values: an effect's arguments and task description become the
//! `serde_json::Value` that `JSON.parse(JSON.stringify(v))` would give, without building the text in
//! QuickJS and parsing it again in Rust (that round trip was most of a request's cost).
//!
//! Only plain data is walked: objects and arrays (any prototype, no `toJSON`), strings, booleans, `null`, and
//! numbers that are safe integers. Whatever `JSON.stringify` treats in a way of its own is left to it: the walk
//! gives up ([`None`]) on a `toJSON` method, a boxed primitive, a date, a proxy or any other class of object,
//! a BigInt, a number that is not a safe integer (its text is JavaScript's to choose), a string that does not
//! convert to UTF-8 as it is, nesting deeper than [`MAX_DEPTH`] (a cycle, perhaps), or a getter that throws.
//! The caller then takes the text path, so every value gets exactly the JSON it got before: arguments' digests,
//! and the replay of journals written before, do not change. A getter may run twice when the walk gives up.

use rquickjs::atom::PredefinedAtom;
use rquickjs::{Atom, Ctx, Object, Type, Value, qjs};
use serde_json::{Map, Number, Value as Json};

/// Deeper than this, the walk gives up and `JSON.stringify` decides (it reports cycles).
pub(crate) const MAX_DEPTH: u32 = 64;

/// The largest integer a double holds exactly (2^53 - 1): JavaScript prints such numbers as their digits.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// The QuickJS classes of a plain object (`{}`) and an array (`[]`), read once from a fresh one of each: the
/// class numbers are not in QuickJS's public header.
#[derive(Clone, Copy)]
pub(crate) struct Classes {
    object: qjs::JSClassID,
    array: qjs::JSClassID,
}

impl Classes {
    pub(crate) fn read(ctx: &Ctx<'_>) -> rquickjs::Result<Self> {
        let object = Object::new(ctx.clone())?;
        let array = rquickjs::Array::new(ctx.clone())?;
        Ok(Self { object: class_of(object.as_value()), array: class_of(array.as_value()) })
    }
}

fn class_of(value: &Value<'_>) -> qjs::JSClassID {
    // SAFETY: the value is alive (borrowed) for the call, which only reads its object's class number.
    unsafe { qjs::JS_GetClassID(value.as_raw()) }
}

/// `value` as `JSON.parse(JSON.stringify(value))` would make it, or `None` when `JSON.stringify` must decide.
/// A value `JSON.stringify` turns into `undefined` (a function, a symbol, `undefined`) is `null`, as it is
/// inside an array.
pub(crate) fn to_json<'js>(ctx: &Ctx<'js>, classes: Classes, value: &Value<'js>) -> Option<Json> {
    // Predefined atoms: no lookup by name.
    let to_json = Atom::from_predefined(ctx.clone(), PredefinedAtom::ToJSON);
    let length = Atom::from_predefined(ctx.clone(), PredefinedAtom::Length);
    let walker = Walker { classes, to_json, length };
    let result = walker.element(value, 0);
    if result.is_none() {
        // A getter that threw left its exception pending: the text path will meet it again and report it.
        let _ = ctx.catch();
    }
    result
}

struct Walker<'js> {
    classes: Classes,
    to_json: Atom<'js>,
    length: Atom<'js>,
}

/// What a value becomes inside its container.
enum Member {
    Json(Json),
    /// `undefined`, a function or a symbol: left out of an object, `null` in an array.
    Skipped,
}

impl<'js> Walker<'js> {
    /// An array element (or the value itself): skipped values are `null`.
    fn element(&self, value: &Value<'js>, depth: u32) -> Option<Json> {
        match self.member(value, depth)? {
            Member::Json(json) => Some(json),
            Member::Skipped => Some(Json::Null),
        }
    }

    fn member(&self, value: &Value<'js>, depth: u32) -> Option<Member> {
        let json = match value.type_of() {
            Type::Undefined | Type::Symbol | Type::Function | Type::Constructor => return Some(Member::Skipped),
            Type::Null => Json::Null,
            Type::Bool => Json::Bool(value.as_bool()?),
            Type::Int => Json::Number(Number::from(value.as_int()?)),
            Type::Float => number(value.as_float()?)?,
            Type::String => {
                let text = value.as_string()?.to_string().ok()?;
                // A lone surrogate may come out as U+FFFD; JSON.stringify writes it as an escape instead.
                if text.contains('\u{FFFD}') {
                    return None;
                }
                Json::String(text)
            }
            Type::Array | Type::Object => self.object(value, depth)?,
            _ => return None,
        };
        Some(Member::Json(json))
    }

    fn object(&self, value: &Value<'js>, depth: u32) -> Option<Json> {
        if depth >= MAX_DEPTH {
            return None;
        }
        let object = value.as_object()?;
        let class = class_of(value);
        if class != self.classes.object && class != self.classes.array {
            return None;
        }
        if object.get::<_, Value>(self.to_json.clone()).ok()?.type_of() != Type::Undefined {
            return None;
        }
        if class == self.classes.array {
            let length: u32 = object.get(self.length.clone()).ok()?;
            let mut items = Vec::with_capacity(length.min(1024) as usize);
            for index in 0..length {
                let item: Value = object.get(index).ok()?;
                items.push(self.element(&item, depth + 1)?);
            }
            return Some(Json::Array(items));
        }
        let mut fields = Map::new();
        for key in object.keys::<Atom>() {
            let key = key.ok()?;
            let item: Value = object.get(key.clone()).ok()?;
            if let Member::Json(json) = self.member(&item, depth + 1)? {
                fields.insert(key.to_string().ok()?, json);
            }
        }
        Some(Json::Object(fields))
    }
}

/// A double as its JSON text would parse: safe integers exactly (`-0` is `0`), `NaN` and the infinities as
/// `null`; any other number is left to JavaScript's own formatting.
fn number(x: f64) -> Option<Json> {
    if !x.is_finite() {
        return Some(Json::Null);
    }
    if x.fract() != 0.0 || x.abs() > MAX_SAFE_INTEGER {
        return None;
    }
    #[expect(clippy::cast_possible_truncation, reason = "a safe integer: |x| < 2^53, no fraction")]
    let int = x as i64;
    Some(Json::Number(Number::from(int)))
}

#[cfg(test)]
mod tests;
