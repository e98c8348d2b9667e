#!/usr/bin/env bash
# OTLP export against plain --json: N short-lived processes (default 50000,
# at most 64 outstanding, bench/loadgen.c) watched twice, once with
# `watch --json` to a file and once with `watch --otlp` to a real collector
# (rotel-agent with the blackhole exporter, as scripts/test.sh installs it;
# PROCEXIT_ROTEL_AGENT overrides). Prints, side by side: exits delivered
# per second (from the first fork until everything is written or posted,
# the end's flush included), procexit's CPU time per exit and the ratio.
# Usage: bench/otlp_bench.sh [N] [K]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50000}
K=${2:-64}
work=$(mktemp -d)
collector=
trap '[ -n "$collector" ] && kill "$collector" 2>/dev/null; rm -rf "$work"' EXIT
rotel=${PROCEXIT_ROTEL_AGENT:-$(ls "$HOME"/.cache/procexit-test/rotel-venv/lib/python3*/site-packages/rotel/rotel-agent 2>/dev/null | head -1)}
[ -x "$rotel" ] || { echo "no rotel-agent: run scripts/test.sh first or set PROCEXIT_ROTEL_AGENT" >&2; exit 1; }
cc -O2 -o "$work/loadgen" bench/loadgen.c
cargo build --release -q -p procexit-cli
bin=target/release/procexit
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
grpc=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$rotel" start --otlp-http-endpoint "127.0.0.1:$port" --otlp-grpc-endpoint "127.0.0.1:$grpc" \
  --exporter blackhole >"$work/rotel.log" 2>&1 &
collector=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

# $1 label, then watch's output options. Prints "label exits secs cpu_s written unwritten".
run() {
  local label=$1; shift
  "$bin" watch "$@" >"$work/$label.out" 2>"$work/$label.err" &
  local watcher=$!
  sleep 1
  local start end ticks
  start=$(date +%s.%N)
  "$work/loadgen" "$N" "$K" "$work/reaped"
  sleep 0.5
  # procexit's CPU time half a second after the last fork (the end's flush
  # after it is not counted).
  ticks=$(awk '{print $14 + $15}' "/proc/$watcher/stat")
  kill -INT "$watcher"
  wait "$watcher" || true
  end=$(date +%s.%N)
  echo "$label $start $end $ticks" >>"$work/runs"
}
run json --json
run otlp --otlp "http://127.0.0.1:$port"

python3 - "$work" "$N" "$(getconf CLK_TCK)" "$K" <<'PY'
import json, re, sys
work, n, hz, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rows = {}
for line in open(f"{work}/runs"):
    label, start, end, ticks = line.split()
    err = open(f"{work}/{label}.err").read()
    if label == "json":
        delivered = sum(1 for l in open(f"{work}/json.out") if l.startswith('{"type":"exit"'))
        unwritten = 0
    else:
        m = re.search(r"OTLP \S+: (\d+) records written, (\d+) could not be written", err)
        delivered, unwritten = (int(m.group(1)) - 1, int(m.group(2))) if m else (0, -1)
    secs = float(end) - float(start)
    rows[label] = (delivered, unwritten, secs, int(ticks) / hz)
print(f"{n} exits forked (at most {k} outstanding); delivered counts every exit of the machine")
print(f"{'':22} {'--json':>14} {'--otlp':>14} {'otlp/json':>10}")
(jd, _, js, jc), (od, ou, os_, oc) = rows["json"], rows["otlp"]
print(f"{'exits delivered':22} {jd:>14} {od:>14}")
print(f"{'not delivered':22} {0:>14} {ou:>14}")
print(f"{'exits/s delivered':22} {jd/js:>14,.0f} {od/os_:>14,.0f} {(od/os_)/(jd/js):>10.2f}")
print(f"{'CPU per exit (us)':22} {1e6*jc/max(1,jd):>14.2f} {1e6*oc/max(1,od):>14.2f} {(oc/max(1,od))/(jc/max(1,jd)):>10.2f}")
PY
