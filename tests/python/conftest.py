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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def moto_endpoint():
    """moto_server from the project venv on a free port; yields http://127.0.0.1:PORT."""
    import sys
    import time
    import urllib.request

    port = free_port()
    server = pathlib.Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("moto_server did not start")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)
