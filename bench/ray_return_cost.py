"""Where a Ray actor's round trip goes when it returns raysecretsproxy's `RaySecret` (docs/benchmarks.md).

Usage (after bench/ray.sh built the release extension): .venv/bin/python bench/ray_return_cost.py [ROUNDS=5]

Actors whose get_secret does one thing each, measured from the driver in batches and from 8 callers with their
calls interleaved in chunks (bench/ray_bench.py's driver_rates and tasks_rates), as ratios to a trivial method
returning a str, medians over rounds.
"""

import pathlib
import statistics
import sys
import tempfile

import boto3
import ray

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
sys.path.insert(0, str(ROOT / "bench"))
from conftest import start_moto  # noqa: E402
import ray_bench  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
META = {"ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:bench/s00-AbCdEf", "VersionId": "x" * 36,
        "VersionStages": ["AWSCURRENT"], "CreatedDate": 1.0, "FetchedAt": 2.0}


def main() -> None:
    proc, moto = start_moto(tempfile.mkdtemp())
    boto3.client("secretsmanager", endpoint_url=moto, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_secret(Name="bench/s00", SecretString="x" * 40)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    import keyway.ray as kr
    from keyway.ray import RaySecret

    kwargs = dict(endpoint_url=moto, region_name="us-east-1", aws_access_key_id="testing",
                  aws_secret_access_key="testing")

    @ray.remote
    class Prebuilt:
        def __init__(self):
            self.s = RaySecret("bench/s00", b"x" * 40, -1, dict(META))

        def get_secret(self, name, ttl=None):
            return self.s

    @ray.remote
    class BuiltPerCall:
        def get_secret(self, name, ttl=None):
            return RaySecret(name, b"x" * 40, -1, dict(META))

    @ray.remote
    class Tuple:
        def get_secret(self, name, ttl=None):
            return ("bench/s00", b"x" * 40, -1, META)

    @ray.remote
    class LookupStr:
        def __init__(self):
            op = kr.AWSRaySecretOperator(**kwargs)
            op.initialize()
            self.backend = op._keyway_backend()

        def get_secret(self, name, ttl=None):
            self.backend.get(name, ttl=None)
            return name

    ratios = {}
    callers = [ray_bench.Caller.remote() for _ in range(ray_bench.TASKS)]
    try:
        for round_ in range(ROUNDS):
            actors = {"trivial (str)": ray_bench.Trivial.remote(), "prebuilt RaySecret": Prebuilt.remote(),
                      "RaySecret built per call": BuiltPerCall.remote(), "tuple of the fields": Tuple.remote(),
                      "Rust cache lookup, str": LookupStr.remote(),
                      "keyway.ray": kr.RaySecretProxy.remote(kr.AWSRaySecretOperator(**kwargs))}
            if round_ % 2:
                actors = dict(reversed(list(actors.items())))
            for what, rates in (("driver", ray_bench.driver_rates(actors)),
                                ("8 callers", ray_bench.tasks_rates(actors, callers))):
                for name, rate in rates.items():
                    ratios.setdefault((name, what), []).append(rate / rates["trivial (str)"])
            for actor in actors.values():
                ray.kill(actor)
    finally:
        ray.shutdown()
        proc.terminate()
    for (name, what), values in ratios.items():
        print(f"{name:28s} {what:10s} median {statistics.median(values):.3f} of trivial  (rounds: "
              f"{', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
