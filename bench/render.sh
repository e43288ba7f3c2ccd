#!/usr/bin/env bash
# Render benchmark: 50 secrets from moto (a local AWS Secrets Manager) with `keyway render`, side by side with
# the init-script way (`aws secretsmanager get-secret-value | jq -r .SecretString | jq -r .github_token`, once
# per secret), in one hyperfine run. Figures go to docs/benchmarks.md.
#
# Usage: bench/render.sh [N_SECRETS=50] [RUNS=5]
# Needs: the project venv (scripts/python-env.sh), hyperfine and jq (installed with apt-get when missing, as root).
# Do not run while a build runs beside it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-50}
runs=${2:-5}
out=$root/bench/out
mkdir -p "$out"

need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
command -v jq >/dev/null || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
venv=$("$root/scripts/python-env.sh")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
cargo build --release --locked -q -p keyway
keyway=$CARGO_TARGET_DIR/release/keyway

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null; wait $moto 2>/dev/null || true' EXIT
export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
for _ in $(seq 100); do curl -fs "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1 && break; sleep 0.1; done

# Seed N secrets through the same CLI the baseline uses.
args=()
for i in $(seq -w 1 "$n"); do
  "$venv/bin/aws" secretsmanager create-secret --name "bench/github-$i" \
    --secret-string "{\"github_token\":\"ghp_bench_$i\",\"username\":\"octocat\"}" >/dev/null
  args+=("github-$i=aws-sm://bench/github-$i#github_token")
done

cat > "$out/awscli-loop.sh" <<SCRIPT
#!/usr/bin/env bash
# What init scripts do today, once per secret.
set -euo pipefail
mkdir -p "$out/awscli"
for i in \$(seq -w 1 $n); do
  "$venv/bin/aws" secretsmanager get-secret-value --secret-id "bench/github-\$i" \
    | jq -r .SecretString | jq -r .github_token > "$out/awscli/github-\$i"
done
SCRIPT
chmod +x "$out/awscli-loop.sh"

rm -rf "$out/keyway" && "$keyway" render --dir "$out/keyway" "${args[@]}" 2>/dev/null
test "$(cat "$out/keyway/github-01")" = ghp_bench_01

hyperfine --style basic --warmup 1 --runs "$runs" --export-json "$out/render.json" \
  -n "keyway render ($n secrets)" "rm -rf $out/keyway && $keyway render --dir $out/keyway ${args[*]} 2>/dev/null" \
  -n "aws cli + jq loop ($n secrets)" "$out/awscli-loop.sh"

jq -r '.results | (.[0].median) as $k | .[] |
  "\(.command): median \(.median*1000|round) ms (min \(.min*1000|round), max \(.max*1000|round)), \(.median/$k*10|round/10)x keyway"' \
  "$out/render.json"
