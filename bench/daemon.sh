#!/usr/bin/env bash
# Daemon benchmarks (figures in docs/benchmarks.md):
#  1. cached reads over loopback TCP, AWS-agent path form, wrk -t1 -c64, 50 secrets in rotation, against nginx
#     serving the same JSON bodies as static files; runs alternate in one session. Server CPU per request is the
#     CPU time of the server processes (/proc/PID/stat utime+stime) over the run divided by requests served.
#  2. memory: idle RSS, and RSS with 10,000 cached 1 KiB secrets; 3. start-up: spawn to socket accepting.
#
# Usage: bench/daemon.sh [RUNS=3] [SECONDS=10]
# Needs root for apt-get (wrk, nginx) the first time. Do not run while a build runs beside it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
secs=${2:-10}
out=$root/bench/out/daemon
rm -rf "$out" && mkdir -p "$out"

source "$root/bench/lib.sh"
bench_tools
venv=$("$root/scripts/python-env.sh")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
# The dist profile: the binary users get, built alone as bench/agent.sh builds it (built together with the
# testkit, its dependencies' features would differ).
source "$root/scripts/dist.sh"
cargo build --profile dist --locked -q -p keyway
cargo build --profile dist --locked -q -p keyway-testkit --bin keyway-load
keyway=$CARGO_TARGET_DIR/dist/keyway
load=$CARGO_TARGET_DIR/dist/keyway-load


bench_moto "$venv"

# keyway serve on loopback TCP (and its socket), values cached for the whole run.
kw_port=$(free_port)
bench_keyway_config "$out/keyway.toml" "socket = \"$out/keyway.sock\"" "tcp = \"127.0.0.1:$kw_port\""
AWS_TOKEN=bench-token "$keyway" --config "$out/keyway.toml" serve > "$out/serve.out" 2> "$out/serve.err" & kw_pid=$!; pids+=($kw_pid)
for _ in $(seq 100); do [ -S "$out/keyway.sock" ] && break; sleep 0.05; done
sleep 0.3
idle_rss=$(awk '/VmRSS/ {print $2}' /proc/$kw_pid/status)

# nginx serving the very same bodies.
mkdir -p "$out/www/v1"
for i in $(seq -w 1 50); do
  curl -fs -H "X-Aws-Parameters-Secrets-Token: bench-token" "http://127.0.0.1:$kw_port/v1/bench-$i" > "$out/www/v1/bench-$i"
done
ngx_port=$(free_port)
cat > "$out/nginx.conf" <<EOF
worker_processes auto;
pid $out/nginx.pid;
error_log $out/nginx.err warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  default_type application/json;
  server { listen 127.0.0.1:$ngx_port; root $out/www; }
}
EOF
nginx -c "$out/nginx.conf" -g 'daemon off;' & ngx_pid=$!; pids+=($ngx_pid)
sleep 0.5
warm_rss=$(awk '/VmRSS/ {print $2}' /proc/$kw_pid/status)

hz=$(getconf CLK_TCK)
for r in $(seq 1 "$runs"); do
  wrk_round keyway "$kw_port" "$kw_pid" "$r" path
  wrk_round nginx "$ngx_port" "$ngx_pid" "$r" path
done
# The same over the unix socket: wrk cannot speak unix sockets, so keyway-load (testkit; one thread, like
# wrk -t1) drives all three, alternating.
run_load() { # name pid run args...
  local name=$1 pid=$2 run=$3 before after; shift 3
  before=$(ticks "$pid")
  "$load" --connections 64 --seconds "$secs" --header "X-Aws-Parameters-Secrets-Token: bench-token" "$@" > "$out/load-$name-$run.txt"
  after=$(ticks "$pid")
  local line reqs
  line=$(cat "$out/load-$name-$run.txt")
  reqs=$(echo "$line" | sed 's/.*requests=\([0-9]*\).*/\1/')
  echo "$name run=$run $(echo "$line" | cut -d' ' -f2-4) cpu_us_per_req=$(python3 -c "print(round(($after-$before)/$hz/$reqs*1e6, 2))") $(echo "$line" | cut -d' ' -f5)" | tee -a "$out/load-results.txt"
}
for r in $(seq 1 "$runs"); do
  run_load keyway-unix "$kw_pid" "$r" --unix "$out/keyway.sock"
  run_load keyway-tcp "$kw_pid" "$r" --tcp "127.0.0.1:$kw_port"
  run_load nginx-tcp "$ngx_pid" "$r" --tcp "127.0.0.1:$ngx_port"
done
python3 - "$out/load-results.txt" <<'PY'
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in line.split()[1:]) | {"name": line.split()[0]} for line in open(sys.argv[1])]
def med(name, key):
    return statistics.median(float(r[key]) for r in rows if r["name"] == name)
base = med("nginx-tcp", "cpu_us_per_req")
for name in ("keyway-unix", "keyway-tcp", "nginx-tcp"):
    print(f"keyway-load {name}: median rps {med(name, 'rps'):.0f}, p99 {med(name, 'p99_ms'):.2f} ms, "
          f"server CPU {med(name, 'cpu_us_per_req'):.2f} us/request ({med(name, 'cpu_us_per_req')/base:.2f}x nginx)")
PY
load_rss=$(awk '/VmRSS/ {print $2}' /proc/$kw_pid/status)

python3 - "$out/results.txt" <<'PY'
import statistics, sys, re
rows = [dict(kv.split("=", 1) for kv in line.split()[1:5]) | {"name": line.split()[0]} for line in open(sys.argv[1])]
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v); x = float(m.group(1))
    return x / 1000 if m.group(2) == "us" else x if m.group(2) == "ms" else x * 1000
def med(name, key, f=float):
    return statistics.median(f(r[key]) for r in rows if r["name"] == name)
k_rps, n_rps = med("keyway", "rps"), med("nginx", "rps")
k_cpu, n_cpu = med("keyway", "cpu_us_per_req"), med("nginx", "cpu_us_per_req")
print(f"median rps: keyway {k_rps:.0f}, nginx {n_rps:.0f} ({k_rps/n_rps:.2f}x nginx)")
print(f"median server CPU per request: keyway {k_cpu:.2f} us, nginx {n_cpu:.2f} us ({k_cpu/n_cpu:.2f}x nginx)")
print(f"median p99: keyway {med('keyway', 'p99', ms):.2f} ms, nginx {med('nginx', 'p99', ms):.2f} ms")
PY
echo "keyway RSS: idle ${idle_rss} kB, after 50 cached secrets ${warm_rss} kB, after the load runs ${load_rss} kB"

# Memory with 10,000 cached 1 KiB secrets (local store, fetched in batches of 1000 over the socket).
kill $kw_pid; wait $kw_pid 2>/dev/null || true
mkdir -p "$out/store"
python3 - "$out/store" <<'PY'
import os, sys
for i in range(10000):
    with open(os.path.join(sys.argv[1], f"s{i:05d}"), "w") as f:
        f.write(os.urandom(512).hex())
PY
"$keyway" --local-dir "$out/store" --socket "$out/k2.sock" serve > /dev/null 2>&1 & big_pid=$!; pids+=($big_pid)
for _ in $(seq 100); do [ -S "$out/k2.sock" ] && break; sleep 0.05; done
python3 - "$out/k2.sock" <<'PY'
import json, socket, sys
for b in range(10):
    refs = [f"local://s{i:05d}" for i in range(b * 1000, (b + 1) * 1000)]
    body = json.dumps({"refs": refs}).encode()
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
    s.sendall(b"POST /v1/secrets HTTP/1.1\r\nHost: k\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    data = b""
    while chunk := s.recv(1 << 20):
        data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
PY
sleep 0.5
big_rss=$(awk '/VmRSS/ {print $2}' /proc/$big_pid/status)
echo "keyway RSS with 10,000 cached 1 KiB secrets: ${big_rss} kB"
kill $big_pid; wait $big_pid 2>/dev/null || true

# Start-up: spawn to the socket accepting a connection, 20 times, median.
python3 - "$keyway" "$out" <<'PY'
import os, socket, statistics, subprocess, sys, time
keyway, out = sys.argv[1], sys.argv[2]
times = []
for i in range(20):
    path = os.path.join(out, f"start{i}.sock")
    t0 = time.perf_counter()
    p = subprocess.Popen([keyway, "--local-dir", out, "--socket", path, "serve"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            s = socket.socket(socket.AF_UNIX); s.connect(path); s.close(); break
        except OSError:
            time.sleep(0.0005)
    times.append((time.perf_counter() - t0) * 1000)
    p.terminate(); p.wait()
print(f"start-up to accepting: median {statistics.median(times):.1f} ms (min {min(times):.1f}, max {max(times):.1f}) over 20")
PY
