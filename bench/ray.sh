#!/usr/bin/env bash
# The Ray benchmark (figures in docs/benchmarks.md) on release builds, as `pip install ./crates/python` installs
# them: builds the release keyway binary and GCP emulator, puts the release extension into the project venv
# (scripts/test.sh puts the debug one back), then runs bench/ray_bench.py.
#
# Usage: bench/ray.sh [ROUNDS=5]. Do not run while a build runs beside it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=$("$root/scripts/python-env.sh")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
cargo build --release --locked -q -p keyway -p keyway-testkit --bin keyway --bin keyway-gcp-emulator
VIRTUAL_ENV=$venv "$venv/bin/maturin" develop --release --quiet -m crates/python/Cargo.toml
"$venv/bin/python" bench/ray_bench.py "${1:-5}"
