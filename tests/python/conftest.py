"""Shared fixtures: the project's binaries (built by scripts/test.sh) started on free loopback ports."""

import contextlib
import http.server
import os
import pathlib
import subprocess
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def binary(name: str) -> pathlib.Path:
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = target / "debug" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: build with `cargo build --workspace` (scripts/test.sh does)")
    return path


def seed_gcp(endpoint: str, secrets: dict, project: str = "proj") -> None:
    """Creates each secret of ``secrets`` (id -> bytes) with one version, through Google's own client."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=endpoint))
    for secret_id, data in secrets.items():
        secret = client.create_secret(request={"parent": f"projects/{project}", "secret_id": secret_id,
                                               "secret": {"replication": {"automatic": {}}}})
        client.add_secret_version(request={"parent": secret.name, "payload": {"data": data}})


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


def start_moto(tmp_dir):
    """moto_server from the project venv on a free port, recording into its own file; returns (proc, endpoint)."""
    import sys
    import time
    import urllib.request

    port = free_port()
    server = pathlib.Path(sys.executable).parent / "moto_server"
    env = dict(os.environ, MOTO_RECORDER_FILEPATH=str(pathlib.Path(tmp_dir) / f"moto-recording-{port}"))
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail("moto_server did not start")


def moto_requests(endpoint: str) -> list:
    """The requests moto's recorder holds since the last reset (each with its headers)."""
    import json
    import urllib.request

    body = urllib.request.urlopen(endpoint + "/moto-api/recorder/download-recording").read().decode()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def moto_count(endpoint: str, action: str) -> int:
    """GetSecretValue & co. recorded since the last reset (moto's recorder)."""
    return sum(1 for r in moto_requests(endpoint)
               if r.get("headers", {}).get("X-Amz-Target") == f"secretsmanager.{action}")


def moto_record(endpoint: str) -> None:
    import urllib.request

    urllib.request.urlopen(endpoint + "/moto-api/recorder/reset-recording")
    urllib.request.urlopen(endpoint + "/moto-api/recorder/start-recording")


@pytest.fixture()
def moto_endpoint(tmp_path):
    """moto_server from the project venv on a free port; yields http://127.0.0.1:PORT."""
    proc, endpoint = start_moto(tmp_path)
    try:
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def http_reply(handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes, headers: dict) -> None:
    """Answers the request `handler` is serving with `status`, `headers` and `body` (its length added)."""
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@contextlib.contextmanager
def loopback_http(handler_class):
    """Serves `handler_class` (a BaseHTTPRequestHandler) on a free loopback port; yields `host:port`."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
