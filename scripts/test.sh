#!/usr/bin/env bash
# Runs every test: formatting, lints, unit and integration tests (which drive the real
# age, gpg, zstd and sqlite3). Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets --quiet
cargo test --doc --quiet
