#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), seeded from the real
# traces in testdata/etl: whole files, their buffers cut apart, and the
# kernel Process payloads they contain.
#
#   fuzz/run.sh [SECONDS]
#
# Needs cargo-fuzz (installed if missing). libFuzzer needs nightly compiler
# features; with only a stable toolchain, RUSTC_BOOTSTRAP=1 unlocks them.
set -euo pipefail

secs="${1:-60}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
etl_dir="${PROCEXIT_ETL_DIR:-$root/testdata/etl}"
cd "$here"

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz

# The project's stable toolchain, with nightly features unlocked for the
# sanitizer flags cargo-fuzz passes. FUZZ_TOOLCHAIN=nightly to use nightly.
toolchain=("+${FUZZ_TOOLCHAIN:-stable}")
export RUSTC_BOOTSTRAP=1

# Seeds. Buffers are cut apart with a tiny parser of the buffer chain
# (u32 size at +0 of each 72-byte buffer header).
mkdir -p corpus/etl_file corpus/xpress corpus/mof_process
if [ -d "$etl_dir" ]; then
    python3 - "$etl_dir" "$here/corpus" <<'PY'
import os, struct, sys, hashlib
src, out = sys.argv[1], sys.argv[2]
def put(kind, data):
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(out, kind, name), "wb") as f:
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
            put("etl_file", buf)  # buffer 0 alone: the logfile header
        elif i < 4:
            put("etl_file", data[:off] if off <= 256 * 1024 else b"")
        if flags & 0x40 and i < 60:
            cap = max(0, filled - 72) & 0xffff
            put("xpress", struct.pack("<H", cap) + buf[72:])
        off += size
        i += 1
PY
fi
# Process payloads: version, width flag, bytes (v4 64-bit and v2 32-bit shapes).
printf '\x04\x01' > corpus/mof_process/v4_empty
printf '\x02\x00\x00\x00\x00\x00\xf0\x06\x00\x00\xdc\x03\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x01\x00\x00\x00\x00\x00\x05\x12\x00\x00\x00a.exe\x00b\x00\x00\x00' > corpus/mof_process/v2_32

for target in etl_file xpress mof_process; do
    echo "== $target: ${secs}s"
    cargo "${toolchain[@]}" fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$secs" -max_len=262144 -rss_limit_mb=2048 2>&1 |
        grep -E '^(#[0-9]+.*(DONE|pulse)|Done|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)' || true
done
found=$(find artifacts -type f 2>/dev/null | wc -l)
if [ "$found" -eq 0 ]; then echo "no crashes found"; else find artifacts -type f; exit 1; fi
