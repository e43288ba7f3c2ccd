#!/usr/bin/env bash
# Creates (idempotently) the project's Python virtual environment with the tools the tests talk to:
# moto (AWS emulator, server mode), Google's own Secret Manager client (emulator conformance), the AWS CLI
# (the benchmark baseline). Prints the venv's path. Re-running is cheap: a stamp records what was installed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${KEYWAY_VENV:-$root/.venv}
reqs=$root/scripts/requirements-test.txt
stamp=$venv/.keyway-stamp
want=$(sha256sum "$reqs" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv"; exit 0
fi
python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs" >&2
echo "$want" > "$stamp"
echo "$venv"
