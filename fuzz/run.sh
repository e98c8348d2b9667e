#!/usr/bin/env bash
# Long fuzz runs: every target in fuzz/targets.rs for SECONDS each (default
# 60) under libFuzzer, seeded from fuzz/seeds/ and the repository's .etl
# traces (testdata/etl, or $PROCEXIT_ETL_DIR). Prints the executions per target and appends them
# to bench/RESULTS.md. CI runs a short stable-toolchain smoke of the same
# targets instead (crates/procexit/tests/fuzz_smoke.rs).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (installed if missing). libFuzzer needs nightly compiler
# features: FUZZ_TOOLCHAIN=nightly (the default when installed), else the
# stable toolchain with RUSTC_BOOTSTRAP=1.
set -euo pipefail

secs="${1:-60}"
shift || true
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
etl_dir="${PROCEXIT_ETL_DIR:-$root/testdata/etl}"
cd "$here"

all=(etl_file xpress mof_process kernel_process proc_connector taskstats lost_event)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
if [ -z "${FUZZ_TOOLCHAIN:-}" ]; then
    if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
        FUZZ_TOOLCHAIN=nightly
    else
        FUZZ_TOOLCHAIN=stable
        export RUSTC_BOOTSTRAP=1
    fi
fi

# Corpus = committed seeds + trace pieces (cut with the buffer chain: u32
# size at +0 of each 72-byte buffer header, filled size at +0x30, flags at
# +0x34), grown by each run and kept (git-ignored) for the next.
for t in "${all[@]}"; do
    mkdir -p "corpus/$t"
    cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
done
if [ -d "$etl_dir" ]; then
    python3 - "$etl_dir" "$here/corpus" <<'PY'
import os, struct, sys, hashlib
src, out = sys.argv[1], sys.argv[2]
def put(kind, data):
    if data:
        with open(os.path.join(out, kind, hashlib.sha1(data).hexdigest()), "wb") as f:
            f.write(data)
for name in sorted(os.listdir(src)):
    if not name.endswith(".etl"):
        continue
    data = open(os.path.join(src, name), "rb").read()
    if len(data) <= 256 * 1024:
        put("etl_file", data)
    off, i = 0, 0
    while off + 72 <= len(data) and i < 400:
        size, = struct.unpack_from("<I", data, off)
        if size < 72:
            break
        buf = data[off:off + size]
        filled, = struct.unpack_from("<I", data, off + 0x30)
        flags, = struct.unpack_from("<H", data, off + 0x34)
        if i == 0:
            put("etl_file", buf)
        elif i < 4 and off <= 256 * 1024:
            put("etl_file", data[:off + size])
        if flags & 0x40 and i < 60:
            put("xpress", struct.pack("<H", max(0, filled - 72) & 0xffff) + buf[72:])
        off += size
        i += 1
PY
fi

results=()
for target in "${targets[@]}"; do
    echo "== $target: ${secs}s"
    log="$(mktemp)"
    cargo "+$FUZZ_TOOLCHAIN" fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$secs" -max_len=262144 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || true
    grep -E '^(#[0-9]+.*DONE|Done|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)' "$log" || true
    execs=$(awk -F: '/stat::number_of_executed_units/ {gsub(/ /, "", $2); print $2}' "$log" | tail -1)
    rate=$(awk -F: '/stat::average_exec_per_sec/ {gsub(/ /, "", $2); print $2}' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
    corpus=$(find "corpus/$target" -type f | wc -l)
    results+=("| $target | ${secs} | ${execs:-?} | ${rate:-?} | ${cov:-?} | $corpus |")
    rm -f "$log"
done

crashes=$(find artifacts -type f 2>/dev/null | wc -l)
table=$(printf '%s\n' "| target | seconds | executions | execs/s | coverage (edges) | corpus files |" \
    "|---|---|---|---|---|---|" "${results[@]}")
echo "$table"
{
    echo
    echo "### Fuzzing, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Machine: $(nproc) CPUs, $(awk '/model name/ {sub(/.*: /, ""); print; exit}' /proc/cpuinfo), Linux $(uname -r); toolchain $FUZZ_TOOLCHAIN."
    echo "Command: \`fuzz/run.sh $secs${*:+ $*}\`. Crashes found: $crashes."
    echo
    echo "$table"
} >>"$root/bench/RESULTS.md"
if [ "$crashes" -eq 0 ]; then echo "no crashes found"; else find artifacts -type f; exit 1; fi
