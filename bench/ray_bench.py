"""Ray benchmark: keyway.ray vs raysecretsproxy vs a trivial actor, and keyway's node-local path, in one run.

Usage (from the repository root, after scripts/test.sh built the package into the venv):
    CARGO_TARGET_DIR=... .venv/bin/python bench/ray_bench.py [ROUNDS=3]

Each round measures, in alternating order after a warm-up: cached get_secret round trips from the driver (2,000
calls) and from 8 concurrent tasks (250 sequential calls each) for a trivial actor method, raysecretsproxy and
keyway.ray; keyway.get_secret from 8 tasks through the node daemon's unix socket (no Ray RPC); hydrate_cache of
50 secrets for both proxies. Medians over rounds are printed with ratios. Secrets come from moto.
"""

import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import boto3
import ray

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from conftest import start_moto  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
DRIVER_CALLS, TASKS, TASK_CALLS = 2000, 8, 250


@ray.remote
class Trivial:
    def get_secret(self, secret_name, ttl=None):
        return secret_name


def driver_rate(actor) -> float:
    ray.get(actor.get_secret.remote("bench/s00"))
    started = time.perf_counter()
    for _ in range(DRIVER_CALLS):
        ray.get(actor.get_secret.remote("bench/s00"))
    return DRIVER_CALLS / (time.perf_counter() - started)


@ray.remote(num_cpus=0)
def via_actor(actor, calls):
    for _ in range(calls):
        ray.get(actor.get_secret.remote("bench/s00"))


@ray.remote(num_cpus=0)
def via_daemon(socket, calls):
    import keyway

    keyway.configure(socket=socket, daemon="always")
    keyway.get_secret("aws-sm://bench/s00")
    started = time.perf_counter()
    for _ in range(calls):
        keyway.get_secret("aws-sm://bench/s00")
    return time.perf_counter() - started


def tasks_rate(actor) -> float:
    ray.get([via_actor.remote(actor, 5) for _ in range(TASKS)])
    started = time.perf_counter()
    ray.get([via_actor.remote(actor, TASK_CALLS) for _ in range(TASKS)])
    return TASKS * TASK_CALLS / (time.perf_counter() - started)


def main() -> None:
    tmp = pathlib.Path(tempfile.mkdtemp())
    moto_proc, moto = start_moto(tmp)
    client = boto3.client("secretsmanager", endpoint_url=moto, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    names = [f"bench/s{i:02d}" for i in range(50)]
    for name in names:
        client.create_secret(Name=name, SecretString="x" * 40)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    config = tmp / "keyway.toml"
    config.write_text(f'[providers.aws-sm]\ntype = "aws"\nregion = "us-east-1"\nendpoint = "{moto}"\nttl = "1h"\n')
    socket = str(tmp / "keyway.sock")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_EC2_METADATA_DISABLED="true")
    daemon = subprocess.Popen([target / "release" / "keyway", "--config", config, "--socket", socket, "serve"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    assert daemon.stdout.readline().startswith("listening")

    from raysecretsproxy.aws_secret_operator import AWSRaySecretOperator as OrigOperator
    from raysecretsproxy.ray_secret_proxy import RaySecretProxy as OrigProxy

    import keyway.ray as kr

    kwargs = dict(endpoint_url=moto, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    results = {}
    try:
        for round_ in range(ROUNDS):
            subjects = [("trivial actor", Trivial.remote()),
                        ("raysecretsproxy", OrigProxy.remote(OrigOperator(**kwargs))),
                        ("keyway.ray", kr.RaySecretProxy.remote(kr.AWSRaySecretOperator(**kwargs)))]
            if round_ % 2:
                subjects.reverse()
            for name, actor in subjects:
                results.setdefault((name, "driver"), []).append(driver_rate(actor))
                results.setdefault((name, "8 tasks"), []).append(tasks_rate(actor))
            elapsed = ray.get([via_daemon.remote(socket, TASK_CALLS) for _ in range(TASKS)])
            # The tasks ran concurrently: the rate is all calls over the longest task.
            results.setdefault(("keyway.get_secret via daemon", "8 tasks"), []).append(TASKS * TASK_CALLS / max(elapsed))
            for name, proxy in [("raysecretsproxy", OrigProxy.remote(OrigOperator(**kwargs))),
                                ("keyway.ray", kr.RaySecretProxy.remote(kr.AWSRaySecretOperator(**kwargs)))]:
                ray.get(proxy.list_cached_secrets.remote())
                started = time.perf_counter()
                ray.get(proxy.hydrate_cache.remote(secret_names=names))
                results.setdefault((name, "hydrate 50 (s)"), []).append(time.perf_counter() - started)
    finally:
        ray.shutdown()
        daemon.terminate()
        moto_proc.terminate()

    med = {k: statistics.median(v) for k, v in results.items()}
    for (name, what), value in sorted(med.items()):
        unit = "s" if "hydrate" in what else "calls/s"
        print(f"{name:32s} {what:16s} median {value:10.3f} {unit}  (runs: {', '.join(f'{x:.3f}' for x in results[(name, what)])})")
    for what in ("driver", "8 tasks"):
        base = med[("trivial actor", what)]
        for name in ("raysecretsproxy", "keyway.ray"):
            print(f"{name} {what}: {med[(name, what)] / base:.0%} of the trivial actor")
    print(f"daemon path vs raysecretsproxy, 8 tasks: {med[('keyway.get_secret via daemon', '8 tasks')] / med[('raysecretsproxy', '8 tasks')]:.1f}x")
    print(f"hydrate 50: raysecretsproxy / keyway.ray = {med[('raysecretsproxy', 'hydrate 50 (s)')] / med[('keyway.ray', 'hydrate 50 (s)')]:.1f}x")


if __name__ == "__main__":
    main()
