#!/usr/bin/env bash
# The project's test command (README "Set-up"; .ci/run calls it too).
# Installs what it needs on a fresh Debian 12 machine, then runs formatting,
# lints and every test: Linux natively, Windows cross-compiled under Wine.
#
# Environment:
#   PROCEXIT_STRICT_SKIPS=1   a test that would skip (no root, no kernel
#                             feature) fails instead
#   PROCEXIT_SKIP_WINDOWS=1   skip the Windows cross build and Wine tests
#   PROCEXIT_SKIP_KERNEL_MATRIX=1
#                             skip the kernel matrix (Debian's 5.10, 6.1 and
#                             6.12 kernels under qemu, plus this kernel)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc libc6-dev)
# The committed BPF object is rebuilt from its C source and compared.
command -v clang >/dev/null || need_apt+=(clang)
command -v llvm-strip >/dev/null || need_apt+=(llvm)
[ -f /usr/include/bpf/bpf_helpers.h ] || need_apt+=(libbpf-dev)
# The journald sink's tests start a real systemd-journald and read it back.
[ -x /lib/systemd/systemd-journald ] && command -v journalctl >/dev/null || need_apt+=(systemd)
# The syslog sink's tests start a real rsyslogd with a configuration of their own.
[ -x /usr/sbin/rsyslogd ] || need_apt+=(rsyslog)
# Tests probe what the running kernel allows (the connector as nobody) with Python.
[ -x /usr/bin/python3 ] || need_apt+=(python3)
# watch --metrics' test has a real Prometheus scrape it and queries it.
[ -x /usr/bin/prometheus ] || need_apt+=(prometheus)
# watch --otlp's tests send to a real collector, rotel, installed from PyPI
# into a virtual environment of its own (below).
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
# The NTSTATUS names are generated from mingw-w64's ntstatus.h.
[ -r /usr/share/mingw-w64/include/ntstatus.h ] || need_apt+=(mingw-w64-common)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "test.sh: missing ${need_apt[*]}; install them (sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi

# journald refuses to start without a machine id (container images have none).
if [ "$(id -u)" = 0 ] && [ ! -s /etc/machine-id ] && command -v systemd-machine-id-setup >/dev/null; then
  systemd-machine-id-setup >/dev/null
fi

# rotel (PyPI): its wheel ships the collector binary rotel-agent. The tests
# find it through PROCEXIT_ROTEL_AGENT.
ROTEL_VERSION=0.0.1a15
ROTEL_VENV="${PROCEXIT_TOOLS:-$HOME/.cache/procexit-test}/rotel-venv"
rotel_agent() { ls "$ROTEL_VENV"/lib/python3*/site-packages/rotel/rotel-agent 2>/dev/null | head -1; }
if [ -z "$(rotel_agent)" ] || ! "$ROTEL_VENV/bin/pip" show rotel 2>/dev/null | grep -qx "Version: $ROTEL_VERSION"; then
  echo "== installing rotel $ROTEL_VERSION (PyPI) into $ROTEL_VENV"
  python3 -m venv "$ROTEL_VENV"
  "$ROTEL_VENV/bin/pip" install -q --disable-pip-version-check "rotel==$ROTEL_VERSION"
fi
if [ -n "$(rotel_agent)" ]; then
  export PROCEXIT_ROTEL_AGENT="$(rotel_agent)"
fi

echo "== toolchain: $(cargo --version), $(rustc --version)"
echo "== BPF object matches its source"
bash scripts/build-bpf.sh --check
echo "== generated tables are what their headers give"
bash scripts/gen-ntstatus.sh --check
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy (linux)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test (linux)"
cargo test --workspace --locked

if [ "${PROCEXIT_SKIP_KERNEL_MATRIX:-0}" = 1 ]; then
  echo "== kernel matrix: SKIPPED: PROCEXIT_SKIP_KERNEL_MATRIX=1"
elif [ "$(id -u)" != 0 ]; then
  echo "== kernel matrix: SKIPPED: needs root (BPF, cgroups, apt)"
  [ "${PROCEXIT_STRICT_SKIPS:-0}" = 1 ] && { echo "test.sh: strict skips: the kernel matrix was skipped" >&2; exit 1; }
else
  echo "== kernel matrix (Linux kernels under qemu and this one)"
  bash scripts/kernel-matrix.sh
fi

if [ "${PROCEXIT_SKIP_WINDOWS:-0}" != 1 ] && [ -f .ci/windows.sh ]; then
  echo "== windows (cross-compiled, tests under Wine)"
  bash .ci/windows.sh
fi
echo "== all tests passed"
