"""hydrate_cache through a user's own operator: raysecretsproxy against keyway.ray, side by side.

A `RaySecretOperator` subclass whose `_fetch` takes 20 ms (a call to its upstream: the thread sleeps, as one blocked
on IO does) hydrates 50 names. The original fetches them one after another; keyway.ray runs a bounded pool of
fetches. Rounds alternate the two, each on a fresh actor; the ratio is taken within each round and the medians
are printed.

    .venv/bin/python bench/ray_hydrate_user.py [ROUNDS]      # default 5; figures in docs/benchmarks.md
"""

import statistics
import sys
import time

import ray

NAMES = 50
FETCH_SECONDS = 0.02


def operator_class(base):
    class Slow(base):
        def __init__(self):
            pass

        def initialize(self):
            pass

        def _fetch(self, secret_name, **kwargs):
            time.sleep(FETCH_SECONDS)
            return secret_name.encode(), {}

        def list_secrets(self, filter=None):
            return [f"s{i:02d}" for i in range(NAMES)]

    return Slow


def hydrate_seconds(module: str) -> float:
    if module == "raysecretsproxy":
        from raysecretsproxy.ray_secret_operator import RaySecretOperator
        from raysecretsproxy.ray_secret_proxy import RaySecretProxy
    else:
        from keyway.ray import RaySecretOperator, RaySecretProxy
    actor = RaySecretProxy.remote(operator_class(RaySecretOperator)())
    ray.get(actor.list_cached_secrets.remote())  # the actor has started
    started = time.perf_counter()
    ray.get(actor.hydrate_cache.remote())
    seconds = time.perf_counter() - started
    assert len(ray.get(actor.list_cached_secrets.remote())) == NAMES
    ray.kill(actor)
    return seconds


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    times = {"raysecretsproxy": [], "keyway.ray": []}
    ratios = []
    for round_ in range(rounds):
        order = ("raysecretsproxy", "keyway.ray") if round_ % 2 == 0 else ("keyway.ray", "raysecretsproxy")
        got = {module: hydrate_seconds(module) for module in order}
        for module, seconds in got.items():
            times[module].append(seconds)
        ratios.append(got["raysecretsproxy"] / got["keyway.ray"])
        print(f"round {round_ + 1}: raysecretsproxy {got['raysecretsproxy']:.3f} s, "
              f"keyway.ray {got['keyway.ray']:.3f} s, {ratios[-1]:.1f}x")
    print(f"median: raysecretsproxy {statistics.median(times['raysecretsproxy']):.3f} s, "
          f"keyway.ray {statistics.median(times['keyway.ray']):.3f} s, {statistics.median(ratios):.1f}x "
          f"(rounds {min(ratios):.1f}-{max(ratios):.1f}x)")
    ray.shutdown()


if __name__ == "__main__":
    main()
