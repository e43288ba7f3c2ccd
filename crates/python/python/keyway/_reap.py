"""``python -m keyway._reap ROOT``: removes the secret files of Ray workers that outlive the runtime-env agent.

The Ray plugin sweeps the directories of exited workers (``keyway._launch.sweep``) from the node's runtime-env
agent, but when Ray stops, the agent goes with its workers: the directories of the workers alive at that moment
would stay in memory until the next worker start on the node. So the plugin starts this reaper beside the agent,
in a session of its own, with its standard input the read end of a pipe whose write end only the agent holds.
While the agent lives the reaper waits on that pipe and does nothing; when the agent is gone (stopped, killed,
crashed: the kernel closes its end), it sweeps ROOT every ``KEYWAY_RAY_SWEEP_SECONDS`` for
``KEYWAY_RAY_REAP_SECONDS`` (60 s: Ray's stop has signalled and killed every worker by then), then exits. Workers
still alive after that (another Ray on the node, with its own agent and reaper) are not waited for.

Each sweep that removes something writes one line on stderr (the plugin points it at a log file of the agent's
log directory): the count, never a name or value.
"""

from __future__ import annotations

import os
import select
import sys
import time

from keyway._launch import sweep

#: Seconds between two sweeps of the directories of exited workers (in the agent, and here after it).
SWEEP_SECONDS = float(os.environ.get("KEYWAY_RAY_SWEEP_SECONDS", "2"))
#: Seconds the reaper goes on sweeping after the agent is gone.
REAP_SECONDS = float(os.environ.get("KEYWAY_RAY_REAP_SECONDS", "60"))


def wait_for_eof(fd: int) -> None:
    """Returns when the pipe's write end is closed everywhere (its holder exited)."""
    while True:
        select.select([fd], [], [])
        if not os.read(fd, 4096):
            return


def reap(root: str, until: float) -> None:
    while True:
        try:
            removed = sweep(root)
        except OSError as e:
            print(f"keyway: cannot sweep {root}: {e.strerror}", file=sys.stderr, flush=True)
            removed = []
        if removed:
            print(f"keyway: removed the secret files of {len(removed)} worker(s) that outlived the "
                  f"runtime-env agent", file=sys.stderr, flush=True)
        if time.monotonic() >= until:
            return
        time.sleep(SWEEP_SECONDS)


def main(argv: list) -> None:
    if len(argv) != 1:
        print("usage: python -m keyway._reap ROOT  (standard input: a pipe the runtime-env agent holds open)",
              file=sys.stderr)
        sys.exit(2)
    wait_for_eof(sys.stdin.fileno())
    reap(argv[0], time.monotonic() + REAP_SECONDS)


if __name__ == "__main__":
    main(sys.argv[1:])
