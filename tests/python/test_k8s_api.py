"""Conformance: the official Kubernetes Python client (`kubernetes`) against Keyway's API server stand-in.

What a reader of Secrets meets, as the client reads it: a Secret with its base64 `data`, a paged SecretList,
and the `Status` errors (401 without a known token; 403 with the RBAC message, checked before existence; 404).
If these pass, the Rust provider's tests against the stand-in are tests against the protocol.
"""

import base64
import json

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException



@pytest.fixture()
def api_server(k8s_api_server):
    return k8s_api_server[0]


def core(endpoint: str, token: str) -> k8s.CoreV1Api:
    configuration = k8s.Configuration(host=endpoint)
    # The header's whole value under both keys the client has read (`BearerToken` since v36).
    configuration.api_key = {"BearerToken": f"Bearer {token}", "authorization": f"Bearer {token}"}
    return k8s.CoreV1Api(k8s.ApiClient(configuration))


def control(endpoint: str, method: str, path: str, body: dict | None = None) -> None:
    import urllib.request

    data = json.dumps(body).encode() if body is not None else b""
    request = urllib.request.Request(f"{endpoint}/stand-in/{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request).read()


def put_secret(endpoint: str, namespace: str, name: str, data: dict) -> None:
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    control(endpoint, "PUT", "secret", {"namespace": namespace, "name": name, "data": encoded})


def test_a_secret_reads_back_with_its_data_and_metadata(api_server):
    put_secret(api_server, "ml", "github", {"token": b"ghp_1", "keystore": b"\x00\xff"})
    secret = core(api_server, "admin").read_namespaced_secret("github", "ml")
    assert isinstance(secret, k8s.V1Secret)
    assert secret.metadata.name == "github" and secret.metadata.namespace == "ml"
    assert secret.metadata.resource_version and secret.metadata.uid
    assert secret.metadata.creation_timestamp is not None  # parsed as a datetime
    assert secret.type == "Opaque"
    assert {k: base64.b64decode(v) for k, v in secret.data.items()} == {"token": b"ghp_1", "keystore": b"\x00\xff"}


def test_lists_page_with_limit_and_continue(api_server):
    for i in range(5):
        put_secret(api_server, "ml", f"s{i}", {"k": b"v"})
    put_secret(api_server, "other", "elsewhere", {"k": b"v"})
    api = core(api_server, "admin")
    names, token = [], None
    while True:
        page = api.list_namespaced_secret("ml", limit=2, _continue=token)
        assert isinstance(page, k8s.V1SecretList)
        names += [item.metadata.name for item in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert names == ["s0", "s1", "s2", "s3", "s4"]


def test_errors_are_status_objects_with_the_api_servers_words(api_server):
    put_secret(api_server, "ml", "github", {"token": b"ghp_1"})
    with pytest.raises(ApiException) as missing:
        core(api_server, "admin").read_namespaced_secret("nope", "ml")
    assert missing.value.status == 404
    status = json.loads(missing.value.body)
    assert status == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": 'secrets "nope" not found', "reason": "NotFound",
                      "details": {"name": "nope", "kind": "secrets"}, "code": 404}

    control(api_server, "POST", "token?token=sa-token&user=system:serviceaccount:ml:trainer")
    with pytest.raises(ApiException) as denied:
        core(api_server, "sa-token").read_namespaced_secret("nope", "ml")
    assert denied.value.status == 403, "authorization is checked before existence"
    assert json.loads(denied.value.body)["message"] == (
        'secrets "nope" is forbidden: User "system:serviceaccount:ml:trainer" cannot get resource "secrets" '
        'in API group "" in the namespace "ml"')
    control(api_server, "POST", "grant?user=system:serviceaccount:ml:trainer&verb=get&namespace=ml")
    assert core(api_server, "sa-token").read_namespaced_secret("github", "ml").data["token"] == "Z2hwXzE="
    with pytest.raises(ApiException) as listing:
        core(api_server, "sa-token").list_namespaced_secret("ml")
    assert listing.value.status == 403
    assert json.loads(listing.value.body)["message"].startswith('secrets is forbidden: User "system:serviceaccount')

    with pytest.raises(ApiException) as unknown:
        core(api_server, "no-such-token").read_namespaced_secret("github", "ml")
    assert unknown.value.status == 401
    assert json.loads(unknown.value.body)["reason"] == "Unauthorized"
