#!/usr/bin/env bash
# Runs every test of the workspace (unit, property, integration, CLI, crash/kill tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  # nextest does not run doctests.
  cargo test --workspace --doc --quiet
else
  cargo test --workspace --lib --bins --tests --no-fail-fast "$@"
fi
