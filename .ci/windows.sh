#!/usr/bin/env bash
# Cross-builds the workspace for Windows and runs its tests under Wine.
# Called by .ci/run; runnable alone from any directory. Idempotent.
#
#   PROCEXIT_STRICT_SKIPS=1  only skip what cannot work on this machine at all
#   PROCEXIT_WINE_PREFIX     Wine prefix to use (default /tmp/procexit-wine)
#
# Debian's rustc-web ships the std sources -Zbuild-std needs; mingw-w64
# links; Wine 8 runs the test executables.
# Why each step: docs/windows-cross-build.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STRICT=${PROCEXIT_STRICT_SKIPS:-0}
T0=$SECONDS
step() { printf '\n== windows: %s (%ss)\n' "$*" "$((SECONDS - T0))"; }
# skip REASON [impossible]: report a skipped step; in strict mode only
# "impossible" skips are allowed.
skip() {
  if [ "$STRICT" = 1 ] && [ "${2:-}" != impossible ]; then
    echo "windows: FAIL (PROCEXIT_STRICT_SKIPS=1): $1" >&2
    exit 1
  fi
  echo "windows: SKIP: $1"
}

step "packages"
PKGS=(rustc-web rust-web-src rust-web-clippy gcc-mingw-w64-x86-64-win32 gcc-mingw-w64-i686-win32 wine64)
if ! dpkg -s "${PKGS[@]}" >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
fi

WINE=/usr/lib/wine/wine64
WINESERVER=/usr/lib/wine/wineserver64
export WINEPREFIX=${PROCEXIT_WINE_PREFIX:-/tmp/procexit-wine}
export WINEDEBUG=-all WINEDLLOVERRIDES='mscoree,mshtml='
unset DISPLAY WAYLAND_DISPLAY

step "versions"
cargo -V
/usr/bin/rustc -V
/usr/bin/cargo-clippy --version 2>/dev/null || true
x86_64-w64-mingw32-gcc --version | head -1
"$WINE" --version

step "ProcessPrng shim and Wine prefix"
# Rust std imports ProcessPrng from bcryptprimitives.dll, which Wine 8.0
# lacks; a 4 KB shim forwarding to RtlGenRandom goes into system32.
SHIM=$ROOT/target/windows/shim
mkdir -p "$SHIM"
cat > "$SHIM/bcryptprimitives.c" <<'C'
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buf, ULONG len); /* advapi32!RtlGenRandom */
BOOL WINAPI DllMain(HINSTANCE h, DWORD reason, LPVOID r) { return TRUE; }
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n; len -= n;
    }
    return TRUE;
}
C
x86_64-w64-mingw32-gcc -shared -O2 -s -nostdlib -Wl,-e,DllMain \
  -o "$SHIM/bcryptprimitives.dll" "$SHIM/bcryptprimitives.c" -ladvapi32
SYS32=$WINEPREFIX/drive_c/windows/system32
# A server left by an interrupted run of this script would block `-w`.
"$WINESERVER" -k 2>/dev/null || true
if [ ! -d "$SYS32" ]; then
  "$WINE" wineboot -i >/dev/null 2>&1 || true
  "$WINESERVER" -w || true
fi
cp "$SHIM/bcryptprimitives.dll" "$SYS32/"
# Report Windows 10, the oldest Windows procexit runs on (a fresh prefix
# says Windows 7, where no Rust program since 1.78 starts).
"$WINE" reg add 'HKCU\Software\Wine' /v Version /t REG_SZ /d win10 /f >/dev/null 2>&1
"$WINESERVER" -w || true
# A persistent server, and Wine's services started now with their output
# detached: otherwise the first test exe starts them and they keep the
# caller's stdout pipe open after cargo exits (the pipeline then hangs).
"$WINESERVER" -p 2>/dev/null || true
trap '"$WINESERVER" -k 2>/dev/null || true' EXIT
"$WINE" cmd /c exit 0 </dev/null >/dev/null 2>&1 || true

# Everything below uses Debian's rustc 1.96 (it has the std sources that
# -Zbuild-std needs); a subshell keeps that away from host builds.
(
  export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
  export CARGO_TARGET_DIR=$ROOT/target/windows
  export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=$WINE
  X64=(-Zbuild-std --target x86_64-pc-windows-gnu --workspace --locked)

  step "build x86_64-pc-windows-gnu"
  cargo build "${X64[@]}" --all-targets

  step "clippy x86_64-pc-windows-gnu"
  /usr/bin/cargo-clippy clippy "${X64[@]}" --all-targets -- -D warnings

  step "test x86_64-pc-windows-gnu under Wine"
  cargo test "${X64[@]}"

  step "check i686-pc-windows-gnu"
  # Type-checked only: running its tests needs 32-bit Wine (i386 multiarch).
  cargo check -Zbuild-std --target i686-pc-windows-gnu --workspace --all-targets --locked

  step "check aarch64-pc-windows-msvc"
  if /usr/bin/rustc --print target-list | grep -qx aarch64-pc-windows-msvc; then
    if ! cargo check -Zbuild-std --target aarch64-pc-windows-msvc --workspace --all-targets --locked; then
      echo "windows: aarch64-pc-windows-msvc check failed" >&2
      exit 1
    fi
  else
    skip "rustc $(/usr/bin/rustc -V) has no aarch64-pc-windows-msvc target" impossible
  fi
)
step "done"
