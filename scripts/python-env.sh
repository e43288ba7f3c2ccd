#!/usr/bin/env bash
# Creates (idempotently) the project's Python virtual environment with the tools the tests talk to:
# moto (AWS emulator, server mode), Google's own Secret Manager client (emulator conformance), the AWS CLI
# (the benchmark baseline), and the peers' published sources their own tests come from. Prints the venv's path.
# Re-running is cheap: a stamp records what was installed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${KEYWAY_VENV:-$root/.venv}
reqs=$root/scripts/requirements-test.txt
stamp=$venv/.keyway-stamp
# The requirements and this script (which also fetches the peers' published sources) decide the stamp.
want=$(cat "$reqs" "$0" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv"; exit 0
fi
python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs" >&2
# Peers' own published sources, for their own tests (tests/python/test_peer_own_tests.py): raysecretsproxy's sdist
# holds tests/test_ray_secret_proxy.py, which the wheel does not.
"$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
  raysecretsproxy==0.0.3 -d "$venv/peers" >&2
echo "$want" > "$stamp"
echo "$venv"
