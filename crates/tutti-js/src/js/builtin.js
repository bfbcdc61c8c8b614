// The built-in module, imported as "tutti" and as "@a5c-ai/babysitter-sdk".
export const defineTask = globalThis.__tutti_internal.defineTask;
export default { defineTask };
