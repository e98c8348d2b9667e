#!/usr/bin/env bash
# Rejects a GitHub workflow step that could pass with a failing command.
#
#   .ci/check-workflows.sh [FILE...]   check these (default: .github/workflows/*.yml)
#   .ci/check-workflows.sh --self-test check that the rules reject known bad steps
#
# GitHub starts an explicit `shell: bash` as `bash --noprofile --norc -eo
# pipefail {0}`, so any failing command fails the step. PowerShell (the
# windows runners' default) fails a step only on the last native command's
# exit code: $ErrorActionPreference does not apply to native commands. So
# every workflow must set `defaults: run: shell: bash`, every `shell:` must
# be bash, and nothing may switch the failure off again (continue-on-error,
# `|| true`, `set +e`, `set +o pipefail`).
set -euo pipefail

# check FILE: prints each problem, returns 1 if there was one.
check() {
  awk -v file="$1" '
    function bad(why) { printf "%s:%d: %s: %s\n", file, NR, why, $0; failed = 1 }
    # The top-level `defaults: run: shell: bash`.
    /^defaults:[[:space:]]*$/ { in_defaults = 1; next }
    /^[^[:space:]#]/ { in_defaults = 0; in_run = 0 }
    in_defaults && /^  run:[[:space:]]*$/ { in_run = 1; next }
    in_defaults && in_run && /^    shell:[[:space:]]*bash[[:space:]]*$/ { default_bash = 1 }
    /^[[:space:]]*shell:/ {
      v = $0; sub(/^[[:space:]]*shell:[[:space:]]*/, "", v); sub(/[[:space:]]*(#.*)?$/, "", v)
      if (v != "bash") bad("a shell other than bash can hide a failing command")
    }
    /^[[:space:]]*continue-on-error:/ && $0 !~ /continue-on-error:[[:space:]]*false/ {
      bad("continue-on-error lets a failing step pass")
    }
    /\|\|[[:space:]]*(true|:)([[:space:]]|;|$)/ { bad("`|| true` hides a failing command") }
    /set[[:space:]]+\+[eo]/ { bad("`set +e` / `set +o` turns failing off") }
    /ErrorActionPreference|PSNativeCommandUseErrorActionPreference/ {
      bad("PowerShell error settings: use bash instead")
    }
    END {
      if (!default_bash) {
        printf "%s: no top-level `defaults: run: shell: bash` (PowerShell, the windows default, fails a step only on its last command)\n", file
        failed = 1
      }
      exit failed
    }
  ' "$1"
}

self_test() {
  local dir ok=0
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' RETURN
  local head='name: t
on: push
'
  local defaults='defaults:
  run:
    shell: bash
'
  local steps='jobs:
  j:
    runs-on: windows-latest
    steps:
      - name: two commands
        run: |
          cargo test --test a
          cargo test --test b
'
  printf '%s%s%s' "$head" "$defaults" "$steps" > "$dir/good.yml"
  # PowerShell by default: the first cargo test failing would pass.
  printf '%s%s' "$head" "$steps" > "$dir/no-defaults.yml"
  printf '%s%s%s        shell: pwsh\n' "$head" "$defaults" "$steps" > "$dir/pwsh.yml"
  printf '%s%s%s        continue-on-error: true\n' "$head" "$defaults" "$steps" > "$dir/continue.yml"
  printf '%s%s%s          rustup target add x || true\n' "$head" "$defaults" "$steps" > "$dir/or-true.yml"
  printf '%s%s%s          set +e\n' "$head" "$defaults" "$steps" > "$dir/set-e.yml"
  if ! check "$dir/good.yml"; then
    echo "check-workflows self-test: a good workflow was rejected" >&2
    ok=1
  fi
  for f in no-defaults pwsh continue or-true set-e; do
    if check "$dir/$f.yml" >/dev/null; then
      echo "check-workflows self-test: $f.yml was accepted" >&2
      ok=1
    fi
  done
  return $ok
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "${1:-}" = --self-test ]; then
  self_test
  echo "check-workflows: self-test passed"
  exit 0
fi
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(.github/workflows/*.yml)
status=0
for f in "${files[@]}"; do
  check "$f" || status=1
done
if [ "$status" != 0 ]; then
  echo "check-workflows: a workflow step could pass with a failing command" >&2
  exit 1
fi
echo "check-workflows: ${#files[@]} workflow(s) fail on any failing command"
