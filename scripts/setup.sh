#!/usr/bin/env bash
# Installs what building and testing lifeboat needs on Debian/Ubuntu, when missing:
# libclang-dev (bindgen for sequoia's nettle backend), nettle-dev, pkg-config, and the real
# tools the interoperability tests run (age, gpg, zstd, sqlite3), and prometheus for
# `promtool check metrics` (tests/ops.rs). Idempotent; quiet when everything is present.
set -euo pipefail

packages=(libclang-dev nettle-dev pkg-config age gnupg zstd sqlite3 gzip tar prometheus)
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
