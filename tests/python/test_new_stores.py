"""The `keyway` Python package reads the four stores added after AWS and GCP, in-process and through a node
daemon: a real OpenBao dev server for Vault, moto for Parameter Store, and the Kubernetes and Key Vault stand-ins
(each proven with its vendor's own Python client in test_k8s_api.py and test_azure_kv.py)."""

import json
import subprocess

import boto3
import pytest

import keyway
from conftest import binary


@pytest.fixture()
def stores(tmp_path, moto_endpoint, bao_server, k8s_api_server, azure_vault, monkeypatch):
    """The four stores, each holding `team/value` (or its store's form of the name) with `field` = where it comes
    from, and a keyway.toml naming them."""
    vault, call = bao_server
    call("POST", "secret/data/team/value", {"data": {"field": "from-vault"}})
    ssm = boto3.client("ssm", endpoint_url=moto_endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    ssm.put_parameter(Name="/team/value", Value=json.dumps({"field": "from-parameter-store"}), Type="SecureString")
    k8s, put_secret = k8s_api_server
    put_secret("ml", "value", {"field": b"from-kubernetes"})
    azure_vault.put("value", json.dumps({"field": "from-key-vault"}))
    azure, ca = azure_vault.endpoint, azure_vault.ca
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
    return config


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
