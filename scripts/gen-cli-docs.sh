#!/usr/bin/env bash
# Rewrites crates/procexit-cli/generated/: the help texts that `--help`
# prints (rendered by clap), the shell completion scripts and man pages that
# `procexit completions` and `procexit man` print (clap_complete,
# clap_mangen), all from the command-line model in src/args.rs. Run it
# after changing a flag or a help text, and commit the result; `cargo test`
# fails while the committed files differ from what the definition gives.
#
#   scripts/gen-cli-docs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PROCEXIT_REGENERATE=1 cargo test -q -p procexit-cli --bin procexit \
  generated_completions_and_man_pages_are_current
echo "gen-cli-docs.sh: rewrote crates/procexit-cli/generated/"
git status --short crates/procexit-cli/generated/
