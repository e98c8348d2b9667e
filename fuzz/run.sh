#!/usr/bin/env bash
# Long fuzz runs: every target in fuzz/targets.rs for SECONDS each (default
# 60) under libFuzzer, seeded from fuzz/seeds/ and the repository's .etl
# traces (testdata/etl, or $PROCEXIT_ETL_DIR). Prints the executions per target and appends them
# to bench/RESULTS.md. CI runs a short stable-toolchain smoke of the same
# targets instead (crates/procexit/tests/fuzz_smoke.rs).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (installed with `cargo install --locked cargo-fuzz` if
# missing). libFuzzer needs nightly compiler features (-Zsanitizer, coverage
# instrumentation): the script builds with the toolchain the project builds
# with and RUSTC_BOOTSTRAP=1 (rustup's stable by default; FUZZ_TOOLCHAIN=
# nightly, or any rustup toolchain name, picks another). Without rustup
# (a distribution's rustc) it uses the rustc on PATH, and fuzzes without
# AddressSanitizer when that rustc ships no ASan runtime (Debian's does not):
# panics and Rust's own checks still count as crashes.
set -euo pipefail

secs="${1:-60}"
shift || true
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
etl_dir="${PROCEXIT_ETL_DIR:-$root/testdata/etl}"
cd "$here"

all=(etl_file xpress mof_process kernel_process audit_api proc_connector taskstats lost_event ebpf_exit bpf_object)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
cargo_fuzz=(cargo)
if command -v rustup >/dev/null 2>&1; then
    FUZZ_TOOLCHAIN="${FUZZ_TOOLCHAIN:-stable}"
    cargo_fuzz+=("+$FUZZ_TOOLCHAIN")
    rustc_cmd=(rustup run "$FUZZ_TOOLCHAIN" rustc)
else
    FUZZ_TOOLCHAIN="$(rustc --version | awk '{print $1 " " $2}') (no rustup)"
    rustc_cmd=(rustc)
fi
cargo_fuzz+=(fuzz)
sanitizer=address
sysroot="$("${rustc_cmd[@]}" --print sysroot)"
host="$("${rustc_cmd[@]}" -vV | sed -n 's/^host: //p')"
if ! ls "$sysroot/lib/rustlib/$host/lib/"librustc-*_rt.asan.a >/dev/null 2>&1; then
    sanitizer=none
fi
echo "fuzz: toolchain $FUZZ_TOOLCHAIN, sanitizer $sanitizer"
# One build of every target up front: a build error stops the script here
# instead of showing up as a target that ran nothing.
"${cargo_fuzz[@]}" build --sanitizer "$sanitizer"

# Corpus = committed seeds + trace pieces (cut with the buffer chain: u32
# size at +0 of each 72-byte buffer header, filled size at +0x30, flags at
# +0x34), grown by each run and kept (git-ignored) for the next.
for t in "${all[@]}"; do
    mkdir -p "corpus/$t"
    cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
done
# The committed BPF object is the loader's main seed (the seed folder holds
# its .BTF section, the kernel-BTF shape of input).
cp -n "$root/crates/procexit/src/sys/linux/bpf/procexit.bpf.o" corpus/bpf_object/ 2>/dev/null || true
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
failed=()
for target in "${targets[@]}"; do
    echo "== $target: ${secs}s"
    log="$(mktemp)"
    "${cargo_fuzz[@]}" run --sanitizer "$sanitizer" "$target" "corpus/$target" -- \
        -max_total_time="$secs" -max_len=262144 -rss_limit_mb=2048 -timeout=30 \
        -print_final_stats=1 >"$log" 2>&1 || true
    grep -E '^(#[0-9]+.*DONE|Done|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)' "$log" || true
    # libFuzzer's final lines: "stat::number_of_executed_units: 18409".
    execs=$(awk '$1 == "stat::number_of_executed_units:" {print $2}' "$log" | tail -1)
    rate=$(awk '$1 == "stat::average_exec_per_sec:" {print $2}' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
    corpus=$(find "corpus/$target" -type f | wc -l)
    if [ -z "$execs" ]; then
        # No final statistics: libFuzzer did not run (or died without them).
        tail -20 "$log"
        failed+=("$target")
    fi
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
    echo "Machine: $(nproc) CPUs, $(awk '/model name/ {sub(/.*: /, ""); print; exit}' /proc/cpuinfo), Linux $(uname -r); toolchain $FUZZ_TOOLCHAIN (RUSTC_BOOTSTRAP=1), sanitizer $sanitizer."
    echo "Command: \`fuzz/run.sh $secs${*:+ $*}\`. Crashes found: $crashes."
    echo
    echo "$table"
} >>"$root/bench/RESULTS.md"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: no statistics from: ${failed[*]}" >&2
    exit 1
fi
if [ "$crashes" -eq 0 ]; then echo "no crashes found"; else find artifacts -type f; exit 1; fi
