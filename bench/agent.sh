#!/usr/bin/env bash
# Cached reads on the AWS Secrets Manager Agent's own route, side by side (issue 34; figures in
# docs/benchmarks.md): keyway serve, the AWS agent itself (2.1.0 from crates.io) and nginx serving the same 50
# bodies as static files, wrk -t1 -c64 over loopback TCP, `/secretsmanager/get?secretId=bench-NN` with the token
# header, 50 JSON secrets from moto in rotation, rounds alternating; ratios within each round, medians.
# Server CPU per request: utime+stime of the server (and its children) over the run / requests served. RSS after
# the load rounds.
#
# Usage: bench/agent.sh [RUNS=5] [SECONDS=5]
# The agent is built once into $KEYWAY_PEERS (default ~/.cache/keyway/peers; a few minutes) by
# `cargo install aws_secretsmanager_agent --version 2.1.0`. Needs root for apt-get (wrk, nginx) the first time.
# Do not run while a build runs beside it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-5}
secs=${2:-5}
out=$root/bench/out/agent
rm -rf "$out" && mkdir -p "$out"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
venv=$("$root/scripts/python-env.sh")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
peers=${KEYWAY_PEERS:-$HOME/.cache/keyway/peers}
agent=$peers/aws-agent/bin/aws_secretsmanager_agent
if [ ! -x "$agent" ]; then
  cargo install --quiet --locked aws_secretsmanager_agent --version 2.1.0 --root "$peers/aws-agent"
fi
cargo build --profile dist --locked -q -p keyway
keyway=$CARGO_TARGET_DIR/dist/keyway

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

moto_port=$(free_port)
"$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >/dev/null 2>&1 & pids+=($!)
export AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_TOKEN=bench-token
for _ in $(seq 100); do curl -fs "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1 && break; sleep 0.1; done
"$venv/bin/python" - <<PY
import boto3, json
c = boto3.client("secretsmanager")
for i in range(1, 51):
    c.create_secret(Name=f"bench-{i:02d}", SecretString=json.dumps({"github_token": f"ghp_{i:02d}" + "x" * 36, "username": "octocat"}))
PY

rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
wait_http() { for _ in $(seq 200); do curl -fs -o /dev/null -H "X-Aws-Parameters-Secrets-Token: bench-token" "$1" && return 0; sleep 0.05; done; echo "error: $1 never answered" >&2; exit 1; }

# keyway, TCP only (as the agent), values cached for the whole run.
kw_port=$(free_port)
cat > "$out/keyway.toml" <<EOF
[providers.aws-sm]
type = "aws"
ttl = "1h"
[server]
unix = false
tcp = "127.0.0.1:$kw_port"
EOF
"$keyway" --config "$out/keyway.toml" serve > "$out/keyway.out" 2> "$out/keyway.err" & kw_pid=$!; pids+=($kw_pid)
# The AWS agent, with its own configuration file: the same TTL.
ag_port=$(free_port)
cat > "$out/agent.toml" <<EOF
http_port = $ag_port
ttl_seconds = 3600
cache_size = 1000
log_level = "ERROR"
EOF
(cd "$out" && exec "$agent" --config "$out/agent.toml" > "$out/agent.out" 2> "$out/agent.err") & ag_pid=$!; pids+=($ag_pid)
wait_http "http://127.0.0.1:$kw_port/ping"
wait_http "http://127.0.0.1:$ag_port/ping"
sleep 0.3
kw_idle=$(rss $kw_pid); ag_idle=$(rss $ag_pid)

# Every body once through each (the first fetches), and nginx given keyway's bodies.
mkdir -p "$out/www/bodies"
for i in $(seq -w 1 50); do
  curl -fs -H "X-Aws-Parameters-Secrets-Token: bench-token" "http://127.0.0.1:$ag_port/secretsmanager/get?secretId=bench-$i" > /dev/null
  curl -fs -H "X-Aws-Parameters-Secrets-Token: bench-token" "http://127.0.0.1:$kw_port/secretsmanager/get?secretId=bench-$i" > "$out/www/bodies/bench-$i"
done
kw_warm=$(rss $kw_pid); ag_warm=$(rss $ag_pid)
ngx_port=$(free_port)
cat > "$out/nginx.conf" <<EOF
worker_processes 1;
pid $out/nginx.pid;
error_log $out/nginx.err warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  default_type application/json;
  server {
    listen 127.0.0.1:$ngx_port;
    root $out/www;
    location = /secretsmanager/get { try_files /bodies/\$arg_secretId =404; }
  }
}
EOF
nginx -c "$out/nginx.conf" -g 'daemon off;' & ngx_pid=$!; pids+=($ngx_pid)
wait_http "http://127.0.0.1:$ngx_port/secretsmanager/get?secretId=bench-01"

ticks() { # utime+stime of a process and its children (nginx's worker)
  local total=0 p
  for p in "$@" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}
hz=$(getconf CLK_TCK)
run_wrk() { # name port pid round
  local name=$1 port=$2 pid=$3 before after reqs rps p99 us errors
  before=$(ticks "$pid")
  wrk -t1 -c64 -d"${secs}s" --latency -s "$root/bench/rotate_agent.lua" "http://127.0.0.1:$port" > "$out/wrk-$name-$4.txt"
  after=$(ticks "$pid")
  reqs=$(awk '/requests in/ {print $1}' "$out/wrk-$name-$4.txt")
  rps=$(awk '/Requests\/sec/ {print $2}' "$out/wrk-$name-$4.txt")
  p99=$(awk '$1=="99%" {print $2}' "$out/wrk-$name-$4.txt")
  us=$(python3 -c "print(round(($after-$before)/$hz/$reqs*1e6, 2))")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' "$out/wrk-$name-$4.txt" | tr '\n' ' ')
  echo "$name round=$4 rps=$rps p99=$p99 cpu_us_per_req=$us ${errors}" | tee -a "$out/results.txt"
}
for r in $(seq 1 "$runs"); do
  run_wrk keyway "$kw_port" "$kw_pid" "$r"
  run_wrk agent "$ag_port" "$ag_pid" "$r"
  run_wrk nginx "$ngx_port" "$ngx_pid" "$r"
done
kw_load=$(rss $kw_pid); ag_load=$(rss $ag_pid)

python3 - "$out/results.txt" <<'PY'
import re, statistics, sys
lines = open(sys.argv[1]).read().splitlines()
if any("Non-2xx" in line or "Socket errors" in line for line in lines):
    sys.exit("error: a run had errors (see bench/out/agent/wrk-*.txt)")
rows = [dict(kv.split("=", 1) for kv in line.split()[1:5]) | {"name": line.split()[0]} for line in lines]
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v); x = float(m.group(1))
    return x / 1000 if m.group(2) == "us" else x if m.group(2) == "ms" else x * 1000
by = {}
for r in rows:
    by.setdefault(r["round"], {})[r["name"]] = r
print("| round | keyway rps / CPU us / p99 | AWS agent | nginx | keyway/agent rps | keyway/agent CPU |")
print("|---|---|---|---|---|---|")
rps_ratio, cpu_ratio, p99_ratio = [], [], []
for rnd, r in sorted(by.items(), key=lambda x: int(x[0])):
    k, a, n = r["keyway"], r["agent"], r["nginx"]
    rr = float(k["rps"]) / float(a["rps"]); cr = float(k["cpu_us_per_req"]) / float(a["cpu_us_per_req"])
    rps_ratio.append(rr); cpu_ratio.append(cr); p99_ratio.append(ms(k["p99"]) / ms(a["p99"]))
    cell = lambda x: f"{float(x['rps']):,.0f} / {x['cpu_us_per_req']} / {x['p99']}"
    print(f"| {rnd} | {cell(k)} | {cell(a)} | {cell(n)} | {rr:.2f} | {cr:.2f} |")
med = statistics.median
print(f"medians: keyway/agent throughput {med(rps_ratio):.2f}x (target >= 1.2), CPU per request "
      f"{med(cpu_ratio):.2f}x (target <= 0.8), p99 {med(p99_ratio):.2f}x (target <= 1)")
PY
echo "RSS kB: keyway idle $kw_idle, after the first fetches $kw_warm, after the load $kw_load;" \
  "agent idle $ag_idle, after the first fetches $ag_warm, after the load $ag_load"
