#!/usr/bin/env bash
# babysitter-compare.sh — one process file, run by babysitter's CLI loop and by `tutti run`, back to back.
#
# What it measures
#   The wall time, end to end, to take the same process file from "no run" to "run completed":
#   - seq.js: 40 sequential `shell` tasks (`echo 0` … `echo 39`), each made with `defineTask` imported from
#     `@a5c-ai/babysitter-sdk` and awaited in a `for` loop; the process returns the 40 stdouts.
#   - babysitter 0.0.187 (npm package `@a5c-ai/babysitter-sdk`, which provides the `babysitter` CLI), driven
#     the way its orchestration instructions (`babysitter instructions:orchestrate`) tell an outer agent to:
#       babysitter run:create --process-id … --entry seq.js#process --inputs … --non-interactive --json
#       loop: babysitter run:iterate RUNDIR --json
#               completed -> stop; failed -> error;
#               waiting   -> for each pending shell effect in `nextActions`: run its `shell.command` with
#                            /bin/sh, then `babysitter task:post RUNDIR EFFECT --status ok --value-inline
#                            {success, exitCode, stdout, stderr}`; iterate again.
#     Babysitter never runs shell effects itself ("the orchestrating agent must execute that work and post
#     the result via task:post"), so a small Node driver plays the agent: it does nothing but spawn those
#     CLI commands and the shell commands. The time covers run:create through the completing run:iterate.
#     (`task:list --pending` is skipped: `run:iterate --json` already lists the pending effects.)
#   - tutti: `tutti run seq.js --json`, which replays, dispatches and journals everything in one process.
#   Each run then is checked: babysitter's run state must be `completed` with 40 EFFECT_RESOLVED events in
#   its journal, tutti's run `completed` with 40 effects ok (`tutti status --json`), and both outputs must
#   hold the stdouts "0" … "39" in order. Otherwise the script exits nonzero.
#
# Usage (from the repository root)
#   bench/babysitter-compare.sh
#   TUTTI=/path/to/tutti bench/babysitter-compare.sh
# Environment
#   TUTTI               tutti binary (default target/release/tutti; build it with
#                       `cargo build --release -p tutti-cli`)
#   TUTTI_BENCH_CACHE   where babysitter is npm-installed (default ~/.cache/tutti/babysitter); installed
#                       once from the npm registry, skipped when 0.0.187 is already there
#   TASKS               number of sequential tasks (default 40)
#   KEEP=1              keep the temporary work folder (both runs' journals) and print its path
# Needs: bash ≥ 5, node and npm (babysitter is a Node CLI). Run it on a quiet machine: the load average at
# start is printed with the figures; babysitter's side is dominated by Node start-up and journal replay, so
# a busy CPU slows it much more than tutti.

set -euo pipefail

BABYSITTER_VERSION=0.0.187
TASKS=${TASKS:-40}
CACHE=${TUTTI_BENCH_CACHE:-$HOME/.cache/tutti/babysitter}
TUTTI=${TUTTI:-target/release/tutti}

die() {
  echo "babysitter-compare: $*" >&2
  exit 1
}

[[ $TASKS =~ ^[1-9][0-9]*$ ]] || die "TASKS must be a positive integer, not '$TASKS'"
command -v node >/dev/null || die "node is not on PATH (babysitter is a Node CLI)"
command -v npm >/dev/null || die "npm is not on PATH (babysitter is installed from the npm registry)"
[[ -x $TUTTI ]] || die "no tutti binary at '$TUTTI': run 'cargo build --release -p tutti-cli' from the repository root, or set TUTTI=/path/to/tutti"
TUTTI="$(cd "$(dirname "$TUTTI")" && pwd)/$(basename "$TUTTI")"

now() {
  # Seconds since the epoch, microsecond resolution, without spawning a process.
  if [[ -n ${EPOCHREALTIME:-} ]]; then echo "${EPOCHREALTIME/,/.}"; else date +%s.%N; fi
}

loadavg() {
  if [[ -r /proc/loadavg ]]; then
    cut -d' ' -f1-3 /proc/loadavg
  else
    sysctl -n vm.loadavg 2>/dev/null | tr -d '{}' | xargs || uptime
  fi
}

LOAD_START=$(loadavg)

# --- babysitter from the npm registry, into the cache (once per version) -----------------------------------
SDK_PKG=$CACHE/node_modules/@a5c-ai/babysitter-sdk/package.json
installed=$(node -e 'try { console.log(require(process.argv[1]).version) } catch { }' "$SDK_PKG")
if [[ $installed != "$BABYSITTER_VERSION" ]]; then
  echo "babysitter-compare: installing @a5c-ai/babysitter-sdk@$BABYSITTER_VERSION into $CACHE" >&2
  mkdir -p "$CACHE"
  npm install --prefix "$CACHE" --no-audit --no-fund --no-save --loglevel=error \
    "@a5c-ai/babysitter-sdk@$BABYSITTER_VERSION" >&2
fi
BABYSITTER=$CACHE/node_modules/.bin/babysitter
[[ -x $BABYSITTER ]] || die "no babysitter CLI at $BABYSITTER after installing @a5c-ai/babysitter-sdk@$BABYSITTER_VERSION"
bs_version=$("$BABYSITTER" version)
[[ $bs_version == "$BABYSITTER_VERSION" ]] || die "babysitter reports version '$bs_version', expected $BABYSITTER_VERSION"

# --- the work folder: the process file, the babysitter driver, the checker ----------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tutti-babysitter-compare.XXXXXX")
if [[ ${KEEP:-0} == 1 ]]; then
  trap 'echo "babysitter-compare: kept $WORK" >&2' EXIT
else
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK/proc" "$WORK/babysitter" "$WORK/tutti"

# The process folder: an ES module package that resolves `@a5c-ai/babysitter-sdk` to the installed SDK (for
# babysitter, which imports the file with Node); tutti resolves that import to its built-in module.
ln -s "$CACHE/node_modules" "$WORK/proc/node_modules"
echo '{ "private": true, "type": "module" }' >"$WORK/proc/package.json"
echo "{ \"n\": $TASKS }" >"$WORK/inputs.json"

cat >"$WORK/proc/seq.js" <<'EOF'
import { defineTask } from "@a5c-ai/babysitter-sdk";

export const echo = defineTask("echo", (args, taskCtx) => ({
  kind: "shell",
  title: `echo ${args.i}`,
  shell: { command: `echo ${args.i}` },
}));

export async function process(inputs, ctx) {
  const n = (inputs && inputs.n) || 40;
  const stdouts = [];
  for (let i = 0; i < n; i++) {
    const result = await ctx.task(echo, { i });
    stdouts.push(String(result.stdout).trim());
  }
  return { tasks: stdouts.length, stdouts };
}
EOF

# The outer agent of babysitter's loop: run:create, then run:iterate / perform shell effects / task:post
# until the run completes. Prints {"runDir", "iterations", "posted"} on stdout.
cat >"$WORK/drive-babysitter.cjs" <<'EOF'
const { execFileSync, spawnSync } = require("node:child_process");
const [bin, runsDir, entry, inputs, tasks] = process.argv.slice(2);

function cli(args) {
  const out = execFileSync(bin, [...args, "--json"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 64 << 20,
  });
  try {
    return JSON.parse(out);
  } catch {
    throw new Error(`babysitter ${args[0]} printed no JSON:\n${out}`);
  }
}

const created = cli([
  "run:create", "--process-id", "seq", "--entry", `${entry}#process`,
  "--inputs", inputs, "--runs-dir", runsDir, "--non-interactive",
]);
const runDir = created.runDir;
let iterations = 0;
let posted = 0;
for (;;) {
  if (iterations > 2 * Number(tasks) + 10) throw new Error(`run not completed after ${iterations} iterations`);
  const it = cli(["run:iterate", runDir]);
  iterations++;
  if (it.status === "completed") break;
  if (it.status === "failed") throw new Error(`babysitter run failed: ${JSON.stringify(it)}`);
  if (it.status === "executed") continue; // a hook performed the effects
  const actions = it.nextActions || [];
  if (actions.length === 0) throw new Error(`run:iterate: status ${it.status} with nothing pending`);
  for (const action of actions) {
    const shell = action.taskDef && action.taskDef.shell;
    if (action.kind !== "shell" || !shell || typeof shell.command !== "string") {
      throw new Error(`unexpected pending effect: ${JSON.stringify(action)}`);
    }
    const args = Array.isArray(shell.args) ? shell.args : [];
    const r = spawnSync("/bin/sh", ["-c", `${shell.command} "$@"`, "sh", ...args], { encoding: "utf8" });
    const value = { success: r.status === 0, exitCode: r.status, stdout: r.stdout, stderr: r.stderr };
    cli(["task:post", runDir, action.effectId, "--status", "ok", "--value-inline", JSON.stringify(value)]);
    posted++;
  }
}
console.log(JSON.stringify({ runDir, iterations, posted }));
EOF

# check.cjs WHAT TASKS OUTPUT_JSON_FILE [RESOLVED_COUNT]: the output holds stdouts "0" … "TASKS-1".
cat >"$WORK/check.cjs" <<'EOF'
const fs = require("node:fs");
const [what, tasks, file, resolved] = process.argv.slice(2);
const n = Number(tasks);
const fail = (msg) => { console.error(`babysitter-compare: ${what}: ${msg}`); process.exit(1); };
let out;
try { out = JSON.parse(fs.readFileSync(file, "utf8")); } catch (e) { fail(`no output (${e.message})`); }
const want = Array.from({ length: n }, (_, i) => String(i));
if (!out || !Array.isArray(out.stdouts) || JSON.stringify(out.stdouts) !== JSON.stringify(want)) {
  fail(`output is not the ${n} stdouts "0" … "${n - 1}": ${JSON.stringify(out).slice(0, 300)}`);
}
if (resolved !== undefined && Number(resolved) !== n) fail(`${resolved} tasks resolved, expected ${n}`);
EOF

# --- warm-up: page in node, the SDK and tutti before timing either ------------------------------------------
"$BABYSITTER" version >/dev/null
"$TUTTI" --version >/dev/null

# --- babysitter ----------------------------------------------------------------------------------------------
echo "babysitter-compare: babysitter $BABYSITTER_VERSION, $TASKS sequential shell tasks ..." >&2
t0=$(now)
if ! (cd "$WORK/babysitter" && node "$WORK/drive-babysitter.cjs" "$BABYSITTER" "$WORK/babysitter/.a5c/runs" \
  "$WORK/proc/seq.js" "$WORK/inputs.json" "$TASKS") >"$WORK/babysitter.json" 2>"$WORK/babysitter.stderr"; then
  tail -n 20 "$WORK/babysitter.stderr" >&2
  die "babysitter's run did not complete"
fi
t1=$(now)
BS_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')

BS_RUN_DIR=$(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).runDir' "$WORK/babysitter.json")
BS_ITERATIONS=$(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).iterations' "$WORK/babysitter.json")
bs_state=$("$BABYSITTER" run:status "$BS_RUN_DIR" --json | node -e \
  'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).state))')
[[ $bs_state == completed ]] || die "babysitter's run is '$bs_state', not completed ($BS_RUN_DIR)"
bs_resolved=$(cat "$BS_RUN_DIR"/journal/*.json | grep -c '"type": *"EFFECT_RESOLVED"' || true)
node "$WORK/check.cjs" babysitter "$TASKS" "$BS_RUN_DIR/state/output.json" "$bs_resolved" ||
  die "babysitter's run did not complete all $TASKS tasks"

# --- tutti ---------------------------------------------------------------------------------------------------
echo "babysitter-compare: tutti run, the same file ..." >&2
t0=$(now)
if ! "$TUTTI" --home "$WORK/tutti" run "$WORK/proc/seq.js" --inputs "$WORK/inputs.json" --json \
  >"$WORK/tutti.json" 2>"$WORK/tutti.stderr"; then
  tail -n 20 "$WORK/tutti.stderr" >&2
  die "tutti's run did not complete"
fi
t1=$(now)
TUTTI_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')

TUTTI_RUN=$(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).runId' "$WORK/tutti.json")
"$TUTTI" --home "$WORK/tutti" status "$TUTTI_RUN" --json >"$WORK/tutti-status.json"
read -r tutti_state tutti_ok < <(node -e '
  const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log(s.status, (s.effects && s.effects.ok) || 0);' "$WORK/tutti-status.json")
[[ $tutti_state == completed ]] || die "tutti's run is '$tutti_state', not completed"
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  require("fs").writeFileSync(process.argv[2], JSON.stringify(r.output));' "$WORK/tutti.json" "$WORK/tutti-output.json"
node "$WORK/check.cjs" tutti "$TASKS" "$WORK/tutti-output.json" "$tutti_ok" ||
  die "tutti's run did not complete all $TASKS tasks"

# --- figures -------------------------------------------------------------------------------------------------
RATIO=$(awk -v a="$BS_SECONDS" -v b="$TUTTI_SECONDS" 'BEGIN { if (b > 0) printf "%.0f", a / b; else print "inf" }')
cpus=$(nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo "?")
echo "process:     $TASKS sequential shell tasks (seq.js, defineTask from @a5c-ai/babysitter-sdk)"
echo "machine:     $cpus CPUs, load average at start $LOAD_START (at end $(loadavg)); node $(node --version)"
echo "babysitter:  ${BS_SECONDS} s  ($bs_version, CLI loop: run:create + $BS_ITERATIONS run:iterate + $TASKS task:post)"
echo "tutti:       ${TUTTI_SECONDS} s  ($("$TUTTI" --version), tutti run)"
echo "ratio:       ${RATIO}x"
