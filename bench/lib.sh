# Shared by the daemon benchmarks (bench/daemon.sh, bench/agent.sh): sourced, not run.

# wrk and nginx from Debian, the first time (needs root).
bench_tools() {
  local need=()
  command -v wrk >/dev/null || need+=(wrk)
  command -v nginx >/dev/null || need+=(nginx)
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

# The processes a run starts (moto, the servers): `pids+=($!)` after each; all are stopped on exit, and then
# what `bench_on_exit` names is removed (a scratch directory).
pids=()
bench_on_exit=
bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$bench_on_exit" ]; then rm -rf "$bench_on_exit"; fi
}
trap bench_cleanup EXIT

# A keyway.toml at $1 for the AWS instance the runs read (values cached for an hour), with the `[server]` lines
# given after it.
bench_keyway_config() {
  local file=$1
  shift
  printf '[providers.aws-sm]\ntype = "aws"\nttl = "1h"\n[server]\n' > "$file"
  printf '%s\n' "$@" >> "$file"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# moto from the venv ($1) on a free port with 50 JSON secrets bench-01..bench-50 of a GitHub token secret's
# size; exports the AWS environment pointing at it (and AWS_TOKEN=bench-token) and adds its pid to `pids`.
bench_moto() {
  local venv=$1 port
  port=$(free_port)
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 & pids+=($!)
  export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
    AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_TOKEN=bench-token
  for _ in $(seq 100); do curl -fs "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1 && break; sleep 0.1; done
  "$venv/bin/python" - <<'PY'
import boto3, json
c = boto3.client("secretsmanager")
for i in range(1, 51):
    c.create_secret(Name=f"bench-{i:02d}", SecretString=json.dumps({"github_token": f"ghp_{i:02d}" + "x" * 36, "username": "octocat"}))
PY
}

# Summed utime+stime (clock ticks) of a process and its children (nginx's workers).
ticks() {
  local total=0 p
  for p in "$@" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}

# One wrk -t1 -c64 round of $secs seconds against 127.0.0.1:PORT with a request script; appends
# `NAME round=R rps=.. p99=.. cpu_us_per_req=..` (and any errors) to $out/results.txt.
#   wrk_round NAME PORT PID ROUND ROUTE     (ROUTE: path or agent, bench/rotate.lua's forms)
wrk_round() {
  local name=$1 port=$2 pid=$3 round=$4 route=$5 before after reqs rps p99 us errors hz
  hz=$(getconf CLK_TCK)
  before=$(ticks "$pid")
  ROUTE=$route wrk -t1 -c64 -d"${secs}s" --latency -s "$root/bench/rotate.lua" "http://127.0.0.1:$port" \
    > "$out/wrk-$name-$round.txt"
  after=$(ticks "$pid")
  reqs=$(awk '/requests in/ {print $1}' "$out/wrk-$name-$round.txt")
  rps=$(awk '/Requests\/sec/ {print $2}' "$out/wrk-$name-$round.txt")
  p99=$(awk '$1=="99%" {print $2}' "$out/wrk-$name-$round.txt")
  us=$(python3 -c "print(round(($after-$before)/$hz/$reqs*1e6, 2))")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' "$out/wrk-$name-$round.txt" | tr '\n' ' ')
  echo "$name round=$round rps=$rps p99=$p99 cpu_us_per_req=$us ${errors}" | tee -a "$out/results.txt"
}
