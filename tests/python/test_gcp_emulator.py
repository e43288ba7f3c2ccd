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
    # Terms joined with OR, as the documentation's filter examples are (`name:Dev OR name:Ray`).
    either = [s.name.rsplit("/", 1)[1] for s in client.list_secrets(
        request={"parent": f"projects/{PROJECT}", "filter": "name:s05 OR name:s17"})]
    assert either == ["s05", "s17"]


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


def test_regional_secrets_live_apart_under_their_location(client, gcp_emulator, tmp_path):
    """A regional secret (`projects/P/locations/L/secrets/S`, no replication policy) as Google's client creates,
    reads and lists it; it is not the global secret of the same id. The keyway binary then reads it by its
    resource name and by `?location=`, and an instance with `location` reads it by its short name."""
    import subprocess

    from conftest import binary

    parent = f"projects/{PROJECT}/locations/europe-west1"
    regional = client.create_secret(request={"parent": parent, "secret_id": "db", "secret": {}})
    assert regional.name == f"{parent}/secrets/db"
    client.add_secret_version(request={"parent": regional.name, "payload": {"data": b"eu-pw"}})
    create(client, "db", b"global-pw")
    latest = client.access_secret_version(request={"name": f"{regional.name}/versions/latest"})
    assert (latest.name, latest.payload.data) == (f"{regional.name}/versions/1", b"eu-pw")
    assert [s.name for s in client.list_secrets(request={"parent": parent})] == [regional.name]
    assert [s.name for s in client.list_secrets(request={"parent": f"projects/{PROJECT}"})] == [
        f"projects/{PROJECT}/secrets/db"]
    with pytest.raises(exceptions.NotFound):
        client.access_secret_version(request={"name": f"{parent}/secrets/missing/versions/latest"})

    config = tmp_path / "keyway.toml"
    config.write_text(
        f'[providers.gcp-sm]\ntype = "gcp"\nendpoint = "{gcp_emulator}"\ncredentials = "anonymous"\n'
        f'[providers.eu-gcp]\ntype = "gcp"\nendpoint = "{gcp_emulator}"\ncredentials = "anonymous"\n'
        f'project = "{PROJECT}"\nlocation = "europe-west1"\n')

    def keyway(*args):
        return subprocess.run([str(binary("keyway")), "--config", str(config), "--daemon", "never", *args],
                              capture_output=True, text=True, timeout=60)

    for ref, value in [(f"gcp-sm://{regional.name}", "eu-pw"),
                       (f"gcp-sm://{PROJECT}/db?location=europe-west1", "eu-pw"),
                       ("eu-gcp://db", "eu-pw"),
                       (f"gcp-sm://{PROJECT}/db", "global-pw")]:
        out = keyway("get", ref)
        assert (out.returncode, out.stdout) == (0, value), (ref, out.stderr)
    listed = keyway("list", "eu-gcp")
    assert (listed.returncode, listed.stdout) == (0, "db\n"), listed.stderr


def test_version_aliases_are_set_read_and_followed(client, gcp_emulator, tmp_path):
    """Version aliases as Google's client sets them (update_secret, mask `version_aliases`) and reads a version
    by; the keyway binary reads `?version=ALIAS` (and the resource name with it), and follows the alias when it
    moves."""
    import subprocess

    from conftest import binary

    secret, _ = create(client, "api-key", b"key-one", b"key-two")

    def point(alias, version):
        return client.update_secret(request={"secret": {"name": secret.name, "version_aliases": {alias: version}},
                                             "update_mask": {"paths": ["version_aliases"]}})

    assert dict(point("prod", 1).version_aliases) == {"prod": 1}
    assert dict(client.get_secret(name=secret.name).version_aliases) == {"prod": 1}
    by_alias = client.access_secret_version(name=f"{secret.name}/versions/prod")
    assert (by_alias.name, by_alias.payload.data) == (f"{secret.name}/versions/1", b"key-one")
    with pytest.raises(exceptions.NotFound):
        client.access_secret_version(name=f"{secret.name}/versions/staging")
    with pytest.raises(exceptions.BadRequest):
        point("prod", 9)

    config = tmp_path / "keyway.toml"
    config.write_text(f'[providers.gcp-sm]\ntype = "gcp"\nendpoint = "{gcp_emulator}"\ncredentials = "anonymous"\n')

    def keyway_get(ref):
        out = subprocess.run([str(binary("keyway")), "--config", str(config), "--daemon", "never", "get", ref],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, (ref, out.stderr)
        return out.stdout

    assert keyway_get(f"gcp-sm://{PROJECT}/api-key?version=prod") == "key-one"
    assert keyway_get(f"gcp-sm://{secret.name}/versions/prod") == "key-one"
    point("prod", 2)
    assert keyway_get(f"gcp-sm://{PROJECT}/api-key?version=prod") == "key-two"
