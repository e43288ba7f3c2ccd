#!/usr/bin/env bash
# `keyway exec --mask` throughput: a command writing ~200 MB of text (base64 of random bytes) through keyway's
# masking relay, with 1 and with 10 values (each with its base64, percent-encoded and JSON forms), side by side
# with the same output through one more pipe hop (`cat | cat`: what any relay costs at least) and through `sed`
# replacing one fixed string (a streaming editor, what a masking pipe is usually built from), in one hyperfine
# run. Figures go to docs/benchmarks.md.
#
# Usage: bench/mask.sh [MB=150] [RUNS=5]. Needs hyperfine (installed with apt-get when missing, as root).
# Do not run while a build runs beside it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mb=${1:-150}
runs=${2:-5}
out=$root/bench/out/mask
rm -rf "$out" && mkdir -p "$out/secrets"

command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
cargo build --release --locked -q -p keyway
keyway=$CARGO_TARGET_DIR/release/keyway

# Values shaped like tokens; none of them occurs in the data, so every byte is searched and passed on.
envs=()
for i in $(seq 1 10); do
  printf 'tok_%02d_%s' "$i" "$(head -c 24 /dev/urandom | base64 | tr -d '/+=')" > "$out/secrets/s$i"
  envs+=(-e "A$i=local://s$i")
done
head -c $((mb * 1000 * 1000)) /dev/urandom | base64 > "$out/data.txt"
bytes=$(stat -c %s "$out/data.txt")
export KEYWAY_LOCAL_DIR=$out/secrets KEYWAY_DAEMON=never

# The relay must pass every byte through unchanged when no value occurs.
"$keyway" exec --mask "${envs[@]}" -- cat "$out/data.txt" | cmp - "$out/data.txt"

hyperfine --style basic --warmup 1 --runs "$runs" --export-json "$out/mask.json" \
  -n "cat | cat (a pipe hop, unmasked)" "cat $out/data.txt | cat > /dev/null" \
  -n "sed, one fixed string" "cat $out/data.txt | sed 's/tok_01_x/<concealed>/g' > /dev/null" \
  -n "keyway exec --mask, 1 value" "$keyway exec --mask ${envs[*]:0:2} -- cat $out/data.txt > /dev/null" \
  -n "keyway exec --mask, 10 values" "$keyway exec --mask ${envs[*]} -- cat $out/data.txt > /dev/null"

python3 - "$out/mask.json" "$bytes" <<'PY'
import json, statistics, sys
results = json.load(open(sys.argv[1]))["results"]
size = int(sys.argv[2]) / 1e6
for r in results:
    median = statistics.median(r["times"])
    print(f'{r["command"]:32} median {median:6.3f} s  {size / median:7.0f} MB/s')
PY
