#!/usr/bin/env bash
# Burst benchmark of the Linux backend: N short-lived processes (default
# 100000, at most 64 outstanding), each exiting with status pid & 0xff.
# Prints how many exits procexit delivered, how many it counted as lost, how
# many were wrong, the fork rate and procexit's CPU time per exit.
# Usage: bench/linux_burst.sh [N] [K]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
K=${2:-64}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -o "$work/loadgen" bench/loadgen.c
cargo build --release -q -p procexit-cli
bin=target/release/procexit

"$bin" watch --json >"$work/exits.jsonl" 2>"$work/stderr" &
watcher=$!
sleep 1
start=$(date +%s.%N)
"$work/loadgen" "$N" "$K" "$work/reaped" &
gen=$!
wait "$gen"
end=$(date +%s.%N)
sleep 1
cpu_ticks=$(awk '{print $14 + $15}' "/proc/$watcher/stat")
kill -INT "$watcher"
wait "$watcher" || true

python3 - "$work" "$gen" "$N" "$start" "$end" "$cpu_ticks" "$(getconf CLK_TCK)" <<'PY'
import json, sys
from collections import Counter
work, gen, n, start, end, ticks, hz = sys.argv[1:]
gen, n = int(gen), int(n)
# pids wrap (pid_max 32768): compare multisets of (pid, status).
reaped = Counter()
for line in open(f"{work}/reaped"):
    pid, status = line.split()
    reaped[(int(pid), int(status))] += 1
seen, stats, markers = Counter(), {}, 0
for line in open(f"{work}/exits.jsonl"):
    o = json.loads(line)
    if o["type"] == "stats":
        stats = o
    elif o["type"] == "exit" and o["ppid"] == gen:
        seen[(o["pid"], o["exit_code"])] += 1
    elif o["type"] == "lost":
        markers += o["count"]
total = sum(reaped.values())
missing = sum((reaped - seen).values())
extra = sum((seen - reaped).values())
secs = float(end) - float(start)
cpu = int(ticks) / int(hz)
print(f"children reaped by the generator : {total} of {n}")
print(f"exits delivered by procexit      : {sum(seen.values())}")
print(f"missing                          : {missing} ({100*missing/max(1,total):.3f} %)")
print(f"wrong or unexpected records      : {extra}")
print(f"in-band lost markers (count)     : {markers}")
print(f"procexit stats                   : seen {stats.get('seen')} lost {stats.get('lost')} overruns {stats.get('overruns')} dropped {stats.get('dropped')}")
print(f"generator rate                   : {total/secs:,.0f} exits/s over {secs:.2f} s")
print(f"procexit CPU                     : {cpu:.2f} s = {1e6*cpu/max(1,stats.get('seen') or 1):.1f} us per exit (incl. JSON output)")
PY
