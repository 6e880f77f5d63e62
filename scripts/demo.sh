#!/usr/bin/env bash
# lifeboat's main job on the bundled example policies and fixtures, with no setup:
# validate the policies, back up an SQLite database and a wallet directory, list them,
# verify them down to a full restore, and restore both into ./restored — each restore timed.
# Backups go to ./backups, state to ./.state; the keys are the TEST-ONLY fixture keys.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --quiet
lifeboat() { echo "\$ lifeboat $*"; cargo run --quiet -- "$@"; }
export LIFEBOAT_STATE_DIR="$PWD/.state"
export LIFEBOAT_IDENTITY_FILE="fixtures/keys/TEST-ONLY-age-identity.txt"

lifeboat policy check
lifeboat backup --all
lifeboat list
lifeboat verify shop --level checksum
lifeboat verify wallet --level restore
lifeboat restore shop --to restored/shop.db --force
lifeboat restore wallet --to restored/wallet --force
lifeboat --identity fixtures/keys/TEST-ONLY-openpgp-secret.asc restore wallet --to restored/wallet-from-openpgp --force
# Drill each policy, proving that every key it is encrypted to decrypts it on its own.
lifeboat drill shop --each-identity
lifeboat drill wallet --each-identity --identity fixtures/keys/TEST-ONLY-age-identity.txt \
  --identity fixtures/keys/TEST-ONLY-openpgp-secret.asc
lifeboat report --since 1d
