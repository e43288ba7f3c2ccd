#!/usr/bin/env bash
# Keyway's main job on the embedded local store, no cloud account: start the node daemon (`keyway serve`) on
# the example secrets in examples/secrets, read through it four ways, then stop it with SIGTERM.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build -q --locked -p keyway
keyway=${CARGO_TARGET_DIR:-$root/target}/debug/keyway
work=$(mktemp -d /dev/shm/keyway-demo.XXXXXX 2>/dev/null || mktemp -d)
socket=$work/keyway.sock
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$work"' EXIT

"$keyway" --config examples/keyway.toml --socket "$socket" serve > "$work/serve.out" 2> "$work/audit.log" &
daemon=$!
"$keyway" --socket "$socket" status --wait 10s    # what a node's init script does after starting the daemon

echo "--- keyway get (through the daemon):"
"$keyway" --socket "$socket" --daemon always get local://github#github_token; echo

if command -v curl >/dev/null; then
  echo "--- the AWS-agent-compatible endpoint over the socket (curl):"
  curl -s --unix-socket "$socket" "http://localhost/secretsmanager/get?secretId=team/db"; echo
fi

echo "--- keyway render (one batch request), files are 0400:"
"$keyway" --socket "$socket" --daemon always render --dir "$work/out" \
  github-token=local://github#github_token db-password=local://team/db
ls -l "$work/out"

echo "--- keyway render --template: an .env file from a template that holds references only:"
printf 'DB_USER=app\nDB_PASSWORD={{ local://team/db }}\n' > "$work/app.env.tpl"
"$keyway" --socket "$socket" --daemon always render --dir "$work/out" --template app.env="$work/app.env.tpl"
cat "$work/out/app.env"

echo "--- keyway inject: the same template filled to stdout (for a pipe, e.g. into kubectl apply -f -):"
"$keyway" --socket "$socket" --daemon always inject -i "$work/app.env.tpl"

echo "--- keyway exec --mask: the command gets the value; its output shows none:"
"$keyway" --socket "$socket" --daemon always exec --mask --env GITHUB_TOKEN=local://github#github_token -- \
  sh -c 'echo "cloning https://x-access-token:$GITHUB_TOKEN@github.com/org/repo (token of ${#GITHUB_TOKEN} characters)"
          printf "Authorization: Basic %s\n" "$(printf "x-access-token:%s" "$GITHUB_TOKEN" | base64 -w0)"'

echo "--- the audit log (caller uid, reference, decision; never a value):"
sleep 0.1; grep '"ref"' "$work/audit.log" | tail -3
