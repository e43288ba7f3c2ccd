"""Conformance: Microsoft's own Key Vault client (`azure-keyvault-secrets`) against Keyway's emulator.

The client's challenge authentication (a first request without a token, answered 401 with `WWW-Authenticate`,
then the token for the resource the challenge names), a secret and its properties, versions, paged listings, and
Key Vault's errors as the client raises them (404 ResourceNotFoundError, 403 with Key Vault's code, 429). If these
pass, the Rust provider's tests against the emulator are tests against the protocol.
"""

import datetime
import json
import time
import urllib.request

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.secrets import SecretClient



class StaticToken:
    """A credential that hands out one token, as the client asks for it (with the challenge's scope)."""

    def __init__(self, token: str):
        self.token = token
        self.scopes = []

    def get_token(self, *scopes, **kwargs):
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


def control(controls: str, method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else b""
    request = urllib.request.Request(f"{controls}/emulator/{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    text = urllib.request.urlopen(request).read()
    return json.loads(text) if text else {}


def client(vault, token="token", **kwargs) -> tuple[SecretClient, StaticToken]:
    endpoint, controls, ca = vault.endpoint, vault.controls, vault.ca
    control(controls, "POST", f"token?token={token}&principal=p-{token}")
    credential = StaticToken(token)
    # An emulator on an address: the challenge's resource (vault.azure.net) cannot match 127.0.0.1.
    return SecretClient(vault_url=endpoint, credential=credential, verify_challenge_resource=False,
                        connection_verify=ca, **kwargs), credential


def test_the_challenge_then_a_secret_with_its_properties(azure_vault):
    vault = azure_vault
    endpoint, controls = vault.endpoint, vault.controls
    first = control(controls, "PUT", "secret", {"name": "db-password", "value": "one"})["version"]
    second = control(controls, "PUT", "secret", {"name": "db-password", "value": "two", "contentType": "text/plain"})
    second = second["version"]
    kv, credential = client(vault)
    secret = kv.get_secret("db-password")
    assert secret.value == "two" and secret.name == "db-password"
    assert secret.properties.version == second and secret.properties.content_type == "text/plain"
    assert secret.properties.vault_url == endpoint
    assert secret.id == f"{endpoint}/secrets/db-password/{second}"
    assert secret.properties.enabled is True
    assert isinstance(secret.properties.created_on, datetime.datetime)
    assert kv.get_secret("db-password", version=first).value == "one"
    # The client's first request carried no token; the 401's challenge named the scope it then asked for.
    stats = control(controls, "GET", "stats")
    assert stats["unauthenticated"] >= 1
    assert credential.scopes and credential.scopes[0] == ("https://vault.azure.net/.default",)


def test_listings_follow_next_links(azure_vault):
    vault = azure_vault
    controls = vault.controls
    for i in range(30):
        control(controls, "PUT", "secret", {"name": f"s{i:02d}", "value": "v"})
    for _ in range(3):
        control(controls, "PUT", "secret", {"name": "rotated", "value": "v"})
    kv, _ = client(vault)
    names = sorted(p.name for p in kv.list_properties_of_secrets(max_page_size=7))
    assert names == sorted([f"s{i:02d}" for i in range(30)] + ["rotated"])
    versions = list(kv.list_properties_of_secret_versions("rotated", max_page_size=2))
    assert len(versions) == 3 and all(v.name == "rotated" for v in versions)


def test_errors_as_the_client_raises_them(azure_vault):
    vault = azure_vault
    controls = vault.controls
    control(controls, "PUT", "secret", {"name": "api", "value": "v"})
    kv, _ = client(vault, retry_total=0)
    with pytest.raises(ResourceNotFoundError) as missing:
        kv.get_secret("nope")
    assert missing.value.status_code == 404 and missing.value.error.code == "SecretNotFound"

    control(controls, "POST", "deny?principal=p-token&name=api")
    with pytest.raises(HttpResponseError) as denied:
        kv.get_secret("api")
    assert denied.value.status_code == 403 and denied.value.error.code == "Forbidden"
    assert "does not have secrets get permission" in denied.value.error.message
    assert denied.value.error.innererror == {"code": "AccessDenied"}

    control(controls, "PUT", "secret", {"name": "other", "value": "v"})
    control(controls, "POST", "fail?count=1&status=429")
    with pytest.raises(HttpResponseError) as throttled:
        kv.get_secret("other")
    assert throttled.value.status_code == 429
    assert throttled.value.response.headers["Retry-After"] == "1"
    assert kv.get_secret("other").value == "v"
