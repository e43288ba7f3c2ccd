"""Shared fixtures: the project's binaries (built by scripts/test.sh) started on free loopback ports."""

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def binary(name: str) -> pathlib.Path:
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = target / "debug" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: build with `cargo build --workspace` (scripts/test.sh does)")
    return path


@pytest.fixture()
def gcp_emulator():
    """Starts keyway-gcp-emulator and yields its endpoint (host:port, as google clients take it)."""
    proc = subprocess.Popen([binary("keyway-gcp-emulator")], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://"), line
        yield line.removeprefix("listening on ")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
