#!/usr/bin/env bash
# Rebuilds the committed BPF object of the Linux eBPF source from its C
# source. Building procexit itself never runs this: the object is committed,
# so `cargo build` needs only Rust. scripts/test.sh runs it with --check to
# prove the committed object is exactly what this source gives.
#
# Needs clang (Debian 12: clang 14), llvm-strip (package llvm) and libbpf's
# headers (libbpf-dev). The build is reproducible: relative paths from a
# fixed directory, no DWARF kept (BTF and CO-RE relocations stay).
#
# Usage: scripts/build-bpf.sh          rebuild in place
#        scripts/build-bpf.sh --check  rebuild to a temporary file and fail
#                                      if it differs from the committed one
set -euo pipefail
cd "$(dirname "$0")/../crates/procexit/src/sys/linux/bpf"
out=procexit.bpf.o
if [ "${1:-}" = --check ]; then
  out=$(mktemp /tmp/procexit.bpf.XXXXXX.o)
  trap 'rm -f "$out"' EXIT
fi
clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -Wall -Werror \
  -fno-ident -fdebug-prefix-map="$PWD"=. -fdebug-compilation-dir=. -c procexit.bpf.c -o "$out"
llvm-strip -g "$out"
if [ "${1:-}" = --check ]; then
  if cmp -s "$out" procexit.bpf.o; then
    echo "build-bpf: committed procexit.bpf.o matches its source ($(clang --version | head -1))"
  else
    echo "build-bpf: procexit.bpf.o differs from what procexit.bpf.c builds to;" \
      "run scripts/build-bpf.sh and commit the result" >&2
    exit 1
  fi
fi
