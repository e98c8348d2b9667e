#!/usr/bin/env bash
# procexit beside the tools one would pick instead, on the same bursts of
# short-lived processes: the load generator alone (the machine's limit),
# procexit with each Linux source it has (the connector also as the user
# nobody, which gets no taskstats), forkstat (netlink connector, C)
# and libbpf-tools' exitsnoop (eBPF, C).
#
#   bench/compare.sh [BURST...]        default: 10000 100000
#   COMPARE_1M=1 bench/compare.sh      adds the 1 000 000 burst (~2 min per tool)
#   COMPARE_ROUNDS=N                   rounds of the bursts under 1 000 000 (3)
#
# A 10 000-exit burst lasts under a second, so one run of it swings with
# whatever else the machine does; the bursts under 1 000 000 are therefore
# run COMPARE_ROUNDS times, the tools taking turns within each round, and
# the table gives each tool's median CPU per exit with the range, and the
# ratios of the medians beside the ratios round by round.
#
# Per tool and burst: exits delivered and lost (exact, pid by pid against the
# generator's own list), CPU per exit, peak RSS; for procexit also the
# exit-to-delivery latency at ~1000 exits/s. Prints a table and appends it,
# with machine, date and command, to bench/RESULTS.md.
#
# Needs root (forkstat, exitsnoop and taskstats do). Installs forkstat and
# libbpf-tools from Debian and mounts tracefs when missing.
#
# In the bursts every tool writes to a file (the peers buffer their output
# and flush it when stopped; procexit writes when its queue runs empty or
# 64 KiB wait). The latency runs pipe procexit's lines through a stamper.
#
# What "CPU per exit" counts: the CPU time of the monitoring process itself
# (all its threads, in ns from /proc/PID/task/*/schedstat), divided by the
# burst size.
# The kernel work that builds each connector message or runs each BPF
# program happens in the exiting task and is charged to it, for every tool
# alike; it is not in these figures.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bursts=("$@")
[ ${#bursts[@]} -gt 0 ] || bursts=(10000 100000)
[ "${COMPARE_1M:-0}" = 1 ] && bursts+=(1000000)
K=${COMPARE_OUTSTANDING:-64}
ROUNDS=${COMPARE_ROUNDS:-3}
LAT_N=${COMPARE_LATENCY_EXITS:-5000}
LAT_RATE=${COMPARE_LATENCY_RATE:-1000}

if [ "$(id -u)" != 0 ]; then
    echo "compare.sh: run as root (forkstat, exitsnoop and taskstats need it)" >&2
    exit 1
fi
if ! command -v forkstat >/dev/null || ! command -v exitsnoop >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        forkstat libbpf-tools >/dev/null
fi
if [ ! -d /sys/kernel/tracing/events/sched ]; then
    mount -t tracefs nodev /sys/kernel/tracing
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The generator's name is its children's name too (they fork without exec):
# forkstat's lines are matched by it.
gen_bin="$work/pxburst"
cc -O2 -o "$gen_bin" bench/loadgen.c
cargo build --release -q -p procexit-cli
bin="$root/target/release/procexit"

sources=(default)
if "$bin" watch --help | grep -q -- '--source'; then
    sources=(connector connector-nobody ebpf)
fi

# cpu_ns PID: CPU time of all the process's threads, ns (the schedstat
# runtime is exact; /proc/PID/stat counts in 10 ms ticks, too coarse for a
# 10 000-exit burst; "%.0f" because mawk's "%d" stops at 2^31). Every monitor
# here keeps its threads for the run.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%.0f", s}'; }
peak_rss_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
# Waits until monitor PID has drained what the burst left queued: in half a
# second it used under 5 ms of CPU and FILE grew by under 32 KiB (a
# system-wide monitor also reports this loop's own short commands, so FILE
# never stops growing altogether), 120 s at most.
settle() {
    local last_cpu=-1 last_size=-1 cpu size i
    for i in $(seq 240); do
        cpu=$(cpu_ns "$1")
        size=$(stat -c %s "$2")
        if [ "$last_size" -ge 0 ] && [ $((size - last_size)) -lt 32768 ] &&
            [ $((cpu - last_cpu)) -lt 5000000 ]; then
            return 0
        fi
        last_cpu=$cpu
        last_size=$size
        sleep 0.5
    done
}

results="$work/results.tsv"
# Other work on the machine inflates every figure: say how much there was.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$results"

# run TOOL LABEL N [RATE [ROUND]]: starts TOOL's monitor, runs the generator,
# records one result line (label, n, generator pid, files, cpu, rss, wall).
run() {
    local tool=$1 label=$2 n=$3 rate=${4:-0} round=${5:-1}
    local out="$work/$label-$n-$rate-$round.out" reaped="$work/$label-$n-$rate-$round.reaped"
    local stamps="$work/$label-$n-$rate-$round.stamps" mon
    case $tool in
        none) mon= ;;
        procexit)
            local args=(watch --json) source=${label#procexit-} as_user=()
            if [ "$source" = connector-nobody ]; then
                # What an unprivileged user gets: the connector without taskstats.
                source=connector
                as_user=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
            fi
            [ "$label" = procexit-default ] || args+=(--source "$source")
            if [ "$rate" != 0 ]; then
                "${as_user[@]}" "$bin" "${args[@]}" > >("$gen_bin" stamp >"$out") 2>"$out.err" &
            else
                "${as_user[@]}" "$bin" "${args[@]}" >"$out" 2>"$out.err" &
            fi
            mon=$!
            ;;
        forkstat)
            forkstat -e exit -c >"$out" 2>"$out.err" &
            mon=$!
            ;;
        exitsnoop)
            exitsnoop >"$out" 2>"$out.err" &
            mon=$!
            ;;
    esac
    sleep 2
    if [ -n "$mon" ] && ! kill -0 "$mon" 2>/dev/null; then
        echo "compare.sh: $label did not start: $(head -c 300 "$out.err")" >&2
        return 0
    fi
    local c0=0 t0 t1
    [ -n "$mon" ] && c0=$(cpu_ns "$mon")
    t0=$(date +%s.%N)
    if [ "$rate" != 0 ]; then
        "$gen_bin" "$n" "$K" "$reaped" "$rate" "$stamps" &
    else
        "$gen_bin" "$n" "$K" "$reaped" &
    fi
    local gen=$!
    wait "$gen"
    t1=$(date +%s.%N)
    local cpu=0 rss=0
    if [ -n "$mon" ]; then
        settle "$mon" "$out"
        cpu=$(( $(cpu_ns "$mon") - c0 ))
        rss=$(peak_rss_kb "$mon")
        kill -INT "$mon"
        wait "$mon" 2>/dev/null || true
        sleep 0.2
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$label" "$n" "$rate" "$gen" \
        "$out" "$reaped" "$cpu" "$rss" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" "$round" >>"$results"
    echo "  $label, $n exits$([ "$rate" != 0 ] && echo " at $rate/s")$([ "$round" != 1 ] && echo ", round $round"): done" >&2
}

for n in "${bursts[@]}"; do
    rounds=$ROUNDS
    [ "$n" -ge 1000000 ] && rounds=1
    for round in $(seq "$rounds"); do
        echo "== burst of $n exits, round $round of $rounds" >&2
        run none generator "$n" 0 "$round"
        for s in "${sources[@]}"; do run procexit "procexit-$s" "$n" 0 "$round"; done
        run exitsnoop exitsnoop "$n" 0 "$round"
        run forkstat forkstat "$n" 0 "$round"
    done
done
echo "== latency: $LAT_N exits at $LAT_RATE/s" >&2
for s in "${sources[@]}"; do run procexit "procexit-$s" "$LAT_N" "$LAT_RATE"; done

table=$(python3 - "$results" <<'PY'
import json, sys
from collections import Counter

results = sys.argv[1]

def reaped_of(path):
    c = Counter()
    for line in open(path):
        pid, status = line.split()
        c[(int(pid), int(status))] += 1
    return c

def delivered_of(tool, path, gen):
    """(pid, status) of the generator's children as the tool reported them."""
    got, extra = Counter(), {}
    for raw in open(path, errors="replace"):
        if tool == "procexit":
            # Stamped lines (latency runs) are "ns<TAB>json".
            line = raw.partition("\t")[2] or raw
            try:
                o = json.loads(line)
            except ValueError:
                continue
            if o.get("type") == "exit" and o.get("ppid") == gen and o.get("exit_code") is not None:
                got[(o["pid"], o["exit_code"])] += 1
            elif o.get("type") == "stats":
                extra["stats"] = o
        elif tool == "exitsnoop":
            # PCOMM PID PPID TID AGE(s) EXIT_CODE ("code N" or "signal N (…)")
            f = raw.split()
            if len(f) >= 7 and f[2] == str(gen) and f[1].isdigit() and f[5] == "code":
                got[(int(f[1]), int(f[6]))] += 1
        elif tool == "forkstat":
            # Time Event PID Info Duration Process; Info is the wait status
            f = raw.split()
            if len(f) >= 6 and f[1] == "exit" and f[-1].strip("[]") == "pxburst" and f[2] != str(gen):
                if f[3].isdigit():
                    got[(int(f[2]), int(f[3]) >> 8)] += 1
    return got, extra

def latencies(out, stamps_path):
    born = {}
    for line in open(stamps_path):
        pid, ns = line.split()
        born.setdefault(int(pid), []).append(int(ns))
    lat = []
    for raw in open(out, errors="replace"):
        stamp, _, line = raw.partition("\t")
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if o.get("type") != "exit" or o.get("pid") not in born:
            continue
        t = int(stamp)
        # pids may repeat: the latest stamp before this line.
        before = [b for b in born[o["pid"]] if b <= t]
        if before:
            lat.append((t - max(before)) / 1e6)
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
    return pick(0.5), pick(0.99), len(lat)

from statistics import median

runs, lat_rows = {}, []
order = []
for line in open(results):
    tool, label, n, rate, gen, out, reaped, cpu_ns, rss, wall, rnd = line.rstrip("\n").split("\t")
    n, rate, gen, wall, rnd = int(n), int(rate), int(gen), float(wall), int(rnd)
    want = reaped_of(reaped)
    total = sum(want.values())
    if rate:
        got, _ = delivered_of(tool, out, gen)
        delivered = sum((want & got).values())
        us = int(cpu_ns) / 1e3 / max(1, total)
        p50, p99, k = latencies(out, reaped.replace(".reaped", ".stamps"))
        lat_rows.append((label, n, rate, delivered, total - delivered, p50, p99, us, int(rss or 0) / 1024))
        continue
    r = {"tool": tool, "round": rnd, "total": total, "rate": total / wall}
    if tool != "none":
        got, extra = delivered_of(tool, out, gen)
        r["delivered"] = sum((want & got).values())
        r["us"] = int(cpu_ns) / 1e3 / max(1, total)
        r["mb"] = int(rss or 0) / 1024
        r["stats"] = extra.get("stats")
    if (n, label) not in runs:
        order.append((n, label))
    runs.setdefault((n, label), []).append(r)

cpu = {}
print("| burst | tool | rounds | delivered | lost | CPU µs/exit, median (range) | peak RSS MB | generator rate |")
print("|---:|---|---:|---:|---|---:|---:|---:|")
for n, label in order:
    rs = runs[(n, label)]
    total = sum(r["total"] for r in rs)
    rate = f"{median(r['rate'] for r in rs):,.0f}/s"
    if rs[0]["tool"] == "none":
        print(f"| {n} | {label} | {len(rs)} | {total} reaped | - | - | - | {rate} |")
        continue
    delivered = sum(r["delivered"] for r in rs)
    note = ""
    stats = [r["stats"] for r in rs if r["stats"]]
    if stats:
        add = lambda k: sum(int(s.get(k) or 0) for s in stats)
        note = f" (stats: lost {add('lost')}, overruns {add('overruns')}, dropped {add('dropped')})"
    us = [r["us"] for r in rs]
    cpu[(n, label)] = {r["round"]: r["us"] for r in rs}
    spread = f" ({min(us):.1f}–{max(us):.1f})" if len(us) > 1 else ""
    print(f"| {n} | {label} | {len(rs)} | {delivered} | {total - delivered}{note} | "
          f"{median(us):.1f}{spread} | {max(r['mb'] for r in rs):.1f} | {rate} |")
print()
print("| burst | procexit source | CPU ÷ exitsnoop (median) | round by round | CPU ÷ forkstat (median) |")
print("|---:|---|---:|---|---:|")
for (n, label), by_round in sorted(cpu.items()):
    if not label.startswith("procexit"):
        continue
    def ratio(peer):
        other = cpu.get((n, peer))
        return f"{median(by_round.values()) / median(other.values()):.2f}" if other else "-"
    snoop = cpu.get((n, "exitsnoop"), {})
    each = ", ".join(f"{by_round[k] / snoop[k]:.2f}" for k in sorted(by_round) if snoop.get(k))
    print(f"| {n} | {label} | {ratio('exitsnoop')} | {each or '-'} | {ratio('forkstat')} |")
print()
print("| latency run | exits | rate | delivered | lost | p50 ms | p99 ms | CPU µs/exit | peak RSS MB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for label, n, rate, d, l, p50, p99, us, mb in lat_rows:
    print(f"| {label} | {n} | {rate}/s | {d} | {l} | {p50:.2f} | {p99:.2f} | {us:.1f} | {mb:.1f} |")
PY
)
echo "$table"
{
    echo
    echo "### compare.sh, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Machine: $(nproc) CPUs, $(awk '/model name/ {sub(/.*: /, ""); print; exit}' /proc/cpuinfo), Linux $(uname -r), pid_max $(cat /proc/sys/kernel/pid_max); load average before the run $load_before; procexit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); forkstat $(dpkg-query -W -f='${Version}' forkstat), libbpf-tools $(dpkg-query -W -f='${Version}' libbpf-tools)."
    echo "Command: \`bench/compare.sh$([ $# -gt 0 ] && printf ' %s' "$@")\`$([ "${COMPARE_1M:-0}" = 1 ] && echo ' with COMPARE_1M=1'); $K children outstanding; $ROUNDS rounds of the bursts under 1 000 000."
    echo
    echo "$table"
} >>bench/RESULTS.md
echo "appended to bench/RESULTS.md" >&2
