"""Ray benchmark: keyway.ray vs raysecretsproxy vs a trivial actor, and keyway's node-local path, in one run.

Usage: bench/ray.sh [ROUNDS=5]   (builds the release keyway binary and the release extension first)
       BENCH_CONCURRENCY=1,8 bench/ray.sh 5   also measures keyway.ray actors with those thread counts

Each round measures every subject in alternating order, after a warm-up:
  1. cached get_secret calls from the driver (2,000 calls, submitted in batches of 200 and gathered, which is how
     the issue's 2,600-2,980 calls/s for a trivial actor are reached; and one at a time, for reference) and from
     8 concurrent callers (250 sequential calls each; long-lived caller actors, all starting at one instant) for a
     trivial actor method, raysecretsproxy 0.0.3 and keyway.ray (secrets from moto), each subject's calls split
     in 10 chunks interleaved with the others' (A B C A B C ...);
  2. keyway.get_secret from the same 8 callers through the node daemon's unix socket (no Ray RPC);
  3. head-of-line blocking: while one uncached secret takes 1 s upstream (the GCP emulator's latency control),
     the slowest of 20 cached reads from the driver, for both proxies;
  4. hydrate_cache of 50 secrets for both proxies, from the GCP emulator answering each access after 10 ms
     (a same-region network round trip; the issue's 0.55 s for the original is 11 ms a secret), and from moto.
Ratios are taken within each round (so the machine's drift between rounds cancels) and their medians printed,
with the median absolute figures beside them.
"""

import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
import ray

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from conftest import start_moto  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
DRIVER_CALLS, TASKS, TASK_CALLS = 2000, 8, 250
# Each round's calls are split in this many chunks, interleaved across the subjects.
CHUNKS = 10
# Calls a caller makes before each timed run (not timed).
WARM_UP = 3
# Seconds between submitting a chunk and its common start: every caller must have done its warm-up by then (8
# callers warming up on one actor take 40-60 ms here; the time measured starts at the common start).
HEAD_START = 0.3


@ray.remote
class Trivial:
    def get_secret(self, secret_name, ttl=None):
        return secret_name


@ray.remote
class TrivialRaySecret:
    """The drop-in API's own cost: a trivial method returning a prebuilt ``RaySecret`` (Ray pickles it)."""

    def __init__(self):
        from keyway.ray import RaySecret

        self.secret = RaySecret("bench/s00", b"x" * 40, -1, {"ARN": "arn:aws:secretsmanager:us-east-1:1:secret:s",
                                                              "VersionId": "v" * 36, "VersionStages": ["AWSCURRENT"],
                                                              "CreatedDate": 1.0, "FetchedAt": 2.0})

    def get_secret(self, secret_name, ttl=None):
        return self.secret


def driver_rates(actors, chunks=CHUNKS, batch=True) -> dict:
    """Calls/s of each actor from the driver, its 2,000 calls taken in chunks interleaved with the others'
    (A B C A B C ...), so the machine's drift within a round falls on every subject alike. With ``batch`` each
    chunk's calls are submitted at once and then gathered (``ray.get([...])``: the issue's driver figures, 2,600-2,980
    calls/s for a trivial actor, are only reachable that way here); without it every call waits for its answer."""
    for actor in actors.values():
        ray.get([actor.get_secret.remote("bench/s00") for _ in range(100)])
    spent = dict.fromkeys(actors, 0.0)
    per_chunk = DRIVER_CALLS // chunks
    for _ in range(chunks):
        for name, actor in actors.items():
            started = time.perf_counter()
            if batch:
                ray.get([actor.get_secret.remote("bench/s00") for _ in range(per_chunk)])
            else:
                for _ in range(per_chunk):
                    ray.get(actor.get_secret.remote("bench/s00"))
            spent[name] += time.perf_counter() - started
    return {name: DRIVER_CALLS / seconds for name, seconds in spent.items()}


@ray.remote(num_cpus=0)
class Caller:
    """One of the 8 concurrent callers: a worker process that stays up, so worker start-up (which lands on
    whichever subject comes first) is not in the figures; every caller starts at the same instant."""

    def run(self, actor, calls: int, start_at: float):
        for _ in range(WARM_UP):
            ray.get(actor.get_secret.remote("bench/s00"))
        late = time.time() > start_at
        while time.time() < start_at:
            time.sleep(0.0005)
        for _ in range(calls):
            ray.get(actor.get_secret.remote("bench/s00"))
        return time.time(), late

    def run_daemon(self, socket: str, calls: int, start_at: float):
        """The node-local path: keyway.get_secret through the daemon's unix socket, no Ray RPC."""
        import keyway

        keyway.configure(socket=socket, daemon="always")
        for _ in range(20):
            keyway.get_secret("aws-sm://bench/s00")
        late = time.time() > start_at
        while time.time() < start_at:
            time.sleep(0.0005)
        for _ in range(calls):
            keyway.get_secret("aws-sm://bench/s00")
        return time.time(), late


def tasks_rates(actors, callers, chunks=CHUNKS) -> dict:
    """Calls/s of each actor from 8 concurrent callers (250 sequential calls each), interleaved in chunks: all
    calls over the time from the common start to the last caller's end."""
    for actor in actors.values():  # warm-up: every caller up and holding a handle to every actor
        ray.get([c.run.remote(actor, WARM_UP, 0.0) for c in callers])
    spent = dict.fromkeys(actors, 0.0)
    for _ in range(chunks):
        for name, actor in actors.items():
            start_at = time.time() + HEAD_START
            ends = ray.get([c.run.remote(actor, TASK_CALLS // chunks, start_at) for c in callers])
            if any(late for _, late in ends):
                raise RuntimeError(f"a caller started after the common start; raise HEAD_START ({HEAD_START} s)")
            spent[name] += max(end for end, _ in ends) - start_at
    return {name: len(callers) * TASK_CALLS / seconds for name, seconds in spent.items()}


def tasks_calls(callers) -> int:
    """The calls each actor answers in one ``tasks_rates``, warm-ups included: per caller a warm-up run, then
    per chunk the run's warm-up and its share."""
    return len(callers) * (2 * WARM_UP + CHUNKS * (WARM_UP + TASK_CALLS // CHUNKS))


def moto_with(names) -> tuple:
    """moto in server mode holding each of `names` (a 40-byte value); returns (its process, boto3-style keyword
    arguments for it), for the smaller benchmarks beside this one."""
    proc, endpoint = start_moto(tempfile.mkdtemp())
    aws = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
               aws_secret_access_key="testing")
    client = boto3.client("secretsmanager", **aws)
    for name in names:
        client.create_secret(Name=name, SecretString="x" * 40)
    return proc, aws


def interleaved_ratios(make_subjects, rounds: int, callers, baseline: str) -> dict:
    """Each round, fresh actors from ``make_subjects()`` (``[(name, actor)]``, reversed every other round) are
    measured from the driver (batched) and from the callers, calls interleaved in chunks; returns
    ``{(name, "driver" or "8 callers"): [rate / baseline's rate, one per round]}``."""
    ratios = {}
    for round_ in range(rounds):
        subjects = make_subjects()
        if round_ % 2:
            subjects.reverse()
        actors = dict(subjects)
        for what, rates in (("driver", driver_rates(actors)), ("8 callers", tasks_rates(actors, callers))):
            for name in actors:
                ratios.setdefault((name, what), []).append(rates[name] / rates[baseline])
        for actor in actors.values():
            ray.kill(actor)
    return ratios


def print_ratios(ratios: dict, baseline: str) -> None:
    for (name, what), values in sorted(ratios.items(), key=lambda item: item[0][1]):
        print(f"{name:32s} {what:10s} median {statistics.median(values):.2f} of {baseline}  "
              f"(rounds: {', '.join(f'{x:.2f}' for x in values)})")


def cpu_seconds(pid: int, thread: int = 0) -> float:
    """User + system CPU time of a process, every thread included (/proc/PID/stat fields 14 and 15), or of one
    of its threads (/proc/PID/task/TID/stat)."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def emulator_latency(endpoint: str, ms: int) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/emulator/latency?ms={ms}", method="POST"))


def head_of_line(actor, gcp: str, slow_name: str) -> float:
    """The slowest cached read while one uncached fetch takes 1 s upstream."""
    ray.get(actor.get_secret.remote("fast"))
    emulator_latency(gcp, 1000)
    slow = actor.get_secret.remote(slow_name)
    time.sleep(0.1)
    waits = []
    for _ in range(20):
        started = time.perf_counter()
        ray.get(actor.get_secret.remote("fast"))
        waits.append(time.perf_counter() - started)
    ray.get(slow)
    emulator_latency(gcp, 0)
    return max(waits)


def main() -> None:
    tmp = pathlib.Path(tempfile.mkdtemp())
    moto_proc, moto = start_moto(tmp)
    client = boto3.client("secretsmanager", endpoint_url=moto, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    names = [f"bench/s{i:02d}" for i in range(50)]
    for name in names:
        client.create_secret(Name=name, SecretString="x" * 40)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    gcp_proc = subprocess.Popen([target / "release" / "keyway-gcp-emulator"], stdout=subprocess.PIPE, text=True)
    gcp = "http://" + gcp_proc.stdout.readline().strip().removeprefix("listening on http://")

    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    gclient = secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=gcp))
    gnames = ["fast"] + [f"g{i:02d}" for i in range(50)] + [f"slow{r}-{m}" for r in range(ROUNDS) for m in range(2)]
    for name in gnames:
        secret = gclient.create_secret(request={"parent": "projects/proj", "secret_id": name,
                                                "secret": {"replication": {"automatic": {}}}})
        gclient.add_secret_version(request={"parent": secret.name, "payload": {"data": b"y" * 40}})

    config = tmp / "keyway.toml"
    config.write_text(f'[providers.aws-sm]\ntype = "aws"\nregion = "us-east-1"\nendpoint = "{moto}"\nttl = "1h"\n')
    socket = str(tmp / "keyway.sock")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_EC2_METADATA_DISABLED="true")
    daemon = subprocess.Popen([target / "release" / "keyway", "--config", config, "--socket", socket, "serve"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    assert daemon.stdout.readline().startswith("listening")

    from raysecretsproxy.aws_secret_operator import AWSRaySecretOperator as OrigAws
    from raysecretsproxy.gcp_secret_operator import GCPRaySecretOperator as OrigGcp
    from raysecretsproxy.ray_secret_proxy import RaySecretProxy as OrigProxy

    import keyway.ray as kr

    aws = dict(endpoint_url=moto, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    gcp_kwargs = dict(project_name="proj", credentials=AnonymousCredentials(), transport="rest",
                      client_options=ClientOptions(api_endpoint=gcp))
    packages = {"raysecretsproxy": (OrigProxy, OrigAws, OrigGcp),
                "keyway.ray": (kr.RaySecretProxy, kr.AWSRaySecretOperator, kr.GCPRaySecretOperator)}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    results, ratios = {}, {}

    def note(key, value):
        results.setdefault(key, []).append(value)

    callers = [Caller.remote() for _ in range(TASKS)]
    # Extra keyway.ray subjects with another thread count, e.g. BENCH_CONCURRENCY=1,8,64 (the trade-off table).
    extra = [int(n) for n in os.environ.get("BENCH_CONCURRENCY", "").split(",") if n]
    try:
        for round_ in range(ROUNDS):
            subjects = [("trivial actor", Trivial.remote()),
                        ("trivial actor returning a RaySecret", TrivialRaySecret.remote())] + [
                (name, proxy.remote(aws_op(**aws))) for name, (proxy, aws_op, _) in packages.items()] + [
                (f"keyway.ray max_concurrency={n}",
                 kr.RaySecretProxy.options(max_concurrency=n).remote(kr.AWSRaySecretOperator(**aws))) for n in extra]
            if round_ % 2:
                subjects.reverse()
            actors = dict(subjects)
            rate = {}
            for name, value in driver_rates(actors).items():
                rate[name, "driver"] = value
            for name, value in driver_rates(actors, batch=False).items():
                rate[name, "driver, one at a time"] = value
            for name, value in tasks_rates(actors, callers).items():
                rate[name, "8 callers"] = value
            start_at = time.time() + 0.5
            ends = ray.get([c.run_daemon.remote(socket, TASK_CALLS, start_at) for c in callers])
            if any(late for _, late in ends):
                raise RuntimeError("a caller started after the common start; raise the 0.5 s head start")
            rate["keyway.get_secret via daemon", "8 callers"] = TASKS * TASK_CALLS / (max(e for e, _ in ends) - start_at)
            for key, value in rate.items():
                note(key, value)
            for what in ("driver", "driver, one at a time", "8 callers"):
                for name in ["trivial actor returning a RaySecret", *packages,
                             *(f"keyway.ray max_concurrency={n}" for n in extra)]:
                    ratios.setdefault(f"{name} / trivial actor, {what}", []).append(
                        rate[name, what] / rate["trivial actor", what])
                ratios.setdefault(f"keyway.ray / trivial actor returning a RaySecret, {what}", []).append(
                    rate["keyway.ray", what] / rate["trivial actor returning a RaySecret", what])
            ratios.setdefault("daemon path / raysecretsproxy, 8 callers", []).append(
                rate["keyway.get_secret via daemon", "8 callers"] / rate["raysecretsproxy", "8 callers"])

            order = list(packages.items()) if round_ % 2 == 0 else list(reversed(packages.items()))
            hydrate = {}
            for m, (name, (proxy, aws_op, gcp_op)) in enumerate(order):
                actor = proxy.remote(gcp_op(**gcp_kwargs))
                note((name, "head-of-line max (ms)"), 1000 * head_of_line(actor, gcp, f"slow{round_}-{m}"))
                fresh = proxy.remote(gcp_op(**gcp_kwargs))
                ray.get(fresh.list_cached_secrets.remote())
                emulator_latency(gcp, 10)
                started = time.perf_counter()
                ray.get(fresh.hydrate_cache.remote(secret_names=[f"g{i:02d}" for i in range(50)]))
                hydrate[name, "gcp"] = time.perf_counter() - started
                emulator_latency(gcp, 0)
                fresh = proxy.remote(aws_op(**aws))
                ray.get(fresh.list_cached_secrets.remote())
                started = time.perf_counter()
                ray.get(fresh.hydrate_cache.remote(secret_names=names))
                hydrate[name, "moto"] = time.perf_counter() - started
            for actor in actors.values():
                ray.kill(actor)
            for (name, upstream), seconds in hydrate.items():
                note((name, f"hydrate 50, {upstream} (s)"), seconds)
            for upstream in ("gcp", "moto"):
                ratios.setdefault(f"hydrate 50, {upstream}: raysecretsproxy / keyway.ray", []).append(
                    hydrate["raysecretsproxy", upstream] / hydrate["keyway.ray", upstream])
    finally:
        ray.shutdown()
        daemon.terminate()
        gcp_proc.terminate()
        moto_proc.terminate()

    for (name, what), values in sorted(results.items()):
        unit = "" if "(" in what else " calls/s"
        print(f"{name:30s} {what:26s} median {statistics.median(values):10.3f}{unit}  "
              f"(rounds: {', '.join(f'{x:.3f}' for x in values)})")
    for what, values in ratios.items():
        print(f"{what:52s} median {statistics.median(values):6.2f}  (rounds: {', '.join(f'{x:.2f}' for x in values)})")


if __name__ == "__main__":
    main()
