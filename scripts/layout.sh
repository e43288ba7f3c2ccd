#!/usr/bin/env bash
# The code layout of the `keyway` binary (crates/cli/build.rs): which functions lld places first.
#
#   scripts/layout.sh           profile the daemon and write crates/cli/keyway.order (commit it)
#   scripts/layout.sh --check   how much of keyway.order the last `dist` link found; exit 1 under 90%
#
# The profile: the `dist` binary under callgrind serving what a node's daemon serves: start-up, the first
# fetch of 50 secrets from moto on the AWS agent's route over TCP, cached reads there (wrk) and on the native
# API over the unix socket, the probes and the metrics, then SIGTERM. Every function that ran goes in the file,
# by its mangled name, which lld's map ties to the addresses callgrind saw. Regenerate after a toolchain update
# or a large change (the check says when): names that no longer exist are skipped, so a stale file only costs
# memory (docs/benchmarks.md), never a failed link.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/keyway/target}
source "$root/scripts/dist.sh"
order=$KEYWAY_CODE_LAYOUT
map=$KEYWAY_LINK_MAP

if [ "${1:-}" = "--check" ]; then
  if [ ! -s "$map" ]; then
    echo "error: no linker map at $map: build with scripts/dist.sh sourced (scripts/release.sh does)" >&2
    exit 2
  fi
  read -r found listed < <(python3 "$root/scripts/layout.py" coverage "$order" "$map")
  percent=$((found * 100 / listed))
  echo "code layout: $found of the $listed functions in crates/cli/keyway.order placed first ($percent%)"
  if [ "$percent" -lt 90 ]; then
    echo "error: the code layout is stale (a new toolchain or renamed functions); run scripts/layout.sh and commit crates/cli/keyway.order" >&2
    exit 1
  fi
  exit 0
fi

if ! command -v valgrind >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
source "$root/bench/lib.sh"
bench_tools
venv=$("$root/scripts/python-env.sh")
cargo build --profile dist --locked -q -p keyway
work=$(mktemp -d)
bench_on_exit=$work
bench_moto "$venv"

port=$(free_port)
metrics=127.0.0.1:$(free_port)
bench_keyway_config "$work/keyway.toml" "socket = \"$work/keyway.sock\"" "tcp = \"127.0.0.1:$port\"" \
  "metrics = \"$metrics\""
valgrind --tool=callgrind --dump-instr=yes --compress-pos=no --compress-strings=no \
  --callgrind-out-file="$work/callgrind.out" "$CARGO_TARGET_DIR/dist/keyway" --config "$work/keyway.toml" serve \
  > "$work/serve.out" 2> "$work/serve.err" & serve=$!
pids+=($serve)
token=(-H "X-Aws-Parameters-Secrets-Token: bench-token")
for _ in $(seq 600); do curl -fs -o /dev/null "${token[@]}" "http://127.0.0.1:$port/ping" && break; sleep 0.1; done
for i in $(seq -w 1 50); do
  curl -fs -o /dev/null "${token[@]}" "http://127.0.0.1:$port/secretsmanager/get?secretId=bench-$i"
  curl -fs -o /dev/null --unix-socket "$work/keyway.sock" "http://keyway/v1/secret?ref=aws-sm://bench-$i"
done
ROUTE=agent wrk -t1 -c16 -d3s -s "$root/bench/rotate.lua" "http://127.0.0.1:$port" > /dev/null
curl -fs -o /dev/null --unix-socket "$work/keyway.sock" http://keyway/healthz
curl -fs -o /dev/null --unix-socket "$work/keyway.sock" http://keyway/readyz
curl -fs -o /dev/null "http://$metrics/metrics"
kill -TERM "$serve"
wait "$serve" || { cat "$work/serve.err" >&2; echo "error: keyway serve under callgrind failed" >&2; exit 1; }

python3 "$root/scripts/layout.py" order "$map" "$work/callgrind.out" "$order"
