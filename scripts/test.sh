#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, builds the
# test guests and fixtures, then runs every test. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
for setup in scripts/fixtures/*.sh; do
    [ -e "$setup" ] && bash "$setup"
done
cargo build --all-targets
cargo test --all-targets
