#!/usr/bin/env bash
# Replays every .etl trace in testdata/etl with procexit (release build of
# examples/etl_scan.rs: all events read, Process events decoded), with the
# two Python decoders (dissect.etl 3.14 and etl-parser 1.0.1, installed from
# PyPI into a venv), and with `cat FILE > /dev/null` (disk read, warm cache);
# prints MB/s per tool and the ratios procexit / faster Python and
# procexit / disk read. "read" is the same file read in process through the
# same 64 KiB buffered reader and thrown away (warm cache): the disk-read
# baseline of "vs read". "vs cat" compares whole processes: etl_scan FILE
# against cat FILE > /dev/null, both with process start-up, which dominates
# on the small files.
#
#   bench/replay_bench.sh [ETL_DIR]        (REPEATS=5 by default)
#
# Times are the best of REPEATS runs, in process for procexit and the Python
# decoders (interpreter start-up and imports excluded; procexit opens and
# reads the file itself each run), and as a whole process for cat. A Python
# decoder counts for the ratio only where it saw at least 90 % of the records
# procexit saw (etl-parser stops after buffer 0 on compressed files and skips
# buffer 0 itself).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
etl_dir="${1:-${PROCEXIT_ETL_DIR:-$root/testdata/etl}}"
repeats="${REPEATS:-5}"
venv="${BENCH_VENV:-$root/target/bench-venv}"

cargo build --quiet --release -p procexit --example etl_scan --manifest-path "$root/Cargo.toml"
scan="$root/target/release/examples/etl_scan"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check dissect.etl==3.14 etl-parser==1.0.1
py="$venv/bin/python"

# Best wall time in seconds of REPEATS runs of a command.
best_wall() {
    local best="" t0 t1 dt
    for _ in $(seq "$repeats"); do
        t0=$(date +%s%N)
        "$@" >/dev/null 2>/dev/null || true
        t1=$(date +%s%N)
        dt=$((t1 - t0))
        if [ -z "$best" ] || [ "$dt" -lt "$best" ]; then best=$dt; fi
    done
    awk -v ns="$best" 'BEGIN { printf "%.6f", ns / 1e9 }'
}

mbps() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.1f", b / 1e6 / s; else print "inf" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.0f", b / a; else print "-" }'; }

printf '%-40s %7s %7s | %9s %8s %10s %9s %9s | %8s %8s %8s\n' \
    file MB records "procexit" "dissect" "etl-parser" "read" "cat" "vs py" "vs read" "vs cat"
printf '%-40s %7s %7s | %9s %8s %10s %9s %9s | %8s %8s %8s\n' \
    "" "" "" "MB/s" "MB/s" "MB/s" "MB/s" "MB/s" "x faster" "x time" "x time"

tot_bytes=0; tot_px=0; tot_py=0; tot_cat=0; py_bytes=0; py_px=0
for f in "$etl_dir"/*.etl; do
    name="$(basename "$f")"
    bytes=$(stat -c %s "$f")
    cat "$f" >/dev/null
    out=$("$scan" --repeat "$repeats" "$f")
    records=$(sed -n 's/.* \([0-9]*\) records.*/\1/p' <<<"$out")
    t_px=$(sed -n 's/.*best \([0-9.]*\) s$/\1/p' <<<"$out")
    t_cat=$(best_wall cat "$f")
    t_px_wall=$(best_wall "$scan" "$f")
    t_read=$("$scan" --repeat "$repeats" --read-only "$f" | sed -n 's/.*best \([0-9.]*\) s$/\1/p')
    read -r t_ds n_ds < <("$py" "$here/replay_bench.py" dissect "$f" "$repeats")
    read -r t_ep n_ep < <("$py" "$here/replay_bench.py" etlparser "$f" "$repeats")
    # Faster Python decoder among those that read every record.
    t_py=""
    enough=$((records * 9 / 10))
    if [ "$n_ds" -ge "$enough" ]; then t_py=$t_ds; fi
    if [ "$n_ep" -ge "$enough" ] && { [ -z "$t_py" ] || awk -v a="$t_ep" -v b="$t_py" 'BEGIN{exit !(a<b)}'; }; then
        t_py=$t_ep
    fi
    ep_note=""
    if [ "$n_ep" -lt "$enough" ]; then ep_note="*"; fi
    printf '%-40s %7.3f %7d | %9s %8s %9s%1s %9s %9s | %8s %8s %8s\n' \
        "$name" "$(awk -v b="$bytes" 'BEGIN{print b/1e6}')" "$records" \
        "$(mbps "$bytes" "$t_px")" "$(mbps "$bytes" "$t_ds")" "$(mbps "$bytes" "$t_ep")" "$ep_note" \
        "$(mbps "$bytes" "$t_read")" "$(mbps "$bytes" "$t_cat")" \
        "$( [ -n "$t_py" ] && ratio "$t_px" "$t_py" || echo -)" \
        "$(awk -v a="$t_px" -v b="$t_read" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "-" }')" \
        "$(awk -v a="$t_px_wall" -v b="$t_cat" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "-" }')"
    tot_bytes=$((tot_bytes + bytes))
    tot_px=$(awk -v a="$tot_px" -v b="$t_px" 'BEGIN{print a+b}')
    tot_cat=$(awk -v a="$tot_cat" -v b="$t_read" 'BEGIN{print a+b}')
    if [ -n "$t_py" ]; then
        tot_py=$(awk -v a="$tot_py" -v b="$t_py" 'BEGIN{print a+b}')
        py_px=$(awk -v a="$py_px" -v b="$t_px" 'BEGIN{print a+b}')
        py_bytes=$((py_bytes + bytes))
    fi
done
echo
echo "* etl-parser stopped early (under 90 % of the records): not used for the ratio."
printf 'all files: procexit %s MB/s, in-process read %s MB/s (procexit takes %sx the read time)\n' \
    "$(mbps "$tot_bytes" "$tot_px")" "$(mbps "$tot_bytes" "$tot_cat")" \
    "$(awk -v a="$tot_px" -v b="$tot_cat" 'BEGIN{printf "%.2f", a/b}')"
printf 'files a Python decoder read whole: procexit %s MB/s, faster Python %s MB/s: %sx\n' \
    "$(mbps "$py_bytes" "$py_px")" "$(mbps "$py_bytes" "$tot_py")" "$(ratio "$py_px" "$tot_py")"
