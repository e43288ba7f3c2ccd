"""Could another shape of actor reach the issue's 0.95 of a trivial actor? (docs/benchmarks.md, "Other actor shapes")

Usage (after bench/ray.sh built the release extension): .venv/bin/python bench/ray_actor_variants.py [ROUNDS=5]

Puts side by side, from the driver (batched) and from 8 callers, calls interleaved in chunks (bench/ray_bench.py's
driver_rates and tasks_rates), as ratios to the trivial str-returning actor, medians over rounds:
- the trivial actor with 4 threads, and as an async actor (an async get_secret would give head-of-line freedom
  without threads);
- the prebuilt-RaySecret floor, and keyway.ray with 4 (its default), 2 and 1 threads;
- "trimmed" subjects whose actor process skips two things Ray's task loop does around every call in Ray 2.60:
  it renames the process twice (``ray._private.worker._changeproctitle``: two prctl calls) and, on the main
  thread, swaps the SIGINT handler in and out (``ray._raylet.DeferSigint``: four sigaction calls). These are
  private to Ray; they are replaced here (in the measured actor's process only) to learn whether removing Ray's
  own per-call work could lift a drop-in to the target, not as something keyway.ray does.
"""

import contextlib
import pathlib
import sys

import ray

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import ray_bench  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


@ray.remote
class AsyncTrivial:
    async def get_secret(self, secret_name, ttl=None):
        return secret_name


def trim(_actor, title: bool, sigint: bool) -> None:
    """Runs inside an actor's process: skips Ray's per-call process renaming and/or SIGINT deferral there."""
    import ray._private.worker as worker
    import ray._raylet as raylet

    if title:
        worker._changeproctitle = lambda title, next_title: contextlib.nullcontext()
    if sigint:
        class NoDeferral:
            @classmethod
            def create_if_main_thread(cls):
                return contextlib.nullcontext()

        raylet.DeferSigint = NoDeferral


def trimmed(actor, title: bool = True, sigint: bool = True):
    ray.get(actor.__ray_call__.remote(trim, title, sigint))
    return actor


def main() -> None:
    proc, aws = ray_bench.moto_with(["bench/s00"])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    import keyway.ray as kr

    def proxy(threads: int):
        return kr.RaySecretProxy.options(max_concurrency=threads).remote(kr.AWSRaySecretOperator(**aws))

    def subjects():
        return [("trivial", ray_bench.Trivial.remote()),
                ("trivial, 4 threads", ray_bench.Trivial.options(max_concurrency=4).remote()),
                ("trivial, async", AsyncTrivial.remote()),
                ("prebuilt RaySecret", ray_bench.TrivialRaySecret.remote()),
                ("prebuilt RaySecret, trimmed", trimmed(ray_bench.TrivialRaySecret.remote())),
                ("keyway.ray (4 threads)", proxy(4)),
                ("keyway.ray, 2 threads", proxy(2)),
                ("keyway.ray, 4 threads, trimmed", trimmed(proxy(4), sigint=False)),
                ("keyway.ray, 1 thread, trimmed", trimmed(proxy(1)))]

    callers = [ray_bench.Caller.remote() for _ in range(ray_bench.TASKS)]
    try:
        ratios = ray_bench.interleaved_ratios(subjects, ROUNDS, callers, "trivial")
    finally:
        ray.shutdown()
        proc.terminate()
    ray_bench.print_ratios(ratios, "trivial")


if __name__ == "__main__":
    main()
