"""Where a Ray actor's round trip goes when it returns raysecretsproxy's `RaySecret` (docs/benchmarks.md).

Usage (after bench/ray.sh built the release extension): .venv/bin/python bench/ray_return_cost.py [ROUNDS=5]

Actors whose get_secret returns one kind of value each, measured from the driver in batches and from 8 callers
with their calls interleaved in chunks (bench/ray_bench.py's driver_rates and tasks_rates), as ratios to a
trivial method returning a str, medians over rounds; and each actor process's CPU time per call while the 8
callers keep it busy (every thread, from /proc). Ray sends a str, bytes, an exact dict or list through msgpack and
anything else (a tuple, a RaySecret) through cloudpickle; from 8 callers the actor is the bottleneck and gets its
fair share of the 2 cores, so its own CPU per call sets the rate. "prebuilt RaySecret, serialized once" returns the
prebuilt one through keyway.ray's hook in front of Ray's serializer (``keyway.ray._serialize``, what the proxy
does for the answers it keeps): Ray's serialization of it made once, handed out for every call.
"""

import os
import pathlib
import statistics
import sys

import ray

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import ray_bench  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
META = {"ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:bench/s00-AbCdEf", "VersionId": "x" * 36,
        "VersionStages": ["AWSCURRENT"], "CreatedDate": 1.0, "FetchedAt": 2.0}


def main() -> None:
    proc, kwargs = ray_bench.moto_with(["bench/s00"])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    import keyway.ray as kr
    from keyway.ray import RaySecret

    @ray.remote
    class Prebuilt:
        def __init__(self):
            self.s = RaySecret("bench/s00", b"x" * 40, -1, dict(META))

        def get_secret(self, name, ttl=None):
            return self.s

    @ray.remote
    class SerializedOnce:
        def __init__(self):
            self.s = RaySecret("bench/s00", b"x" * 40, -1, dict(META))
            self.s._serialized = kr._serialize.serve_kept_serializations()(self.s)

        def get_secret(self, name, ttl=None):
            return self.s

    @ray.remote
    class Tuple:
        def get_secret(self, name, ttl=None):
            return ("bench/s00", b"x" * 40, -1, META)

    @ray.remote
    class Dict:
        def get_secret(self, name, ttl=None):
            return {"secret_name": "bench/s00", "secret": b"x" * 40, "ttl": -1, "metadata": META}

    ratios, cpu = {}, {}
    callers = [ray_bench.Caller.remote() for _ in range(ray_bench.TASKS)]
    answered = ray_bench.tasks_calls(callers)
    try:
        for round_ in range(ROUNDS):
            actors = {"trivial (str)": ray_bench.Trivial.remote(), "dict of the fields": Dict.remote(),
                      "tuple of the fields": Tuple.remote(), "prebuilt RaySecret": Prebuilt.remote(),
                      "prebuilt RaySecret, serialized once": SerializedOnce.remote(),
                      "keyway.ray": kr.RaySecretProxy.remote(kr.AWSRaySecretOperator(**kwargs))}
            if round_ % 2:
                actors = dict(reversed(list(actors.items())))
            pids = {name: ray.get(actor.__ray_call__.remote(lambda self: os.getpid())) for name, actor in actors.items()}
            rates = ray_bench.driver_rates(actors)
            for name, rate in rates.items():
                ratios.setdefault((name, "driver"), []).append(rate / rates["trivial (str)"])
            before = {name: ray_bench.cpu_seconds(pid) for name, pid in pids.items()}
            rates = ray_bench.tasks_rates(actors, callers)
            for name, rate in rates.items():
                ratios.setdefault((name, "8 callers"), []).append(rate / rates["trivial (str)"])
                spent = ray_bench.cpu_seconds(pids[name]) - before[name]
                cpu.setdefault(name, []).append(spent / answered * 1e6)
            for actor in actors.values():
                ray.kill(actor)
    finally:
        ray.shutdown()
        proc.terminate()
    for (name, what), values in sorted(ratios.items(), key=lambda item: item[0][1]):
        print(f"{name:36s} {what:10s} median {statistics.median(values):.3f} of trivial  (rounds: "
              f"{', '.join(f'{v:.2f}' for v in values)})")
    for name, values in cpu.items():
        print(f"{name:36s} actor CPU per call from 8 callers: median {statistics.median(values):.0f} us  (rounds: "
              f"{', '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    main()
