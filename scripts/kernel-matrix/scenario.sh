#!/bin/sh
# The kernel matrix's scenario: one run of the Linux acceptance cases on the
# running kernel, for every source. Runs as root, inside a qemu guest (from
# the initramfs that scripts/kernel-matrix.sh builds) or natively. Prints
# "KM ..." lines on stdout; scripts/kernel-matrix/analyze.py reads them.
#
# Usage: scenario.sh PROCEXIT [RING_TEST_BINARY]
#   PROCEXIT           the procexit binary to test
#   RING_TEST_BINARY   optional: the linux_ebpf test binary, whose one-page
#                      ring test checks that loss is counted
set -u
PX=$1
RING_TEST=${2:-}
W=/tmp/procexit-km.$$
rm -rf "$W"; mkdir -p "$W"; chmod 755 "$W"
# util-linux's setpriv (busybox's applet lacks --reuid; its shell prefers
# its own applets, hence the full path).
SETPRIV=/usr/bin/setpriv
[ -x $SETPRIV ] || SETPRIV=setpriv
UNPRIV="$SETPRIV --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --"

say() { printf 'KM %s\n' "$*"; }
# A case: its source, name and pid (and, for the killer, the sender's).
case_() { say CASE "$@"; echo "$@" >> "$W/cases"; }

# A cgroup of our own for the cgroup and memcg OOM cases: cgroup v2 when
# the unified hierarchy holds the memory controller, else v1's memory one.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  CG=/sys/fs/cgroup
  echo +memory > $CG/cgroup.subtree_control 2>/dev/null
  LIMIT=memory.max
elif [ -d /sys/fs/cgroup/memory ]; then
  CG=/sys/fs/cgroup/memory
  LIMIT=memory.limit_in_bytes
else
  CG=
fi
if [ -n "$CG" ]; then
  rmdir $CG/kmtest $CG/kmoom 2>/dev/null
  mkdir -p $CG/kmtest $CG/kmoom
  echo 24M > $CG/kmoom/$LIMIT
  [ -f $CG/kmoom/memory.swap.max ] && echo 0 > $CG/kmoom/memory.swap.max
fi
say KERNEL "$(uname -r)"
say CGROUP_ROOT "${CG:-none}"
say BTF "$([ -e /sys/kernel/btf/vmlinux ] && echo yes || echo no)"

# Waits (up to 30 s) for the watcher's start line on stderr; 1 if it died.
ready() {
  i=0
  while [ $i -lt 300 ]; do
    grep -q 'procexit: source' "$2" 2>/dev/null && return 0
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}

run_source() {
  src=$1
  case $src in
    connector-unpriv) as=$UNPRIV; flag=connector ;;
    *) as=; flag=$src ;;
  esac
  say BEGIN "$src" "$(cut -d' ' -f1 /proc/uptime)"
  # A process that is running before procexit starts.
  rm -f "$W/pre"; mkfifo "$W/pre"
  sh -c "read x < $W/pre; exit 7" &
  pre=$!
  sleep 0.3
  $as "$PX" watch --json --strict --source "$flag" > "$W/$src.json" 2> "$W/$src.err" &
  watcher=$!
  if ! ready $watcher "$W/$src.err"; then
    wait $watcher; rc=$?
    while IFS= read -r l; do say STDERR "$src" "$l"; done < "$W/$src.err"
    say STATUS "$src" "$rc" refused
    echo go > "$W/pre"; wait $pre
    return
  fi
  sleep 0.3
  # The first exit after the start: a program that exits at once.
  sh -c 'exit 42' & case_ "$src" instant $!; wait $!
  echo go > "$W/pre"; wait $pre; case_ "$src" preexisting $pre
  sh -c 'kill -TERM $$' & case_ "$src" signal $!; wait $!
  sleep 30 & k=$!; sleep 0.2; kill -KILL $k; wait $k; case_ "$src" killer $k $$
  (cd "$W" && ulimit -c unlimited && exec sh -c 'kill -SEGV $$') & case_ "$src" core $!; wait $!
  sh -c 'i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done' & case_ "$src" cpu $!; wait $!
  sh -c 'x=$(head -c 20000000 /dev/zero | tr "\0" a); exit 0' & case_ "$src" rss $!; wait $!
  if [ -n "$CG" ]; then
    # Moved, then exec'd (the connector reads the cgroup at exec; a
    # program that exits at once may be gone before that read, a race
    # the connector documents: this one lives long enough to be read).
    sh -c "echo \$\$ > $CG/kmtest/cgroup.procs; exec sh -c 'sleep 0.3; exit 3'" & case_ "$src" cgroup $!; wait $!
    sh -c "echo \$\$ > $CG/kmoom/cgroup.procs; x=\$(head -c 100000000 /dev/zero | tr '\\0' a); exit 0" &
    case_ "$src" oom $!; wait $!
  fi
  sleep 2
  kill -INT $watcher; wait $watcher; rc=$?
  say STATUS "$src" "$rc" ran
  while IFS= read -r l; do say STDERR "$src" "$l"; done < "$W/$src.err"
  # Only the scenario's own processes (natively the machine has others).
  grep '"type":"exit"' "$W/$src.json" > "$W/$src.exits"
  for p in $(sed -n "s/^$src [a-z]* \([0-9]*\).*/\1/p" "$W/cases"); do
    grep "\"pid\":$p," "$W/$src.exits" | while IFS= read -r l; do say JSON "$src" "$l"; done
  done
  grep -v '"type":"exit"' "$W/$src.json" | while IFS= read -r l; do say JSON "$src" "$l"; done
}

run_wait() {
  say BEGIN wait "$(cut -d' ' -f1 /proc/uptime)"
  sh -c 'sleep 1; exit 5' & p=$!
  "$PX" wait --timeout 20s "$p" > /dev/null 2> "$W/wait.err"; say WAIT code $?
  wait $p
  sh -c 'sleep 1; kill -TERM $$' & p=$!
  "$PX" wait --timeout 20s "$p" > /dev/null 2>> "$W/wait.err"; say WAIT signal $?
  wait $p
  sleep 30 & p=$!
  "$PX" wait --timeout 1s "$p" > /dev/null 2>> "$W/wait.err"; say WAIT timeout $?
  kill $p; wait $p
  sh -c 'sleep 1; exit 6' & p=$!
  $UNPRIV "$PX" wait --timeout 20s "$p" > /dev/null 2>> "$W/wait.err"; say WAIT unprivileged $?
  wait $p
  while IFS= read -r l; do say STDERR wait "$l"; done < "$W/wait.err"
}

{
  for s in ebpf connector connector-unpriv auto; do
    run_source $s
  done
  run_wait
  if [ -n "$RING_TEST" ]; then
    say BEGIN ring "$(cut -d' ' -f1 /proc/uptime)"
    PROCEXIT_RING_TEST_EXITS=300 "$RING_TEST" --exact a_full_ring_buffer_is_never_silent --nocapture > "$W/ring.out" 2>&1
    rc=$?
    say RING "$rc" "$(grep -o 'one-page ring: .*' "$W/ring.out" | head -1)"
    [ $rc = 0 ] || tail -5 "$W/ring.out" | while IFS= read -r l; do say STDERR ring "$l"; done
  fi
  say END "$(cut -d' ' -f1 /proc/uptime)"
}
[ -n "$CG" ] && rmdir $CG/kmtest $CG/kmoom 2>/dev/null
rm -rf "$W"
