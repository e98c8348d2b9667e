#!/usr/bin/env bash
# The release binary's size as `cargo build --release` leaves it (profile in
# the workspace Cargo.toml), against the 1 MiB goal; appends the figure to
# bench/RESULTS.md. Exit status 1 when over the goal.
#
#   bench/release_size.sh
set -euo pipefail
cd "$(dirname "$0")/.."
goal=$((1 << 20))
cargo build --release --locked -q -p procexit-cli
exe=target/release/procexit
[ -f "$exe" ] || exe=target/release/procexit.exe
bytes=$(stat -c %s "$exe")
verdict=$([ "$bytes" -le "$goal" ] && echo "within" || echo "OVER")
line="| $(date -u +%Y-%m-%d) | $(git rev-parse --short HEAD 2>/dev/null || echo '?') | $(rustc -V | awk '{print $2}') | $(uname -m) | $bytes | $verdict 1 MiB ($goal) |"
echo "$exe: $bytes bytes ($verdict the 1 MiB goal)"
{
    echo
    echo "### Release binary size, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Command: \`bench/release_size.sh\` (\`cargo build --release\`, Linux $(uname -m))."
    echo
    echo "| date | commit | rustc | arch | bytes | goal |"
    echo "|---|---|---|---|---:|---|"
    echo "$line"
} >>bench/RESULTS.md
[ "$bytes" -le "$goal" ]
