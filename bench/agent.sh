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

source "$root/bench/lib.sh"
bench_tools
venv=$("$root/scripts/python-env.sh")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
peers=${KEYWAY_PEERS:-$HOME/.cache/keyway/peers}
agent=$peers/aws-agent/bin/aws_secretsmanager_agent
if [ ! -x "$agent" ]; then
  cargo install --quiet --locked aws_secretsmanager_agent --version 2.1.0 --root "$peers/aws-agent"
fi
source "$root/scripts/dist.sh"
cargo build --profile dist --locked -q -p keyway
keyway=$CARGO_TARGET_DIR/dist/keyway


bench_moto "$venv"

# VmRSS, with its anonymous and file-backed parts (code pages mapped from the binary are most of the latter).
rss() { awk '/^VmRSS/ {t=$2} /^RssAnon/ {a=$2} /^RssFile/ {f=$2} END {printf "%s(anon %s file %s)", t, a, f}' "/proc/$1/status"; }
# Both binaries out of the page cache before they start: a freshly built file maps more of itself than one
# that was read back from disk (bench/out: 17.0 against 14.2 MB idle for the same keyway binary), and the
# agent's was built long before.
python3 -c 'import os, sys
for path in sys.argv[1:]:
    fd = os.open(path, os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' \
  "$keyway" "$agent"

wait_http() { for _ in $(seq 200); do curl -fs -o /dev/null -H "X-Aws-Parameters-Secrets-Token: bench-token" "$1" && return 0; sleep 0.05; done; echo "error: $1 never answered" >&2; exit 1; }

# keyway, TCP only (as the agent), values cached for the whole run.
kw_port=$(free_port)
bench_keyway_config "$out/keyway.toml" "unix = false" "tcp = \"127.0.0.1:$kw_port\""
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

for r in $(seq 1 "$runs"); do
  wrk_round keyway "$kw_port" "$kw_pid" "$r" agent
  wrk_round agent "$ag_port" "$ag_pid" "$r" agent
  wrk_round nginx "$ngx_port" "$ngx_pid" "$r" agent
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
