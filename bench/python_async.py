"""keyway.aget_secret against keyway.get_secret on a cached secret, in-process (the local store), one process.

Usage: .venv/bin/python bench/python_async.py [ROUNDS]   (the keyway package installed in the venv; for
figures, the release build: `maturin develop --release -m crates/python/Cargo.toml`)

Each round makes 2,000 calls of each kind, one after another in the same process: `get_secret` in a loop,
`await aget_secret` in a loop, and 2,000 `aget_secret` gathered at once. Prints the median calls per second of
each and their ratio to `get_secret`.
"""

import asyncio
import pathlib
import statistics
import sys
import tempfile
import time

import keyway

CALLS = 2000


def sync_rate(reference):
    started = time.perf_counter()
    for _ in range(CALLS):
        keyway.get_secret(reference)
    return CALLS / (time.perf_counter() - started)


async def await_rate(reference):
    started = time.perf_counter()
    for _ in range(CALLS):
        await keyway.aget_secret(reference)
    return CALLS / (time.perf_counter() - started)


async def gather_rate(reference):
    started = time.perf_counter()
    await asyncio.gather(*[keyway.aget_secret(reference) for _ in range(CALLS)])
    return CALLS / (time.perf_counter() - started)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    store = pathlib.Path(tempfile.mkdtemp())
    (store / "token").write_text("bench-value")
    keyway.configure(daemon="never", local_dir=str(store))
    reference = "local://token"
    keyway.get_secret(reference)  # cached from here on
    rates = {"get_secret": [], "await aget_secret": [], "gather aget_secret": []}
    for _ in range(rounds):
        rates["get_secret"].append(sync_rate(reference))
        rates["await aget_secret"].append(asyncio.run(await_rate(reference)))
        rates["gather aget_secret"].append(asyncio.run(gather_rate(reference)))
    base = statistics.median(rates["get_secret"])
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:20} {median:>9,.0f} calls/s  {median / base:.2f}x  rounds {[round(v) for v in values]}")


if __name__ == "__main__":
    main()
