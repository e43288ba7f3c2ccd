#!/usr/bin/env bash
# Runs every Keyway test: installs what the tests need (the project's Python venv with moto and Google's
# Secret Manager client), builds the workspace, runs the Rust tests (unit + integration against real
# emulators), builds the `keyway` Python package into the venv and, as root, the container image (buildah), and
# runs the Python tests (the GCP emulator proven by Google's own client, the AWS-agent API, flytekit end to end,
# the Python package, the manifests' commands inside the image).
# Idempotent; safe to re-run. Honors CARGO_TARGET_DIR.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

venv=$("$root/scripts/python-env.sh")
export KEYWAY_VENV=$venv

# systemd-analyze checks deploy/systemd/, systemd-socket-activate passes keyway a socket as a .socket unit would
# (both from the Debian package systemd; nothing is started or enabled).
if ! command -v systemd-analyze >/dev/null 2>&1 || ! command -v systemd-socket-activate >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing systemd (for systemd-analyze and systemd-socket-activate)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
  else
    echo "error: systemd-analyze or systemd-socket-activate is missing; install the systemd package (apt-get install systemd)" >&2
    exit 1
  fi
fi

echo "==> cargo build --workspace --all-targets" >&2
cargo build --workspace --all-targets --locked

echo "==> Rust tests" >&2
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  # nextest does not run doctests
  cargo test --workspace --locked --doc
else
  # Without nextest, .config/nextest.toml does not apply: the soak measures the machine, so it runs after the
  # rest, alone, and runs even when the rest failed (the script still fails then).
  rest=0
  cargo test --workspace --locked --no-fail-fast -- --skip soak:: || rest=$?
  cargo test -p keyway --test it --locked -- soak:: --test-threads=1
  if [ "$rest" -ne 0 ]; then
    echo "error: Rust tests failed (see above)" >&2
    exit "$rest"
  fi
fi

echo "==> keyway Python package (maturin develop into the venv)" >&2
VIRTUAL_ENV=$venv "$venv/bin/maturin" develop --quiet -m crates/python/Cargo.toml

# The container image, which tests/python/test_image.py runs the manifests' commands in (buildah needs root).
if [ "$(id -u)" -eq 0 ]; then
  echo "==> the image (scripts/image.sh)" >&2
  if ! command -v docker-registry >/dev/null 2>&1; then
    # The registry the image is pushed to in test_image.py (Debian's build of the CNCF distribution server).
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null
  fi
  KEYWAY_IMAGE_ARCHIVE=$("$root/scripts/image.sh")
  export KEYWAY_IMAGE_ARCHIVE
else
  echo "warning: not root, so the image is not built and tests/python/test_image.py is skipped" >&2
fi

echo "==> Python tests" >&2
"$venv/bin/python" -m pytest -q tests/python
