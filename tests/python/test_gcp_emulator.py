"""Conformance: Google's own Secret Manager Python client, over REST, against Keyway's emulator.

If these pass, the emulator speaks the wire format the real service speaks, as far as a reader needs: so the
Rust provider's tests against it are tests against the protocol, not against our own assumptions.
"""

import google_crc32c
import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager

PROJECT = "conformance-proj"


@pytest.fixture()
def client(gcp_emulator):
    return secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=gcp_emulator),
    )


def rpc_status(err):
    """The google.rpc.Status name in the error body (the REST client maps exceptions by HTTP status alone)."""
    return err.value.response.json()["error"]["status"]


def create(client, secret_id, *payloads):
    parent = f"projects/{PROJECT}"
    secret = client.create_secret(
        request={"parent": parent, "secret_id": secret_id, "secret": {"replication": {"automatic": {}}}}
    )
    versions = []
    for data in payloads:
        crc = google_crc32c.value(data)
        versions.append(
            client.add_secret_version(
                request={"parent": secret.name, "payload": {"data": data, "data_crc32c": crc}}
            )
        )
    return secret, versions


def test_create_add_and_access_numbered_and_latest(client):
    secret, versions = create(client, "github", b'{"github_token":"ghp_one"}', b'{"github_token":"ghp_two"}')
    assert secret.name == f"projects/{PROJECT}/secrets/github"
    assert [v.name for v in versions] == [f"{secret.name}/versions/1", f"{secret.name}/versions/2"]
    assert versions[0].state == secretmanager.SecretVersion.State.ENABLED

    latest = client.access_secret_version(request={"name": f"{secret.name}/versions/latest"})
    assert latest.name == f"{secret.name}/versions/2"
    assert latest.payload.data == b'{"github_token":"ghp_two"}'
    assert latest.payload.data_crc32c == google_crc32c.value(latest.payload.data)

    first = client.access_secret_version(request={"name": f"{secret.name}/versions/1"})
    assert first.payload.data == b'{"github_token":"ghp_one"}'


def test_binary_payload_round_trips(client):
    data = bytes(range(256))
    secret, _ = create(client, "blob", data)
    assert client.access_secret_version(name=f"{secret.name}/versions/1").payload.data == data


def test_get_secret_and_version_metadata(client):
    secret, _ = create(client, "meta", b"x")
    got = client.get_secret(name=secret.name)
    assert got.name == secret.name
    assert got.create_time is not None
    version = client.get_secret_version(name=f"{secret.name}/versions/latest")
    assert version.name == f"{secret.name}/versions/1"
    assert version.state == secretmanager.SecretVersion.State.ENABLED


def test_list_secrets_pages_through_everything(client):
    for i in range(30):
        create(client, f"s{i:02d}", b"v")
    pager = client.list_secrets(request={"parent": f"projects/{PROJECT}", "page_size": 7})
    names = [s.name.rsplit("/", 1)[1] for s in pager]
    assert names == [f"s{i:02d}" for i in range(30)]
    filtered = [s.name for s in client.list_secrets(request={"parent": f"projects/{PROJECT}", "filter": "name:s2"})]
    assert len(filtered) == 10


def test_list_versions_newest_first(client):
    secret, _ = create(client, "multi", b"1", b"2", b"3")
    names = [v.name.rsplit("/", 1)[1] for v in client.list_secret_versions(request={"parent": secret.name, "page_size": 2})]
    assert names == ["3", "2", "1"]


def test_disabled_and_destroyed_versions_fail_precondition(client):
    secret, _ = create(client, "rotating", b"old", b"new")
    client.disable_secret_version(name=f"{secret.name}/versions/1")
    with pytest.raises(exceptions.BadRequest, match="DISABLED") as err:
        client.access_secret_version(name=f"{secret.name}/versions/1")
    assert rpc_status(err) == "FAILED_PRECONDITION"
    client.enable_secret_version(name=f"{secret.name}/versions/1")
    assert client.access_secret_version(name=f"{secret.name}/versions/1").payload.data == b"old"
    destroyed = client.destroy_secret_version(name=f"{secret.name}/versions/2")
    assert destroyed.state == secretmanager.SecretVersion.State.DESTROYED
    assert destroyed.destroy_time is not None
    with pytest.raises(exceptions.BadRequest, match="DESTROYED") as err:
        client.access_secret_version(name=f"{secret.name}/versions/latest")
    assert rpc_status(err) == "FAILED_PRECONDITION"


def test_not_found_and_already_exists_are_google_rpc_statuses(client):
    with pytest.raises(exceptions.NotFound) as err:
        client.access_secret_version(name=f"projects/{PROJECT}/secrets/missing/versions/latest")
    assert rpc_status(err) == "NOT_FOUND"
    create(client, "dup", b"x")
    with pytest.raises(exceptions.Conflict) as err:
        create(client, "dup")
    assert rpc_status(err) == "ALREADY_EXISTS"
    with pytest.raises(exceptions.NotFound):
        client.access_secret_version(name=f"projects/{PROJECT}/secrets/dup/versions/9")


def test_permission_denied_control(client, gcp_emulator):
    import urllib.request

    secret, _ = create(client, "locked", b"x")
    urllib.request.urlopen(
        urllib.request.Request(f"{gcp_emulator}/emulator/deny?name={secret.name}", method="POST")
    )
    with pytest.raises(exceptions.Forbidden, match="secretmanager.versions.access") as err:
        client.access_secret_version(name=f"{secret.name}/versions/1")
    assert rpc_status(err) == "PERMISSION_DENIED"


def test_bad_checksum_is_rejected(client):
    secret, _ = create(client, "crc")
    with pytest.raises(exceptions.BadRequest) as err:
        client.add_secret_version(request={"parent": secret.name, "payload": {"data": b"x", "data_crc32c": 1}})
    assert rpc_status(err) == "INVALID_ARGUMENT"
