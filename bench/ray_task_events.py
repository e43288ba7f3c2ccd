"""Is Ray's task-event recording a lever for the 8-caller rate? (docs/benchmarks.md)

Usage: .venv/bin/python bench/ray_task_events.py [ROUNDS=5]   (pure Python subjects: any build of the extension)

Ray Serve turns task events off on its own actors (`enable_task_events=False`, RAY_SERVE_ENABLE_TASK_EVENTS
defaults to 0). This puts the trivial str-returning actor and the prebuilt-RaySecret actor of bench/ray_bench.py
side by side with and without task events, from the driver (batched) and from 8 callers, calls interleaved in
chunks, as ratios to the trivial actor with task events, medians over rounds.
"""

import pathlib
import sys

import ray

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import ray_bench  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def main() -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    callers = [ray_bench.Caller.remote() for _ in range(ray_bench.TASKS)]

    def subjects():
        return [("trivial", ray_bench.Trivial.remote()),
                ("trivial, no task events", ray_bench.Trivial.options(enable_task_events=False).remote()),
                ("RaySecret", ray_bench.TrivialRaySecret.remote()),
                ("RaySecret, no task events", ray_bench.TrivialRaySecret.options(enable_task_events=False).remote())]

    try:
        ratios = ray_bench.interleaved_ratios(subjects, ROUNDS, callers, "trivial")
    finally:
        ray.shutdown()
    ray_bench.print_ratios(ratios, "trivial")


if __name__ == "__main__":
    main()
