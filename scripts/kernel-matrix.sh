#!/usr/bin/env bash
# The kernel matrix: procexit's Linux acceptance cases on Debian's own
# kernels (5.10 from bullseye, 6.1 and 6.12 from bookworm), each booted
# under qemu (software emulation), and on the machine's own kernel natively.
# Prints a table (case x kernel, per source) and fails when a cell is worse
# than scripts/kernel-matrix/expected.txt says it must be.
#
# What it needs it installs (as root): qemu-system-x86 (with qemu-utils,
# from bookworm-backports, so a backports qemu-utils is kept), python3. The
# kernel packages and busybox-static are fetched with a private apt
# configuration (never the machine's apt sources) into the cache
# ($PROCEXIT_KERNEL_CACHE, default ~/.cache/procexit/kernel-matrix), so
# reruns download nothing.
#
# Usage: scripts/kernel-matrix.sh [--markdown] [KERNEL...]
#   KERNEL      5.10, 6.1, 6.12 or native (default: all of them)
#   --markdown  also print the support table in Markdown (for the README)
# Environment:
#   PROCEXIT_KERNEL_CACHE   the cache directory
#   PROCEXIT_KERNEL_5_10, PROCEXIT_KERNEL_6_1, PROCEXIT_KERNEL_6_12
#                           the Debian kernel package of that column
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${PROCEXIT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/procexit/kernel-matrix}
markdown=
kernels=()
for a in "$@"; do
  case $a in
    --markdown) markdown=--markdown ;;
    5.10 | 6.1 | 6.12 | native) kernels+=("$a") ;;
    *) echo "kernel-matrix: unknown argument $a" >&2; exit 2 ;;
  esac
done
((${#kernels[@]})) || kernels=(5.10 6.1 6.12 native)
declare -A PACKAGE=(
  [5.10]=${PROCEXIT_KERNEL_5_10:-linux-image-5.10.0-46-amd64}
  [6.1]=${PROCEXIT_KERNEL_6_1:-linux-image-6.1.0-57-amd64}
  [6.12]=${PROCEXIT_KERNEL_6_12:-linux-image-6.12.118+deb12-amd64}
)
start=$(date +%s)
[ "$(id -u)" = 0 ] || { echo "kernel-matrix: needs root (BPF, cgroups, apt)" >&2; exit 1; }

# A private apt: its own source list, lists and archive cache.
APT=$CACHE/apt
mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$CACHE/debs" "$CACHE/run"
key=/usr/share/keyrings/debian-archive-keyring.gpg
{
  for s in bookworm bookworm-backports bullseye; do
    echo "deb [signed-by=$key] http://deb.debian.org/debian $s main"
  done
  for s in bookworm-security bullseye-security; do
    echo "deb [signed-by=$key] http://deb.debian.org/debian-security $s main"
  done
} > "$APT/sources.list"
papt() {
  apt-get -q -o Dir::Etc::SourceList="$APT/sources.list" -o Dir::Etc::SourceParts=- \
    -o Dir::State::Lists="$APT/lists" -o Dir::Cache::Archives="$APT/archives" \
    -o APT::Sandbox::User=root -o DPkg::Lock::Timeout=600 "$@"
}
updated=
papt_update() {
  [ -n "$updated" ] && return
  papt update -qq >/dev/null
  updated=1
}
need_qemu=
for k in "${kernels[@]}"; do [ "$k" = native ] || need_qemu=1; done
if [ -n "$need_qemu" ] && ! command -v qemu-system-x86_64 >/dev/null; then
  papt_update
  # Together from backports: bookworm's qemu-system-x86 would remove a
  # backports qemu-utils.
  DEBIAN_FRONTEND=noninteractive papt install -y -qq --no-install-recommends \
    -t bookworm-backports qemu-system-x86 qemu-utils >/dev/null
fi
if ! command -v python3 >/dev/null; then
  papt_update
  DEBIAN_FRONTEND=noninteractive papt install -y -qq --no-install-recommends python3 >/dev/null
fi
fetch() { # package -> the cached .deb
  local deb
  deb=$(ls "$CACHE/debs/${1}_"*.deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    papt_update
    (cd "$CACHE/debs" && papt download -qq "$1" >/dev/null)
    deb=$(ls "$CACHE/debs/${1}_"*.deb | head -1)
  fi
  echo "$deb"
}

echo "== kernel-matrix: building the release binary"
cargo build --release --locked -q -p procexit-cli
PX=$ROOT/target/release/procexit
RING_TEST=$(cargo test --locked -q -p procexit --test linux_ebpf --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "linux_ebpf":
        print(m["executable"])')

if [ -n "$need_qemu" ]; then
  # One initramfs for every kernel: busybox, procexit and the ring test with
  # their libraries, util-linux's setpriv, the scenario and an /init.
  BB=$CACHE/busybox
  if [ ! -x "$BB/bin/busybox" ]; then
    rm -rf "$BB"; dpkg-deb -x "$(fetch busybox-static)" "$BB"
  fi
  IR=$CACHE/initramfs
  rm -rf "$IR"; mkdir -p "$IR"/{bin,usr/bin,proc,sys,dev,tmp,run}
  cp "$BB/bin/busybox" "$IR/bin/"
  put() { # file [dest] with the libraries ldd lists
    local f=$1 dest=${2:-$1}
    mkdir -p "$IR$(dirname "$dest")"; cp -L "$f" "$IR$dest"
    for lib in $(ldd "$f" | grep -o '/[^ ]*'); do
      [ -e "$IR$lib" ] || { mkdir -p "$IR$(dirname "$lib")"; cp -L "$lib" "$IR$lib"; }
    done
  }
  put "$PX" /procexit
  put "$RING_TEST" /linux_ebpf
  put "$(command -v setpriv)" /usr/bin/setpriv
  cp scripts/kernel-matrix/scenario.sh "$IR/scenario.sh"
  cat > "$IR/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo KM BOOTED
sh /scenario.sh /procexit /linux_ebpf 2>/dev/null
poweroff -f
INIT
  chmod +x "$IR/init"
  (cd "$IR" && find . | "$BB/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1) > "$CACHE/initramfs.cpio.gz"
fi

# The guests run at once (each is mostly one busy emulator thread), then
# the native column, on a machine the guests no longer load.
logs=()
guests=()
for k in "${kernels[@]}"; do
  [ "$k" = native ] && continue
  pkg=${PACKAGE[$k]}
  kdir=$CACHE/kernels/$pkg
  if [ ! -f "$kdir/vmlinuz" ]; then
    rm -rf "$kdir"; mkdir -p "$kdir"
    dpkg-deb --fsys-tarfile "$(fetch "$pkg")" | tar -x -C "$kdir" --wildcards './boot/*'
    mv "$kdir"/boot/vmlinuz-* "$kdir/vmlinuz"; mv "$kdir"/boot/config-* "$kdir/config"
    rm -rf "$kdir/boot"
  fi
  echo "== kernel-matrix: $k ($pkg) under qemu"
  timeout 420 qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp 2 \
    -kernel "$kdir/vmlinuz" -initrd "$CACHE/initramfs.cpio.gz" \
    -append 'console=ttyS0 panic=-1 quiet loglevel=1' \
    -display none -serial stdio -monitor none -no-reboot < /dev/null > "$CACHE/run/$k.log" 2>&1 &
  guests+=($!)
  logs+=("$k=$CACHE/run/$k.log")
done
for g in "${guests[@]}"; do wait "$g" || true; done
((${#guests[@]})) && echo "   guests done after $(($(date +%s) - start)) s"
for k in "${kernels[@]}"; do
  [ "$k" = native ] || continue
  echo "== kernel-matrix: native $(uname -r)"
  sh scripts/kernel-matrix/scenario.sh "$PX" "$RING_TEST" > "$CACHE/run/native.log" 2>/dev/null || true
  logs+=("native=$CACHE/run/native.log")
done

echo "== kernel-matrix: results ($(($(date +%s) - start)) s in all)"
python3 scripts/kernel-matrix/analyze.py --expected scripts/kernel-matrix/expected.txt $markdown "${logs[@]}"
