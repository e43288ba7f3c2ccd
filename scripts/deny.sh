#!/usr/bin/env bash
# Dependency policy: cargo deny check bans licenses sources (deny.toml), offline. Installs cargo-deny once
# (idempotent: skipped when the pinned version is there). cargo deny reads the metadata of every platform's
# crates (windows-sys, ...), which a build on Linux never downloads: `cargo fetch` gets them first (a no-op
# when they are in the registry cache; without it a fresh machine fails here).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=0.20.2
if [ "$(cargo deny --version 2>/dev/null | awk '{print $2}')" != "$version" ]; then
  echo "==> installing cargo-deny $version" >&2
  cargo install --locked --quiet cargo-deny --version "$version"
fi
cargo fetch --locked --quiet
cargo deny --offline check bans licenses sources
