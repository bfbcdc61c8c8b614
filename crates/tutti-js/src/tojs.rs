//! JSON values straight to JavaScript values: an effect's result becomes the value `JSON.parse` would make of
//! its text, without writing the text in Rust and parsing it again in QuickJS (a resume delivers every
//! journaled result again, one by one).
//!
//! What `JSON.parse` does, this does: properties are defined, not assigned (a key `__proto__` is an own
//! property, and setters a process put on `Object.prototype` or `Array.prototype` never run), keys keep their
//! order, and a number becomes the double its shortest text reads as.

use rquickjs::{Array, Ctx, Object, Value, qjs};
use serde_json::Value as Json;

/// Deeper than this, building gives up (journaled values are parsed by serde, which stops at 128 levels).
const MAX_DEPTH: u32 = 512;

/// `value` as `JSON.parse(JSON.stringify(value))` would make it in `ctx`.
pub(crate) fn to_js<'js>(ctx: &Ctx<'js>, value: &Json) -> rquickjs::Result<Value<'js>> {
    build(ctx, value, 0)
}

fn build<'js>(ctx: &Ctx<'js>, value: &Json, depth: u32) -> rquickjs::Result<Value<'js>> {
    if depth > MAX_DEPTH {
        return Err(rquickjs::Error::new_from_js_message("JSON value", "JavaScript value", "nested too deeply"));
    }
    Ok(match value {
        Json::Null => Value::new_null(ctx.clone()),
        Json::Bool(b) => Value::new_bool(ctx.clone(), *b),
        Json::Number(n) => match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
            Some(small) => Value::new_int(ctx.clone(), small),
            // `u64 as f64` and `i64 as f64` round to the nearest double, as reading their digits does.
            None => Value::new_float(ctx.clone(), n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => rquickjs::String::from_str(ctx.clone(), s)?.into_value(),
        Json::Array(items) => {
            let array = Array::new(ctx.clone())?;
            for (index, item) in items.iter().enumerate() {
                let item = build(ctx, item, depth + 1)?;
                let index = u32::try_from(index).map_err(|_| too_long())?;
                let raw = owned(ctx, item);
                // SAFETY: the array and the context are alive; JS_DefinePropertyValueUint32 takes ownership of
                // `raw`, also on failure.
                let defined = unsafe {
                    qjs::JS_DefinePropertyValueUint32(
                        ctx.as_raw().as_ptr(),
                        array.as_raw(),
                        index,
                        raw,
                        qjs::JS_PROP_C_W_E as i32,
                    )
                };
                if defined < 0 {
                    return Err(rquickjs::Error::Exception);
                }
            }
            array.into_value()
        }
        Json::Object(fields) => {
            let object = Object::new(ctx.clone())?;
            for (key, item) in fields {
                let item = build(ctx, item, depth + 1)?;
                let raw = owned(ctx, item);
                let c = ctx.as_raw().as_ptr();
                // SAFETY: the object and the context are alive. JS_NewAtomLen reads `key`'s bytes (UTF-8, any
                // byte allowed) and gives an atom this function frees; JS_DefinePropertyValue takes ownership
                // of `raw`, also on failure (then the atom is JS_ATOM_NULL and nothing is defined).
                let defined = unsafe {
                    let atom = qjs::JS_NewAtomLen(c, key.as_ptr().cast(), key.len() as _);
                    let defined = qjs::JS_DefinePropertyValue(c, object.as_raw(), atom, raw, qjs::JS_PROP_C_W_E as i32);
                    qjs::JS_FreeAtom(c, atom);
                    defined
                };
                if defined < 0 {
                    return Err(rquickjs::Error::Exception);
                }
            }
            object.into_value()
        }
    })
}

/// A reference to `value` for a QuickJS call that takes ownership of it (`value` itself is dropped: it also
/// holds the context).
fn owned(ctx: &Ctx<'_>, value: Value<'_>) -> qjs::JSValue {
    // SAFETY: the value is alive; the new reference is the caller's to hand over.
    unsafe { qjs::JS_DupValue(ctx.as_raw().as_ptr(), value.as_raw()) }
}

fn too_long() -> rquickjs::Error {
    rquickjs::Error::new_from_js_message("JSON array", "JavaScript array", "more than 2^32 - 1 items")
}

#[cfg(test)]
mod tests;
