#!/usr/bin/env bash
# Criterion benches of the Windows hot path (they run on any OS): the kernel
# Process payload decoder, decode + merge per event, and the .etl reader on
# the repository's traces. Prints the figures and appends them to
# bench/RESULTS.md. Targets: decode + merge under 100 ns per event.
#
#   bench/windows_hot_path.sh
set -euo pipefail
cd "$(dirname "$0")/.."
load=$(cut -d' ' -f1-3 /proc/loadavg)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo bench --locked -p procexit --bench windows_hot_path 2>&1 | tee "$log" >&2
table=$(python3 - "$log" <<'PY'
import json, os, re, sys
log = open(sys.argv[1]).read()
events = {m[0]: (int(m[1]), int(m[2]), m[3], int(m[4])) for m in
          re.findall(r"etl_reader/(\S+): (\d+) bytes, (\d+) events, ([a-z ]+), (\d+) inflated bytes", log)}
base = "target/criterion"
def mean_ns(group, *ids):
    path = os.path.join(base, group, *ids, "new", "estimates.json")
    return json.load(open(path))["mean"]["point_estimate"]
out = []
payloads = None
m = re.search(r"process_payload/decode\s+time:", log)
bench = json.load(open(os.path.join(base, "process_payload", "decode", "new", "benchmark.json")))
n = bench["throughput"]["Elements"]
t = mean_ns("process_payload", "decode")
out.append(f"| kernel Process payload decode ({n} real payloads) | {t / n:.1f} ns/event |")
live = mean_ns("process_events", "decode+merge") / 8000
read = mean_ns("process_events", "read") / 8001
full = mean_ns("process_events", "read+decode+merge") / 8000
out.append(f"| dense synthetic trace, decode + merge as the real-time callback does it (target < 100 ns) | {live:.1f} ns/event |")
out.append(f"| dense synthetic trace, .etl record reader only | {read:.1f} ns/event |")
out.append(f"| dense synthetic trace, .etl reader + decode + merge + owned items | {full:.1f} ns/event |")
out.append(f"| .etl decode + merge + owned items (difference of the two above) | {full - read:.1f} ns/event |")
print("| what | figure |")
print("|---|---:|")
print("\n".join(out))
print()
print("| trace | file MB | compressed | events | read MB/s | events/s | copy MB/s | read ÷ copy time | next_event ÷ copy time | decompressed MB | read MB/s of decompressed data |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, (size, count, kind, inflated) in sorted(events.items()):
    try:
        r = mean_ns("etl_reader", "read", name)
        c = mean_ns("etl_reader", "copy", name)
        e = mean_ns("etl_reader", "next_event", name)
    except FileNotFoundError:
        continue
    print(f"| {name} | {size / 1e6:.2f} | {'yes' if kind == 'compressed' else 'no'} | {count} | "
          f"{size / r * 1e3:,.0f} | {count / r * 1e9:,.0f} | {size / c * 1e3:,.0f} | {r / c:.2f} | {e / c:.2f} | "
          + (f"{inflated / 1e6:.2f} | {inflated / r * 1e3:,.0f} |" if inflated else "- | - |"))
PY
)
echo "$table"
{
    echo
    echo "### Windows hot path (criterion), $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Machine: $(nproc) CPUs, $(awk '/model name/ {sub(/.*: /, ""); print; exit}' /proc/cpuinfo), Linux $(uname -r); procexit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), bench profile."
    echo "Command: \`bench/windows_hot_path.sh\`; load average before the run: $load. Traces read from memory; MB are file bytes unless said otherwise."
    echo
    echo "$table"
} >>bench/RESULTS.md
