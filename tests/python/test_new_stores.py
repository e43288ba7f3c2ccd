"""The `keyway` Python package reads the four stores added after AWS and GCP, in-process and through a node
daemon: a real OpenBao dev server for Vault, moto for Parameter Store, and the Kubernetes and Key Vault stand-ins
(each proven with its vendor's own Python client in test_k8s_api.py and test_azure_kv.py)."""

import base64
import json
import pathlib
import subprocess
import sys
import time
import urllib.request

import boto3
import pytest

import keyway
from conftest import binary, free_port


def start(command: list, prefix: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith(prefix), line
    return proc, line.removeprefix("listening on ")


def request(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    text = urllib.request.urlopen(req).read()
    return json.loads(text) if text else {}


@pytest.fixture()
def stores(tmp_path, moto_endpoint, monkeypatch):
    """The four stores, each holding `team/value` (or its store's form of the name) with `field` = the store's
    name, and a keyway.toml naming them."""
    procs = []
    bao = pathlib.Path(sys.executable).parent / "bao"
    port = free_port()
    procs.append(subprocess.Popen([bao, "server", "-dev", "-dev-root-token-id=root",
                                   f"-dev-listen-address=127.0.0.1:{port}", "-dev-no-store-token"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    vault = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{vault}/v1/sys/health", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    request(f"{vault}/v1/secret/data/team/value", "POST", {"data": {"field": "from-vault"}},
            {"X-Vault-Token": "root"})

    ssm = boto3.client("ssm", endpoint_url=moto_endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    ssm.put_parameter(Name="/team/value", Value=json.dumps({"field": "from-parameter-store"}), Type="SecureString")

    proc, k8s = start([binary("keyway-k8s-api")], "listening on http://")
    procs.append(proc)
    request(f"{k8s}/stand-in/secret", "PUT",
            {"namespace": "ml", "name": "value", "data": {"field": base64.b64encode(b"from-kubernetes").decode()}})

    ca = tmp_path / "azure-ca.pem"
    proc, urls = start([binary("keyway-azure-kv"), "--ca-out", str(ca)], "listening on https://")
    procs.append(proc)
    azure, controls = urls.split(" controls ")
    request(f"{controls}/emulator/token?token=token&principal=keyway", "POST")
    request(f"{controls}/emulator/secret", "PUT", {"name": "value", "value": json.dumps({"field": "from-key-vault"})})

    for name, token in [("vault-token", "root"), ("k8s-token", "admin"), ("azure-token", "token")]:
        (tmp_path / name).write_text(token)
    config = tmp_path / "keyway.toml"
    config.write_text(f"""
[providers.vault]
type = "vault"
address = "{vault}"
[providers.vault.auth]
method = "token"
token_file = "vault-token"

[providers.aws-ps]
type = "ssm"
region = "us-east-1"
endpoint = "{moto_endpoint}"

[providers.azure-kv]
type = "azure"
endpoint = "{azure}"
credentials = "token-file"
token_file = "azure-token"
ca_file = "{ca}"
verify_challenge_resource = false

[providers.k8s]
type = "k8s"
api_server = "{k8s}"
token_file = "k8s-token"
namespace = "ml"
""")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield config
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


EXPECTED = {
    "vault://secret/team/value#field": "from-vault",
    "aws-ps://team/value#field": "from-parameter-store",
    "azure-kv://kv1/value#field": "from-key-vault",
    "k8s://value#field": "from-kubernetes",
}


def test_each_store_in_process(stores):
    assert keyway.configure(config=str(stores), daemon="never") == "direct"
    for reference, value in EXPECTED.items():
        assert keyway.get_secret(reference).value.value() == value, reference
    assert "team/value" in keyway.list_secrets("aws-ps")
    assert "secret/team/value" in keyway.list_secrets("vault")
    with pytest.raises(keyway.InvalidReference) as whole:
        keyway.get_secret("k8s://value")
    assert "name one: k8s://value#KEY" in str(whole.value)


def test_each_store_through_the_node_daemon(stores, tmp_path):
    socket_path = tmp_path / "k.sock"
    proc = subprocess.Popen([binary("keyway"), "--config", stores, "--socket", socket_path, "serve"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().startswith("listening on unix:")
        assert keyway.configure(socket=str(socket_path)) == "daemon"
        for reference, value in EXPECTED.items():
            assert keyway.get_secret(reference).value.value() == value, reference
    finally:
        proc.terminate()
        proc.wait(timeout=10)
