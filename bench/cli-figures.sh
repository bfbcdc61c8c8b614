#!/usr/bin/env bash
# cli-figures.sh — the performance figures of the `tutti` binary as a user runs it, each in a fresh project.
#
# What it measures (each line of output names the figure, the command and the target of issue 14)
#   one-task     `tutti run` of a process with one `echo 1` shell task: wall time from exec to exit, median
#                of 30 runs in a warm project (its journal sealed), and of 15 runs each in a new project.
#   sleepers     1,000 concurrent `sleep 1` shell tasks with --max-parallel 1000: wall time and tutti's
#                peak RSS (GNU time's %M), best and median of 3.
#   chain        1,000 sequential `echo I` shell tasks: wall per step, fsyncs per step and threads created
#                per step (`strace -f -c`: fsync and clone3 calls, minus each child's own clone3 and minus a
#                zero-task run's), median wall of 3 without strace.
#   chain-load   the same chain while two busy loops are pinned to both cores (`taskset`), median of 3.
#   floor        the same 1,000 `sh -c 'echo I'` spawned and waited for from Python, one after another (its
#                own process group, piped output), quiet and under the same load: what no orchestrator beats.
#   binary       the size of the binary.
#
# Usage (from the repository root):  bench/cli-figures.sh   or   TUTTI=/path/to/tutti bench/cli-figures.sh
# Needs python3, strace, taskset and GNU time (/usr/bin/time). Run it on a quiet machine; the load average
# at the start is printed.

set -euo pipefail

TUTTI=${TUTTI:-target/release/tutti}
[[ -x $TUTTI ]] || { echo "cli-figures: no tutti binary at $TUTTI: cargo build --release -p tutti-cli, or set TUTTI" >&2; exit 1; }
TUTTI=$(realpath "$TUTTI")
for tool in python3 strace taskset /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "cli-figures: $tool is missing" >&2; exit 1; }
done

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cat >"$WORK/one.js" <<'JS'
import { defineTask } from "tutti";
const t = defineTask("one", () => ({ kind: "shell", title: "one", shell: { command: "echo 1" } }));
export async function process(inputs, ctx) { return (await ctx.task(t, {})).stdout.trim(); }
JS
cat >"$WORK/none.js" <<'JS'
export async function process(inputs, ctx) { return 0; }
JS
cat >"$WORK/chain.js" <<'JS'
import { defineTask } from "tutti";
const step = defineTask("step", (a) => ({ kind: "shell", title: "step", shell: { command: `echo ${a.i}` } }));
export async function process(inputs, ctx) {
  let last;
  for (let i = 0; i < inputs.n; i++) last = (await ctx.task(step, { i })).stdout.trim();
  return Number(last);
}
JS
cat >"$WORK/sleepers.js" <<'JS'
import { defineTask } from "tutti";
const nap = defineTask("nap", (a) => ({ kind: "shell", title: `nap ${a.i}`, shell: { command: "sleep 1" } }));
export async function process(inputs, ctx) {
  const items = Array.from({ length: inputs.n }, (_, i) => i);
  return (await ctx.parallel.map(items, (i) => ctx.task(nap, { i }))).length;
}
JS

echo "machine: $(nproc) cores, $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "binary: $TUTTI, $(stat -c %s "$TUTTI") bytes (target ≤ 25 MB)"

python3 - "$TUTTI" "$WORK" <<'PY'
import os, shutil, statistics, subprocess, sys, time
tutti, work = sys.argv[1], sys.argv[2]

def project(name):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    for f in ("one.js", "chain.js", "sleepers.js", "none.js"):
        shutil.copy(os.path.join(work, f), d)
    return d

def run(d, *args, check_out=None):
    t = time.perf_counter()
    r = subprocess.run([tutti, "run", *args], cwd=d, capture_output=True, text=True)
    took = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"cli-figures: tutti run {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    if check_out is not None and r.stdout.strip() != check_out:
        sys.exit(f"cli-figures: tutti run {' '.join(args)} printed {r.stdout.strip()!r}, not {check_out!r}")
    return took

warm = project("warm")
run(warm, "one.js", check_out='"1"')
ts = [run(warm, "one.js", check_out='"1"') for _ in range(30)]
fresh = [run(project(f"fresh{i}"), "one.js", check_out='"1"') for i in range(15)]
print(f"one-task: median {statistics.median(ts)*1e3:.1f} ms warm (min {min(ts)*1e3:.1f}), "
      f"{statistics.median(fresh)*1e3:.1f} ms in a new project (target ≤ 8 ms)")

rows = []
for i in range(3):
    d = project(f"sleepers{i}")
    r = subprocess.run(["/usr/bin/time", "-f", "%e %M", tutti, "run", "sleepers.js", "--inputs", '{"n":1000}',
                        "--max-parallel", "1000"], cwd=d, capture_output=True, text=True)
    if r.returncode != 0 or r.stdout.strip() != "1000":
        sys.exit(f"cli-figures: sleepers failed ({r.returncode}):\n{r.stderr[-2000:]}")
    wall, kb = r.stderr.strip().splitlines()[-1].split()
    rows.append((float(wall), int(kb) / 1024))
rows.sort()
print(f"sleepers: 1,000 × sleep 1: best {rows[0][0]:.2f} s, median {rows[1][0]:.2f} s wall; "
      f"peak RSS {max(r[1] for r in rows):.1f} MB (targets ≤ 2.0 s, ≤ 60 MB)")

def strace_counts(d, *args):
    out = os.path.join(d, "strace.txt")
    subprocess.run(["strace", "-f", "-c", "-o", out, "-e", "trace=fsync,fdatasync,clone3,clone", tutti, "run", *args],
                   cwd=d, capture_output=True, check=True)
    counts = {"fsync": 0, "clone": 0}
    for line in open(out):
        parts = line.split()
        if len(parts) >= 5 and parts[-1] in ("fsync", "fdatasync"):
            counts["fsync"] += int(parts[3])
        if len(parts) >= 5 and parts[-1] in ("clone3", "clone"):
            counts["clone"] += int(parts[3])
    return counts

n = 1000
d = project("chain")
base = strace_counts(d, "none.js")
counts = strace_counts(d, "chain.js", "--inputs", f'{{"n":{n}}}')
walls = sorted(run(project(f"chain{i}"), "chain.js", "--inputs", f'{{"n":{n}}}', check_out=str(n - 1)) for i in range(3))
fsyncs = (counts["fsync"] - base["fsync"]) / n
threads = (counts["clone"] - base["clone"] - n) / n
print(f"chain: {n} × echo: median {walls[1]/n*1e3:.2f} ms per step end to end; {fsyncs:.2f} fsyncs per step, "
      f"{threads:.3f} threads created per step beyond a zero-task run (targets ≤ 1.2 ms, 1 fsync, 0 threads)")

def floor():
    t = time.perf_counter()
    for i in range(n):
        subprocess.run(["/bin/sh", "-c", f"echo {i}"], capture_output=True, process_group=0, check=True)
    return (time.perf_counter() - t) / n * 1e3

quiet_floor = floor()
busy = [subprocess.Popen(["taskset", "-c", str(c), "sh", "-c", "while :; do :; done"]) for c in range(os.cpu_count() or 2)]
try:
    walls = sorted(run(project(f"load{i}"), "chain.js", "--inputs", f'{{"n":{n}}}', check_out=str(n - 1)) for i in range(3))
    load_floor = floor()
finally:
    for p in busy:
        p.kill()
print(f"chain-load: {n} × echo with {len(busy)} busy loops pinned to the cores: median {walls[1]/n*1e3:.2f} ms per step (target ≤ 3 ms)")
print(f"floor: {n} × sh -c echo from Python: {quiet_floor:.2f} ms per step quiet, {load_floor:.2f} ms under the same load")
PY
