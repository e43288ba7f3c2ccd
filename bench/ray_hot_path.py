"""What a cached get_secret costs inside a Ray actor, piece by piece (docs/benchmarks.md, "Current code").

Usage (after bench/ray.sh built the release extension): .venv/bin/python bench/ray_hot_path.py [ROUNDS=3]

Single-threaded actors (so every call runs on the main thread, whose CPU time /proc/PID/task/PID/stat gives),
each doing a part of keyway.ray's cached read, answer 8,000 batched calls from the driver; printed is the main
thread's CPU per call, median over rounds, each round with fresh actors:
- prebuilt: returns a RaySecret built once (the floor any drop-in pays: Ray pickles it);
- fresh: builds a RaySecret on every call (pure Python);
- lookup + prebuilt: asks the Rust backend (a cache hit), returns the prebuilt one;
- lookup + fresh: asks the Rust backend and builds the answer from it, as keyway.ray did before it kept answers;
- keyway.ray, 1 thread: the proxy itself.
The same code takes a few microseconds in a tight loop; here it runs between Ray's own work on each call.
"""

import os
import pathlib
import statistics
import sys

import ray

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import ray_bench  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
CALLS, BATCH = 8000, 1000
META = {"ARN": "arn:aws:secretsmanager:us-east-1:1:secret:s", "VersionId": "v" * 36,
        "VersionStages": ["AWSCURRENT"], "CreatedDate": 1.0, "FetchedAt": 2.0}


def main() -> None:
    proc, aws = ray_bench.moto_with(["bench/s00"])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    import keyway.ray as kr
    from keyway.ray import RaySecret

    def backend():
        operator = kr.AWSRaySecretOperator(**aws)
        operator.initialize()
        return operator._keyway_backend()

    @ray.remote
    class Prebuilt:
        def __init__(self):
            self.secret = RaySecret("bench/s00", b"x" * 40, -1, dict(META))

        def get_secret(self, secret_name, ttl=None):
            return self.secret

    @ray.remote
    class Fresh:
        def get_secret(self, secret_name, ttl=None):
            return RaySecret(secret_name=secret_name, secret=b"x" * 40, ttl=-1, metadata=dict(META))

    @ray.remote
    class LookupPrebuilt:
        def __init__(self):
            self.secret = RaySecret("bench/s00", b"x" * 40, -1, dict(META))
            self.backend = backend()

        def get_secret(self, secret_name, ttl=None):
            self.backend.get(secret_name, ttl=-1.0)
            return self.secret

    @ray.remote
    class LookupFresh:
        def __init__(self):
            self.backend = backend()

        def get_secret(self, secret_name, ttl=None):
            value, metadata, *_ = self.backend.get(secret_name, ttl=-1.0)  # (and reusable_for, since 64addc2)
            metadata["ARN"] = metadata.pop("Name")
            return RaySecret(secret_name=secret_name, secret=value, ttl=-1, metadata=metadata)

    cpu = {}
    try:
        for _ in range(ROUNDS):
            actors = {"prebuilt": Prebuilt.remote(), "fresh": Fresh.remote(),
                      "lookup + prebuilt": LookupPrebuilt.remote(), "lookup + fresh": LookupFresh.remote(),
                      "keyway.ray, 1 thread": kr.RaySecretProxy.options(max_concurrency=1).remote(
                          kr.AWSRaySecretOperator(**aws))}
            pids = {name: ray.get(a.__ray_call__.remote(lambda self: os.getpid())) for name, a in actors.items()}
            for actor in actors.values():
                ray.get([actor.get_secret.remote("bench/s00") for _ in range(500)])
            for name, actor in actors.items():
                before = ray_bench.cpu_seconds(pids[name], pids[name])
                for _ in range(CALLS // BATCH):
                    ray.get([actor.get_secret.remote("bench/s00") for _ in range(BATCH)])
                cpu.setdefault(name, []).append((ray_bench.cpu_seconds(pids[name], pids[name]) - before) / CALLS * 1e6)
            for actor in actors.values():
                ray.kill(actor)
    finally:
        ray.shutdown()
        proc.terminate()
    for name, values in cpu.items():
        print(f"{name:22s} main thread CPU per call: median {statistics.median(values):.0f} us  "
              f"(rounds: {', '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    main()
