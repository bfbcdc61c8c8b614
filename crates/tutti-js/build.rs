//! Compiles `src/js/runtime.js` to QuickJS bytecode with the very QuickJS tutti links, so that starting a
//! process reads bytecode instead of parsing 37 KB of JavaScript on every `tutti` command.

use std::ffi::CString;
use std::path::PathBuf;

use rquickjs::{CatchResultExt, Context, Runtime, Value, qjs};

fn main() {
    println!("cargo::rerun-if-changed=src/js/runtime.js");
    let source = std::fs::read("src/js/runtime.js").expect("read src/js/runtime.js");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo")).join("runtime.qjsbc");
    let runtime = Runtime::new().expect("a QuickJS runtime");
    let context = Context::full(&runtime).expect("a QuickJS context");
    let bytecode = context.with(|ctx| {
        let source = CString::new(source).expect("runtime.js holds no NUL byte");
        let flags = (qjs::JS_EVAL_TYPE_GLOBAL | qjs::JS_EVAL_FLAG_STRICT | qjs::JS_EVAL_FLAG_COMPILE_ONLY) as i32;
        let raw = ctx.as_raw().as_ptr();
        // SAFETY: compiling (not running) a NUL-terminated source in a live context; the function object is
        // serialized, then freed once, and the buffer QuickJS allocated is copied and freed with js_free.
        unsafe {
            let length = source.as_bytes().len();
            let function = qjs::JS_Eval(raw, source.as_ptr(), length as _, c"tutti:runtime".as_ptr(), flags);
            if qjs::JS_IsException(function) {
                let error = Err::<(), _>(rquickjs::Error::Exception).catch(&ctx);
                panic!("src/js/runtime.js does not compile: {error:?}");
            }
            let mut size = 0;
            // Without the source text (112 KB of bytecode become 28 KB, and reading it at every start costs
            // about 330,000 instructions less); the debug information stays, so runtime.js's frames keep their
            // `tutti:runtime:LINE:COL`, by which a request's call site skips them.
            let flags = qjs::JS_WRITE_OBJ_BYTECODE | qjs::JS_WRITE_OBJ_STRIP_SOURCE;
            let written = qjs::JS_WriteObject(raw, &mut size, function, flags as i32);
            drop(Value::from_raw(ctx.clone(), function));
            assert!(!written.is_null(), "QuickJS could not write runtime.js's bytecode");
            let bytes = std::slice::from_raw_parts(written, size as usize).to_vec();
            qjs::js_free(raw, written.cast());
            bytes
        }
    });
    std::fs::write(&out, bytecode).expect("write the bytecode to OUT_DIR");
}
