// The built-in module, imported as "tutti" and as "@a5c-ai/babysitter-sdk". The host evaluates it before any
// process code, lending it runtime.js's entry points on `__tutti_builtin`, a global it removes right after.
const { defineTask, globalTaskRegistry } = globalThis.__tutti_builtin;
export { defineTask, globalTaskRegistry };
export default { defineTask, globalTaskRegistry };
