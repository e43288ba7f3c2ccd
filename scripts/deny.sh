#!/usr/bin/env bash
# Dependency policy: cargo deny check bans licenses sources (deny.toml), offline. Installs cargo-deny once
# (idempotent: skipped when the pinned version is there).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=0.20.2
if [ "$(cargo deny --version 2>/dev/null | awk '{print $2}')" != "$version" ]; then
  echo "==> installing cargo-deny $version" >&2
  cargo install --locked --quiet cargo-deny --version "$version"
fi
cargo deny --offline check bans licenses sources
