#!/usr/bin/env bash
# Installs what building and testing lifeboat needs on Debian/Ubuntu, when missing:
# libclang-dev (bindgen for sequoia's nettle backend), nettle-dev, pkg-config, libssl-dev
# (libcrypto for the bundled SQLCipher), and the real tools the interoperability tests run
# (age, gpg, zstd, sqlite3, Debian's SQLCipher 3 CLI `sqlcipher` for tests/sqlcipher.rs),
# and prometheus for `promtool check metrics` (tests/ops.rs), GNU time (peak memory in tests/s3.rs),
# PostgreSQL (server, client tools, and pgbench from postgresql-contrib) for the clusters
# tests/postgres.rs creates, strace (syscall fault injection in tests/faults.rs), and
# moto_server (PyPI `moto[server]`), the S3-compatible server tests/s3.rs runs, in a
# project-local virtualenv `.venv/` (gitignored). Idempotent; quiet when everything is present.
set -euo pipefail

packages=(libclang-dev nettle-dev pkg-config libssl-dev age gnupg zstd sqlite3 sqlcipher gzip tar prometheus time postgresql postgresql-contrib strace)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (https://rustup.rs)" >&2; exit 1; }

root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -x "$root/.venv/bin/moto_server" ]; then
  echo "setup: installing moto[server] into $root/.venv" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  if ! command -v python3 >/dev/null || ! python3 -m venv --help >/dev/null 2>&1 \
    || ! python3 -c 'import ensurepip' 2>/dev/null; then
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
  fi
  rm -rf "$root/.venv"
  python3 -m venv "$root/.venv"
  "$root/.venv/bin/pip" install -q --disable-pip-version-check 'moto[server]>=5,<6'
fi
