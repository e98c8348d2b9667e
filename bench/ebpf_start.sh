#!/usr/bin/env bash
# How long the eBPF source takes to start: from the process's execve to the
# attach of its last BPF program (strace timestamps of execve and bpf(2)),
# over R runs of `procexit watch --source ebpf`, then its median and range.
# Most of it is reading and indexing the kernel's BTF, creating the maps
# (the ring buffer's pages) and the verifier.
#
# Needs root. Installs strace (apt) when missing.
# Usage: bench/ebpf_start.sh [R] [BINARY]   (default 10, target/release/procexit
#                                            built here)
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-10}
bin=${2:-}
if [ "$(id -u)" != 0 ]; then
  echo "ebpf_start: run as root (the eBPF source loads BPF programs)" >&2
  exit 1
fi
if ! command -v strace >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends strace >/dev/null
fi
if [ -z "$bin" ]; then
  cargo build --release -q -p procexit-cli
  bin=target/release/procexit
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for i in $(seq "$R"); do
  strace -f -ttt -e trace=execve,bpf -o "$work/trace" \
    timeout -s INT 3 "$bin" watch --source ebpf --json >/dev/null 2>&1 || true
  awk '/execve\(/ { start = $2 }
       /BPF_RAW_TRACEPOINT_OPEN|BPF_LINK_CREATE/ && / = [0-9]+$/ { last = $2 }
       END { if (start && last) printf "%.1f\n", (last - start) * 1000 }' "$work/trace" >>"$work/ms"
done
sort -n "$work/ms" | awk -v bin="$bin" '{ v[NR] = $1 }
  END { if (NR == 0) { print "ebpf_start: no attach seen" > "/dev/stderr"; exit 1 }
        printf "%s: eBPF source start (execve to last attach), %d runs: median %.1f ms, min %.1f, max %.1f\n",
          bin, NR, v[int((NR + 1) / 2)], v[1], v[NR] }'
