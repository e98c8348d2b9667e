#!/usr/bin/env bash
# procexit's eBPF source against libbpf-tools' exitsnoop, side by side in one
# run on the same burst: both watch while bench/loadgen forks N short-lived
# children (at most K outstanding, as fast as the machine goes), each
# exiting with status pid & 0xff. Prints, per tool, the children it
# reported (checked exit by exit against the generator's own list), what it
# said it lost, and its CPU time per exit (user + system of the tool's
# process, from /proc). Both write to a file.
#
# Needs root. Installs libbpf-tools (apt) when missing and mounts tracefs
# when it is not mounted (exitsnoop attaches a classic tracepoint).
# Usage: bench/ebpf_vs_exitsnoop.sh [N] [K]     (default 100000 64)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
K=${2:-64}
if [ "$(id -u)" != 0 ]; then
  echo "ebpf_vs_exitsnoop: run as root (both tools load BPF programs)" >&2
  exit 1
fi
if ! command -v exitsnoop >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libbpf-tools >/dev/null
fi
if [ ! -d /sys/kernel/tracing/events ]; then
  mount -t tracefs tracefs /sys/kernel/tracing
fi
work=$(mktemp -d)
watchers=()
cleanup() {
  for p in "${watchers[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cc -O2 -o "$work/loadgen" bench/loadgen.c
cargo build --release -q -p procexit-cli
bin=target/release/procexit

"$bin" watch --source ebpf --json >"$work/procexit.jsonl" 2>"$work/procexit.err" &
procexit_pid=$!
exitsnoop >"$work/exitsnoop.txt" 2>"$work/exitsnoop.err" &
exitsnoop_pid=$!
watchers=("$procexit_pid" "$exitsnoop_pid")
sleep 2

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
p0=$(cpu_ticks "$procexit_pid")
e0=$(cpu_ticks "$exitsnoop_pid")
start=$(date +%s.%N)
"$work/loadgen" "$N" "$K" "$work/reaped" &
gen=$!
wait "$gen"
end=$(date +%s.%N)
sleep 2
p1=$(cpu_ticks "$procexit_pid")
e1=$(cpu_ticks "$exitsnoop_pid")
kill -INT "$procexit_pid" "$exitsnoop_pid"
wait "$procexit_pid" || true
wait "$exitsnoop_pid" || true
watchers=()

python3 - "$work" "$gen" "$N" "$start" "$end" "$((p1 - p0))" "$((e1 - e0))" "$(getconf CLK_TCK)" <<'PY'
import json, sys
from collections import Counter
work, gen, n, start, end, p_ticks, e_ticks, hz = sys.argv[1:]
gen, n, hz = int(gen), int(n), int(hz)
# pids wrap (pid_max 32768): compare multisets of (pid, status).
reaped = Counter()
for line in open(f"{work}/reaped"):
    pid, status = line.split()
    reaped[(int(pid), int(status))] += 1
total = sum(reaped.values())

pe, stats, lost_markers = Counter(), {}, 0
for line in open(f"{work}/procexit.jsonl"):
    o = json.loads(line)
    if o["type"] == "stats":
        stats = o
    elif o["type"] == "exit" and o["ppid"] == gen:
        pe[(o["pid"], o["exit_code"])] += 1
    elif o["type"] == "lost":
        lost_markers += o["count"]

# exitsnoop: PCOMM PID PPID TID AGE(s) EXIT_CODE, the code as "0",
# "code N" or "signal N (name)".
ee = Counter()
for line in open(f"{work}/exitsnoop.txt"):
    f = line.split()
    if len(f) < 6 or not f[1].isdigit() or int(f[2]) != gen:
        continue
    code = 0 if f[5] == "0" else int(f[6]) if f[5] == "code" and len(f) > 6 else -1
    ee[(int(f[1]), code)] += 1

secs = float(end) - float(start)
print(f"burst: {total} of {n} children reaped at {total/secs:,.0f} exits/s ({secs:.2f} s)")
print(f"{'':26}{'procexit --source ebpf':>24}{'exitsnoop':>14}")
def row(name, a, b):
    print(f"{name:26}{a:>24}{b:>14}")
row("children reported", sum(pe.values()), sum(ee.values()))
row("missing", sum((reaped - pe).values()), sum((reaped - ee).values()))
row("wrong or unexpected", sum((pe - reaped).values()), sum((ee - reaped).values()))
row("loss it reported", f"{stats.get('lost')} (+{lost_markers} in-band)", "-")
p_cpu, e_cpu = int(p_ticks) / hz, int(e_ticks) / hz
# Per exit of the whole machine during the burst (both saw every exit).
p_seen = stats.get("seen") or total
row("CPU during the burst", f"{p_cpu:.2f} s", f"{e_cpu:.2f} s")
row("CPU per child exit", f"{1e6*p_cpu/max(1,total):.1f} us", f"{1e6*e_cpu/max(1,total):.1f} us")
if e_cpu > 0:
    print(f"procexit / exitsnoop CPU: {p_cpu/e_cpu:.2f}")
PY
