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
# Needs root (forkstat, exitsnoop, taskstats and the BPF statistics do).
# Installs forkstat, libbpf-tools and bpftool from Debian and mounts tracefs
# when missing.
#
# In the bursts every tool writes to a file (the peers buffer their output
# and flush it when stopped; procexit writes when its queue runs empty or
# 64 KiB wait). The latency runs pipe procexit's lines through a stamper.
#
# What "CPU per exit" counts: the CPU time of the monitoring process itself
# (all its threads, user and system, in ns from /proc/PID/task/*/schedstat),
# divided by the burst size.
# The kernel work that builds each connector message or runs each BPF
# program happens in the exiting (or signalling, exec'ing) task and is
# charged to it, not to the monitor. Two more figures count it:
#
# - BPF in-kernel time: the run turns kernel.bpf_stats_enabled on (and puts
#   the old value back when it ends, also on an error or a signal), so the
#   kernel keeps run_time_ns and run_cnt for every BPF program. The
#   programs a monitor loaded are found through its own file descriptors:
#   every line "prog_id:" in /proc/PID/fdinfo/* (program fds and link fds
#   alike, so a program kept alive only by its link is found too; bpftool's
#   "pids" field would do it by owner pid, but it needs bpftool built with
#   its BPF iterator skeleton and is empty with some builds). Their
#   counters come from `bpftool prog show --json`, read just before the
#   burst and after the monitor has drained it; the difference over the
#   burst size is the in-kernel ns per exit, split by program. Total per
#   exit = the process's CPU + that in-kernel time. The connector's kernel
#   side (building and sending each message) has no such counter: for
#   procexit's connector sources and forkstat the total is the process
#   alone, and their kernel share shows only in the slowdown below.
#   With the statistics on, each program run also pays for two clock reads;
#   every BPF tool pays it per run.
# - Workload slowdown: the generator's own fork+exit rate (children reaped
#   over its wall time) with each monitor attached, over its rate alone in
#   the same round.
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
if ! command -v forkstat >/dev/null || ! command -v exitsnoop >/dev/null ||
    ! command -v bpftool >/dev/null; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends forkstat libbpf-tools bpftool >/dev/null
fi
if [ ! -d /sys/kernel/tracing/events/sched ]; then
    mount -t tracefs nodev /sys/kernel/tracing
fi

work=$(mktemp -d)
stats_old=$(sysctl -n kernel.bpf_stats_enabled)
# On any exit: stop the monitor or generator still running (this script's
# own children), put kernel.bpf_stats_enabled back, remove the work files.
cleanup() {
    local jobs_left
    jobs_left=$(jobs -p)
    # shellcheck disable=SC2086 # one pid per word
    [ -z "$jobs_left" ] || kill $jobs_left 2>/dev/null || true
    sysctl -q -w kernel.bpf_stats_enabled="$stats_old" >/dev/null ||
        echo "compare.sh: could not restore kernel.bpf_stats_enabled=$stats_old" >&2
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
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
# bpf_snapshot PID FILE: writes "id<TAB>name<TAB>run_time_ns<TAB>run_cnt" for
# each BPF program that PID holds through a program or link fd (nothing for
# a monitor with none).
bpf_snapshot() {
    local ids
    ids=$(cat /proc/"$1"/fdinfo/* 2>/dev/null | awk '$1 == "prog_id:" {print $2}' | sort -un | tr '\n' ' ')
    if [ -z "$ids" ]; then
        : >"$2"
        return 0
    fi
    bpftool prog show --json | python3 -c '
import json, sys
want = {int(i) for i in sys.argv[1].split()}
for p in json.load(sys.stdin):
    if p.get("id") in want:
        print(p["id"], p.get("name", "?"), p.get("run_time_ns", 0), p.get("run_cnt", 0), sep="\t")
' "$ids" >"$2"
}
# Waits until monitor PID has drained what the burst left queued: in half a
# second it used under 5 ms of CPU and FILE grew by under 32 KiB (a
# system-wide monitor also reports this loop's own short commands, so FILE
# never stops growing altogether), 120 s at most.
settle() {
    local last_cpu=-1 last_size=-1 cpu size
    for _ in $(seq 240); do
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
sysctl -q -w kernel.bpf_stats_enabled=1 >/dev/null
# Other work on the machine inflates every figure: say how much there was.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$results"

# run TOOL LABEL N [RATE [ROUND]]: starts TOOL's monitor, runs the generator,
# records one result line (label, n, generator pid, files, cpu, rss, wall).
run() {
    local tool=$1 label=$2 n=$3 rate=${4:-0} round=${5:-1}
    local out="$work/$label-$n-$rate-$round.out" reaped="$work/$label-$n-$rate-$round.reaped"
    local stamps="$work/$label-$n-$rate-$round.stamps" bpf="$work/$label-$n-$rate-$round.bpf" mon
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
    if [ -n "$mon" ]; then
        bpf_snapshot "$mon" "$bpf.0"
        c0=$(cpu_ns "$mon")
    fi
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
        bpf_snapshot "$mon" "$bpf.1"
        rss=$(peak_rss_kb "$mon")
        kill -INT "$mon"
        wait "$mon" 2>/dev/null || true
        sleep 0.2
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$label" "$n" "$rate" "$gen" \
        "$out" "$reaped" "$cpu" "$rss" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" "$round" \
        "$([ -n "$mon" ] && echo "$bpf" || echo -)" >>"$results"
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

def bpf_of(prefix):
    """[(id, name, run_time_ns delta, run_cnt delta)] over the burst."""
    def read(path):
        rows = {}
        try:
            for line in open(path):
                pid, name, ns, cnt = line.split("\t")
                rows[int(pid)] = (name, int(ns), int(cnt))
        except FileNotFoundError:
            pass
        return rows
    if prefix == "-":
        return []
    before, after = read(prefix + ".0"), read(prefix + ".1")
    return [(i, name, ns - before.get(i, (name, 0, 0))[1], cnt - before.get(i, (name, 0, 0))[2])
            for i, (name, ns, cnt) in sorted(after.items())]

runs, lat_rows = {}, []
order = []
for line in open(results):
    tool, label, n, rate, gen, out, reaped, cpu_ns, rss, wall, rnd, bpf = line.rstrip("\n").split("\t")
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
        r["bpf"] = bpf_of(bpf)
        r["bpf_ns"] = sum(d for _, _, d, _ in r["bpf"]) / max(1, total)
        r["total_us"] = r["us"] + r["bpf_ns"] / 1e3
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

# Total cost per exit (process + BPF in-kernel) and the generator's
# slowdown, each against the generator alone and against exitsnoop, per
# round and as medians.
alone = {n: {r["round"]: r["rate"] for r in rs} for (n, label), rs in runs.items() if label == "generator"}
def by_round(n, label, key):
    return {r["round"]: r[key] for r in runs.get((n, label), []) if key in r}
def rng(v, fmt):
    return f" ({min(v):{fmt}}–{max(v):{fmt}})" if len(v) > 1 else ""
def rounds_ratio(a, b):
    return ", ".join(f"{a[k] / b[k]:.2f}" for k in sorted(a) if b.get(k))
print()
print("| burst | tool | BPF in-kernel ns/exit, median (range) | total µs/exit (process + BPF), median (range) "
      "| total ÷ exitsnoop (median; round by round) | generator rate with it, median "
      "| ÷ generator alone (median; round by round) | rate ÷ rate with exitsnoop (median; round by round; 1 or more: no worse) |")
print("|---:|---|---:|---:|---|---:|---|---|")
for n, label in order:
    rs = runs[(n, label)]
    if rs[0]["tool"] == "none":
        continue
    has_bpf = any(r["bpf"] for r in rs)
    bpf_ns = [r["bpf_ns"] for r in rs]
    total = by_round(n, label, "total_us")
    rate = by_round(n, label, "rate")
    snoop_total = by_round(n, "exitsnoop", "total_us")
    snoop_rate = by_round(n, "exitsnoop", "rate")
    gen = alone.get(n, {})
    bpf_cell = f"{median(bpf_ns):,.0f}{rng(bpf_ns, ',.0f')}" if has_bpf else "no BPF (connector: kernel side not counted)"
    def med_ratio(a, b):
        return f"{median(a.values()) / median(b.values()):.2f}" if a and b else "-"
    vs_snoop = "-" if label == "exitsnoop" else f"{med_ratio(total, snoop_total)}; {rounds_ratio(total, snoop_total) or '-'}"
    slow_snoop = "-" if label == "exitsnoop" else f"{med_ratio(rate, snoop_rate)}; {rounds_ratio(rate, snoop_rate) or '-'}"
    print(f"| {n} | {label} | {bpf_cell} | {median(total.values()):.2f}{rng(list(total.values()), '.2f')} | {vs_snoop} | "
          f"{median(rate.values()):,.0f}/s | {med_ratio(rate, gen)}; {rounds_ratio(rate, gen) or '-'} | {slow_snoop} |")
print()
# The goal for the eBPF source: total per exit at most exitsnoop's, and the
# generator no slower with it than with exitsnoop (medians).
for n in sorted({n for n, _ in order}):
    mine, snoop = by_round(n, "procexit-ebpf", "total_us"), by_round(n, "exitsnoop", "total_us")
    mine_rate, snoop_rate = by_round(n, "procexit-ebpf", "rate"), by_round(n, "exitsnoop", "rate")
    if not (mine and snoop and mine_rate and snoop_rate):
        continue
    cost = median(mine.values()) <= median(snoop.values())
    slow = median(mine_rate.values()) >= median(snoop_rate.values())
    verdict = lambda ok: "met" if ok else "NOT met"
    print(f"Burst of {n}, eBPF source against exitsnoop: total cost per exit at most exitsnoop's: "
          f"{verdict(cost)}; workload slowdown no worse than exitsnoop's: {verdict(slow)}.  ")
print()
print("| burst | tool | BPF program | runs per exit | ns per run, median | ns per exit, median | share of the tool's BPF time |")
print("|---:|---|---|---:|---:|---:|---:|")
for n, label in order:
    rs = runs[(n, label)]
    progs = {}
    for r in rs:
        for pid, name, ns, cnt in r.get("bpf", []):
            # ids differ between rounds (each start loads anew): by name.
            progs.setdefault(name, []).append((ns, cnt, r["total"], pid))
    all_ns = sum(ns for v in progs.values() for ns, _, _, _ in v)
    for name, v in sorted(progs.items(), key=lambda kv: -sum(x[0] for x in kv[1])):
        per_run = [ns / cnt for ns, cnt, _, _ in v if cnt]
        per_exit = [ns / max(1, t) for ns, _, t, _ in v]
        runs_per = [cnt / max(1, t) for _, cnt, t, _ in v]
        share = sum(ns for ns, _, _, _ in v) / all_ns if all_ns else 0
        print(f"| {n} | {label} | {name} | {median(runs_per):.2f} | "
              f"{median(per_run) if per_run else 0:,.0f} | {median(per_exit):,.0f} | {share:.0%} |")
print()
print("| latency run | exits | rate | delivered | lost | p50 ms | p99 ms | CPU µs/exit | peak RSS MB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for label, n, rate, d, l, p50, p99, us, mb in lat_rows:
    print(f"| {label} | {n} | {rate}/s | {d} | {l} | {p50:.2f} | {p99:.2f} | {us:.1f} | {mb:.1f} |")
PY
)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo "$table"
{
    echo
    echo "### compare.sh, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Machine: $(nproc) CPUs, $(awk '/model name/ {sub(/.*: /, ""); print; exit}' /proc/cpuinfo), Linux $(uname -r), pid_max $(cat /proc/sys/kernel/pid_max); load average before the run $load_before, after it $load_after$(awk -v n="$(nproc)" '{if ($1 > n / 2) printf " (other work was running: every figure is inflated and noisier)"}' <<<"$load_after"); kernel.bpf_stats_enabled on for the run (was $stats_old); procexit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); forkstat $(dpkg-query -W -f='${Version}' forkstat), libbpf-tools $(dpkg-query -W -f='${Version}' libbpf-tools)."
    echo "Command: \`bench/compare.sh$([ $# -gt 0 ] && printf ' %s' "$@")\`$([ "${COMPARE_1M:-0}" = 1 ] && echo ' with COMPARE_1M=1'); $K children outstanding; $ROUNDS rounds of the bursts under 1 000 000."
    echo
    echo "$table"
} >>bench/RESULTS.md
echo "appended to bench/RESULTS.md" >&2
