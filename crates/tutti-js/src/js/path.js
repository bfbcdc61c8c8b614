// A pure `path` module (POSIX semantics), imported as "path" or "node:path"; it never touches the disk.
function normalizeParts(parts, absolute) {
  const out = [];
  for (const p of parts) {
    if (!p || p === ".") continue;
    if (p === "..") {
      if (out.length && out[out.length - 1] !== "..") out.pop();
      else if (!absolute) out.push("..");
    } else out.push(p);
  }
  return out;
}
export const sep = "/";
export const delimiter = ":";
export function normalize(p) {
  const absolute = p.startsWith("/");
  const trailing = p.endsWith("/") && p.length > 1;
  let s = normalizeParts(p.split("/"), absolute).join("/");
  if (!s && !absolute) s = ".";
  if (s && trailing) s += "/";
  return (absolute ? "/" : "") + s;
}
export function join(...parts) {
  const joined = parts.filter((p) => p !== "").join("/");
  return joined ? normalize(joined) : ".";
}
export function isAbsolute(p) {
  return p.startsWith("/");
}
export function resolve(...parts) {
  let acc = "";
  for (let i = parts.length - 1; i >= 0 && !acc.startsWith("/"); i--) acc = parts[i] + (acc ? "/" + acc : "");
  if (!acc.startsWith("/")) acc = "/" + acc;
  const s = normalize(acc);
  return s.length > 1 && s.endsWith("/") ? s.slice(0, -1) : s;
}
export function dirname(p) {
  if (!p) return ".";
  const trimmed = p.length > 1 ? p.replace(/\/+$/, "") : p;
  const i = trimmed.lastIndexOf("/");
  if (i < 0) return ".";
  if (i === 0) return "/";
  return trimmed.slice(0, i);
}
export function basename(p, ext) {
  const trimmed = p.length > 1 ? p.replace(/\/+$/, "") : p;
  let b = trimmed.slice(trimmed.lastIndexOf("/") + 1);
  if (ext && b.endsWith(ext) && b !== ext) b = b.slice(0, -ext.length);
  return b;
}
export function extname(p) {
  const b = basename(p);
  const i = b.lastIndexOf(".");
  return i <= 0 ? "" : b.slice(i);
}
export function relative(from, to) {
  const a = resolve(from).split("/").filter(Boolean);
  const b = resolve(to).split("/").filter(Boolean);
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return [...a.slice(i).map(() => ".."), ...b.slice(i)].join("/");
}
export function parse(p) {
  const base = basename(p);
  const ext = extname(p);
  return { root: p.startsWith("/") ? "/" : "", dir: dirname(p), base, ext, name: ext ? base.slice(0, -ext.length) : base };
}
export function format(o) {
  const dir = o.dir || o.root || "";
  const base = o.base || (o.name || "") + (o.ext || "");
  return dir ? (dir.endsWith("/") ? dir + base : dir + "/" + base) : base;
}
export const posix = { sep, delimiter, normalize, join, isAbsolute, resolve, dirname, basename, extname, relative, parse, format };
export default posix;
