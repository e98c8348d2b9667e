#!/usr/bin/env bash
# The release binaries' sizes as `cargo build --release` leaves them
# (profile in the workspace Cargo.toml), against the 1.5 MiB ceiling: the host's
# (Linux x86-64) and, when the cross toolchain that .ci/windows.sh installs
# is present, x86_64-pc-windows-gnu (Debian's rustc with -Zbuild-std,
# mingw-w64). Appends the figures to bench/RESULTS.md. Exit status 1 when
# one is over the ceiling.
#
#   bench/release_size.sh
set -euo pipefail
cd "$(dirname "$0")/.."
goal=$((3 << 19))
commit=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
rows=()
over=0

# $1 target, $2 compiler, $3 the binary
measure() {
  local bytes verdict
  bytes=$(stat -c %s "$3")
  if [ "$bytes" -le "$goal" ]; then
    verdict=within
  else
    verdict=OVER
    over=1
  fi
  echo "$1: $3: $bytes bytes ($verdict the 1.5 MiB ceiling)"
  rows+=("| $(date -u +%Y-%m-%d) | $commit | $1 | $2 | $bytes | $verdict 1.5 MiB ($goal) |")
}

cargo build --release --locked -q -p procexit-cli
measure "$(rustc -vV | sed -n 's/^host: //p')" "rustc $(rustc -V | awk '{print $2}')" \
  target/release/procexit

if [ -x /usr/bin/rustc ] && command -v x86_64-w64-mingw32-gcc >/dev/null &&
  [ -d "$(/usr/bin/rustc --print sysroot)/lib/rustlib/src/rust/library" ]; then
  RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=target/windows \
    cargo build -q -Zbuild-std --target x86_64-pc-windows-gnu --release --locked -p procexit-cli
  measure x86_64-pc-windows-gnu "rustc $(/usr/bin/rustc -V | awk '{print $2}') -Zbuild-std" \
    target/windows/x86_64-pc-windows-gnu/release/procexit.exe
else
  echo "x86_64-pc-windows-gnu: not measured (needs the cross toolchain .ci/windows.sh installs)"
fi

{
  echo
  echo "### Release binary size, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Command: \`bench/release_size.sh\` (\`cargo build --release\`; for Windows with"
  echo "Debian's rustc, \`-Zbuild-std\` and mingw-w64)."
  echo
  echo "| date | commit | target | compiler | bytes | ceiling |"
  echo "|---|---|---|---|---:|---|"
  printf '%s\n' "${rows[@]}"
} >>bench/RESULTS.md
[ "$over" = 0 ]
