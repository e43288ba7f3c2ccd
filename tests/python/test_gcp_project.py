"""`GCPRaySecretOperator(project_name=None)` names the project `google.auth.default()` would, without the Google
client: each environment below is given to Google's own `google.auth.default()` and to `keyway._gcp` in fresh
processes, and both must agree."""

import http.server
import json
import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import free_port, http_reply, loopback_http

GOOGLE = ("import google.auth, google.auth.exceptions\ntry:\n    print(google.auth.default()[1])\n"
          "except google.auth.exceptions.DefaultCredentialsError:\n    print('None')\n")
KEYWAY = "from keyway._gcp import default_project\nprint(default_project())\n"


class _Metadata(http.server.BaseHTTPRequestHandler):
    """Answers as the Compute Engine metadata server does (its flavor header, the project id)."""

    def do_GET(self):
        body = {"/": b"", "/computeMetadata/v1/project/project-id": b"meta-proj"}.get(self.path)
        if body is None or self.headers.get("Metadata-Flavor") != "Google":
            http_reply(self, 404, b"", {})
            return
        http_reply(self, 200, body, {"Metadata-Flavor": "Google", "Content-Type": "application/text"})

    def log_message(self, *args):
        pass


@pytest.fixture()
def metadata_server():
    with loopback_http(_Metadata) as address:
        yield address


@pytest.fixture()
def home(tmp_path):
    """A clean environment: its own HOME and gcloud config dir, no Google variables, a metadata address that
    refuses connections, and a PATH of one empty directory (no gcloud: this machine has one in /usr/bin)."""
    closed = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GCLOUD_", "CLOUDSDK_", "GCE_"))}
    env.update(HOME=str(tmp_path), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), GCE_METADATA_IP=closed,
               GCE_METADATA_HOST=closed, PATH=str(tmp_path / "bin"))
    (tmp_path / "gcloud").mkdir()
    (tmp_path / "bin").mkdir()
    return tmp_path, env


def service_account_key(path, project):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({"type": "service_account", "project_id": project, "private_key_id": "k1",
                                "private_key": pem, "client_email": f"sa@{project}.iam.gserviceaccount.com",
                                "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}))
    return path


def authorized_user(path):
    path.write_text(json.dumps({"type": "authorized_user", "client_id": "c", "client_secret": "s",
                                "refresh_token": "r"}))
    return path


def both(env):
    """(google.auth.default()'s project, keyway's) in this environment, each in a fresh process."""
    def run(code):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    return run(GOOGLE), run(KEYWAY)


def test_the_environment_variable_comes_first(home):
    tmp, env = home
    env["GOOGLE_APPLICATION_CREDENTIALS"] = str(service_account_key(tmp / "sa.json", "sa-proj"))
    env["GOOGLE_CLOUD_PROJECT"] = "env-proj"
    assert both(env) == ("env-proj", "env-proj")


def test_an_empty_variable_names_nothing_and_the_search_goes_on(home):
    tmp, env = home
    env["GOOGLE_APPLICATION_CREDENTIALS"] = str(service_account_key(tmp / "sa.json", "sa-proj"))
    env["GOOGLE_CLOUD_PROJECT"], env["GCLOUD_PROJECT"] = "", "legacy-proj"
    assert both(env) == ("sa-proj", "sa-proj")


def test_a_service_account_key_names_its_project(home):
    tmp, env = home
    env["GOOGLE_APPLICATION_CREDENTIALS"] = str(service_account_key(tmp / "sa.json", "sa-proj"))
    assert both(env) == ("sa-proj", "sa-proj")


def test_a_named_user_credentials_file_names_none_and_ends_the_search(home, metadata_server):
    tmp, env = home
    env["GOOGLE_APPLICATION_CREDENTIALS"] = str(authorized_user(tmp / "user.json"))
    env["GCE_METADATA_IP"] = env["GCE_METADATA_HOST"] = metadata_server
    assert both(env) == ("None", "None")


def test_gclouds_credentials_ask_gcloud_for_the_project(home):
    tmp, env = home
    authorized_user(tmp / "gcloud" / "application_default_credentials.json")
    # A stand-in for the gcloud CLI, which both sides run as `gcloud config get project`.
    gcloud = tmp / "bin" / "gcloud"
    gcloud.write_text('#!/bin/sh\n[ "$*" = "config get project" ] && echo gcloud-proj\n')
    gcloud.chmod(0o755)
    assert both(env) == ("gcloud-proj", "gcloud-proj")


def test_the_metadata_server_names_the_project_on_compute_engine(home, metadata_server):
    _, env = home
    env["GCE_METADATA_IP"] = env["GCE_METADATA_HOST"] = metadata_server
    assert both(env) == ("meta-proj", "meta-proj")


def test_nothing_names_no_project(home):
    _, env = home
    assert both(env) == ("None", "None")


def test_the_operator_uses_the_found_project(gcp_emulator, monkeypatch):
    """End to end: no project_name, GOOGLE_CLOUD_PROJECT set, listing the emulator's project."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=gcp_emulator))
    client.create_secret(request={"parent": "projects/found", "secret_id": "db",
                                  "secret": {"replication": {"automatic": {}}}})
    from keyway.ray import GCPRaySecretOperator

    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "found")
    operator = GCPRaySecretOperator(credentials=AnonymousCredentials(), client_options={"api_endpoint": gcp_emulator})
    operator.initialize()
    assert operator.list_secrets() == ["projects/found/secrets/db"]
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    for name in ("GCLOUD_PROJECT", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", "/nonexistent")
    monkeypatch.setenv("GCE_METADATA_IP", f"127.0.0.1:{free_port()}")
    with pytest.raises(RuntimeError, match="project ID"):
        GCPRaySecretOperator(credentials=AnonymousCredentials())


def test_the_binary_reads_a_secret_alone_from_the_found_project(home, metadata_server, gcp_emulator):
    """`keyway get gcp-sm://SECRET` with no project in the reference or the config: on Compute Engine or GKE
    the metadata server's project, with a service account key the key's, as gcloud and Google's libraries do;
    nothing: a one-line error that says where to set one (exit 2)."""
    from conftest import binary, seed_gcp

    seed_gcp(gcp_emulator, {"db": b"meta-pw"}, project="meta-proj")
    seed_gcp(gcp_emulator, {"db": b"sa-pw"}, project="sa-proj")
    tmp, env = home
    config = tmp / "keyway.toml"
    config.write_text(f'[providers.gcp-sm]\ntype = "gcp"\nendpoint = "{gcp_emulator}"\ncredentials = "anonymous"\n')

    def get(env):
        return subprocess.run([str(binary("keyway")), "--config", str(config), "--daemon", "never", "get",
                               "gcp-sm://db"], env=env, capture_output=True, text=True, timeout=60)

    on_gce = dict(env, GCE_METADATA_IP=metadata_server, GCE_METADATA_HOST=metadata_server)
    assert (get(on_gce).returncode, get(on_gce).stdout) == (0, "meta-pw")
    with_key = dict(on_gce, GOOGLE_APPLICATION_CREDENTIALS=str(service_account_key(tmp / "sa.json", "sa-proj")))
    assert get(with_key).stdout == "sa-pw", "the key file comes before the metadata server"
    nothing = get(env)
    assert nothing.returncode == 2
    assert nothing.stderr.strip().endswith("no GCP project: write gcp-sm://PROJECT/SECRET, set `project` in the "
                                           "provider's table of keyway.toml, or set GOOGLE_CLOUD_PROJECT"), nothing.stderr
