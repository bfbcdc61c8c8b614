#!/usr/bin/env bash
# distributed.sh — effects per second through the PostgreSQL journal in distributed mode: one driver
# (`tutti run --remote`) and 1 or 3 `tutti worker` processes on this machine, each in a folder of its own, for
# no-op shell effects (`true`) and `sleep 0.1` effects; and, for comparison, the same runs driven locally on
# PostgreSQL and on the SQLite default.
#
# Usage (from the repository root):  bench/distributed.sh   or   TUTTI=/path/to/tutti bench/distributed.sh
# It starts a throwaway PostgreSQL cluster (.ci/postgres.sh) and stops it at the end. Each figure is the
# median of 3 runs, each in a fresh schema. Sizes: NOOP=1000 and SLEEP=300 effects, CAPACITY=16 per worker.

set -euo pipefail
cd "$(dirname "$0")/.."
TUTTI=${TUTTI:-target/release/tutti}
[[ -x $TUTTI ]] || { echo "distributed: no tutti binary at $TUTTI: cargo build --release -p tutti-cli, or set TUTTI" >&2; exit 1; }
TUTTI=$(realpath "$TUTTI")
NOOP=${NOOP:-1000}
SLEEP=${SLEEP:-300}
CAPACITY=${CAPACITY:-16}
source .ci/postgres.sh
WORK=$(mktemp -d)
trap 'pkill -f "tutti-bench-worker" 2>/dev/null || true; rm -rf "$WORK"; stop_postgres' EXIT

cat >"$WORK/fan.js" <<'JS'
import { defineTask } from "tutti";
const t = defineTask("t", (a) => ({ kind: "shell", title: `t${a.i}`, shell: { command: a.command } }));
export async function process(inputs, ctx) {
  const items = Array.from({ length: inputs.n }, (_, i) => i);
  return (await ctx.parallel.map(items, (i) => ctx.task(t, { i, command: inputs.command }))).length;
}
JS

echo "machine: $(nproc) cores, $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$TUTTI" "$WORK" "$PG_TEST_URL" "$NOOP" "$SLEEP" "$CAPACITY" <<'PY'
import os, shutil, statistics, subprocess, sys, time, uuid
tutti, work, base, noop, sleep, capacity = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])

def folder():
    d = os.path.join(work, uuid.uuid4().hex[:8])
    os.makedirs(d)
    shutil.copy(os.path.join(work, "fan.js"), d)
    return d

def one(workers, n, command, store):
    """Wall time of one run of n effects; workers=0 drives them locally."""
    url = f"{base}?options=-csearch_path%3Db_{uuid.uuid4().hex[:10]}" if store == "postgres" else None
    s = ["--store", url] if url else []
    procs = []
    for w in range(workers):
        procs.append(subprocess.Popen([tutti, *s, "worker", "--id", f"tutti-bench-worker-{w}", "--capacity", str(capacity)],
                                      cwd=folder(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        if workers:
            deadline = time.time() + 30
            while time.time() < deadline:
                out = subprocess.run([tutti, *s, "workers", "--json"], capture_output=True, text=True).stdout
                if len(out.splitlines()) == workers:
                    break
                time.sleep(0.05)
        args = [tutti, *s, "run", "fan.js", "--inputs", f'{{"n":{n},"command":"{command}"}}',
                "--max-parallel", str(max(capacity * max(workers, 1), 1))]
        if workers:
            args.append("--remote")
        t = time.perf_counter()
        r = subprocess.run(args, cwd=folder(), capture_output=True, text=True)
        took = time.perf_counter() - t
        if r.returncode != 0 or r.stdout.strip() != str(n):
            sys.exit(f"distributed: run failed ({r.returncode}): {r.stderr[-2000:]}")
        return took
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)

rows = [("no-op (true)", noop, "true"), ("sleep 0.1", sleep, "sleep 0.1")]
for label, n, command in rows:
    for workers, store in [(0, "sqlite"), (0, "postgres"), (1, "postgres"), (3, "postgres")]:
        walls = sorted(one(workers, n, command, store) for _ in range(3))
        where = f"{workers} worker(s), capacity {capacity} each" if workers else f"driven locally, --max-parallel {capacity}"
        print(f"{label:<13} {n:>5} effects, {store:<8} {where:<38} median {walls[1]:6.2f} s = {n / walls[1]:7.0f} effects/s"
              f"  (best {n / walls[0]:.0f}/s)")
PY
