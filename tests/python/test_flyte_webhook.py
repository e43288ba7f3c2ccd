"""Keyway replaces Flyte's secret webhook with no change to Flyte or flytekit.

The annotations are built as flytepropeller builds them, by an encoder written here from Flyte's own source, not
from Keyway's: golang/protobuf 1.5's `proto.MarshalTextString` (one `name: value` line per field that is not its
default, declaration order, enums by name, strings byte by byte with `\\n \\r \\t \\" \\\\` and every other byte
outside printable ASCII as three octal digits) under flyteplugins' `Base32Encoder` (alphabet
`abcdefghijklmnopqrstuvwxyz123456`, no padding). The encoder is checked against Flyte's own marshaler test
vectors first. `keyway webhook --review` mutates the Pod; the init container's command from the patch runs for
real against moto or the GCP emulator into a directory standing in for the volume; then flytekit's own
`SecretsManager`, configured only by the environment the patch sets, reads every secret back, inside the task
container's command (the `keyway exec` wrapper the init container installed).
"""

import base64
import json
import os
import subprocess
import sys

import boto3
import jsonpatch
import pytest
from flyteidl.core import security_pb2
from flytekit.models.security import Secret

from conftest import binary, seed_gcp

FLYTE_ALPHABET = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "abcdefghijklmnopqrstuvwxyz123456")
AWS_GROUP = "arn:aws:secretsmanager:us-east-1:123456789012:secret"
DIR = "/etc/flyte/secrets"


def go_quote(value: str) -> str:
    """golang/protobuf `textWriter.writeQuotedString`."""
    out = []
    for byte in value.encode():
        char = chr(byte)
        if char in '\n\r\t"\\':
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}[char])
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def marshal_text(secret, spacing: str = " ") -> str:
    """golang/protobuf `proto.MarshalTextString` of a flyteidl.core.Secret (flytekit's model or flyteidl's own
    message). `spacing` after the colon: golang/protobuf writes one space; protobuf-go's prototext sometimes two."""
    idl = secret.to_flyte_idl() if isinstance(secret, Secret) else secret
    lines = []
    for field in ("group", "group_version", "key", "mount_requirement", "env_var"):
        value = getattr(idl, field)
        if not value:
            continue  # proto3 scalars at their default are not written; ANY is 0
        text = idl.MountType.Name(value) if field == "mount_requirement" else go_quote(value)
        lines.append(f"{field}:{spacing}{text}\n")
    return "".join(lines)


def flyte_base32(data: bytes) -> str:
    """flyteplugins' `Base32Encoder`: RFC 4648 base32 with `a-z1-6` for `A-Z2-7`, no padding."""
    return base64.b32encode(data).decode().rstrip("=").translate(FLYTE_ALPHABET)


def annotations(secrets: list, doubled: int = -1) -> dict:
    """flyteplugins' `MarshalSecretsToMapStrings`: `flyte.secrets/s<index>`; secret number `doubled` written with
    doubled spaces, as protobuf-go's randomised writer would."""
    return {f"flyte.secrets/s{i}": flyte_base32(marshal_text(s, "  " if i == doubled else " ").encode())
            for i, s in enumerate(secrets)}


def test_the_encoder_reproduces_flytes_own_marshaler_vectors():
    # flyteplugins utils/secrets/marshaler_test.go, "forbidden characters" and "Without group".
    assert annotations([Secret(group=";':/\\")]) == {"flyte.secrets/s0": "m4zg54lqhiqceozhhixvyxbcbi"}
    # flytekit's model refuses a Secret without a group; flyteidl's message is what flytepropeller marshals.
    assert annotations([security_pb2.Secret(key="my_key")]) == {"flyte.secrets/s0": "nnsxsoraejwxsx2lmv3secq"}


def review(annotations: dict, namespace: str = "flytesnacks-development") -> dict:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "f1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            "namespace": namespace,
            "userInfo": {"username": "system:serviceaccount:flyte:flytepropeller"},
            "object": {
                "metadata": {"name": "a1b2-n0-0", "labels": {"inject-flyte-secrets": "true"},
                             "annotations": annotations},
                # flytepropeller sets args, not command
                "spec": {"containers": [{"name": "task", "image": "ghcr.io/flyteorg/flytekit:py3.11",
                                         "args": ["pyflyte-execute", "--inputs", "s3://bucket/inputs.pb"]}]},
            },
        },
    }


def mutate(flyte: str, annotations: dict, namespace: str = "flytesnacks-development") -> tuple:
    """`keyway webhook --flyte FLYTE --review -`: the answer and the mutated Pod."""
    request = review(annotations, namespace)
    answer = subprocess.run([binary("keyway"), "webhook", "--flyte", flyte, "--review", "-"],
                            input=json.dumps(request), capture_output=True, text=True, check=True)
    response = json.loads(answer.stdout)["response"]
    if "patch" not in response:
        return response, request["request"]["object"]
    patch = json.loads(base64.b64decode(response["patch"], validate=True))   # the API's JSON form of []byte
    return response, jsonpatch.apply_patch(request["request"]["object"], patch)


def deliver(tmp_path, pod: dict, config: str, env: dict, reads: list) -> list:
    """Runs the init container's command, then the task container's command with flytekit's `SecretsManager`
    reading `reads` ((group, key, group_version) each); returns what it read and checks the environment."""
    [init] = pod["spec"]["initContainers"]
    task = pod["spec"]["containers"][0]
    volume = tmp_path / "volume"
    command = list(init["command"])
    command[command.index("--dir") + 1] = str(volume)
    bin_dir = tmp_path / "bin"
    if "--install-self" in command:
        command[command.index("--install-self") + 1] = str(bin_dir)
    else:   # files only: the task reads them with the keyway binary standing in for its own entrypoint
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "keyway").symlink_to(binary("keyway"))
    (tmp_path / "keyway.toml").write_text(config)
    run_env = dict(os.environ, KEYWAY_CONFIG=str(tmp_path / "keyway.toml"), **env)
    rendered = subprocess.run([binary("keyway"), *command[1:]], env=run_env, capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    assert "canary" not in rendered.stderr
    assert "canary" not in json.dumps(pod), "only references in the Pod"

    assert task["args"] == ["pyflyte-execute", "--inputs", "s3://bucket/inputs.pb"]
    wrapper = task.get("command") or ["/keyway/bin/keyway", "exec", "--"]   # files only: nothing to wrap
    assert wrapper[:2] == ["/keyway/bin/keyway", "exec"] and wrapper[-1] == "--", wrapper
    plain = {e["name"]: e.get("value", "") for e in task["env"]}
    assert {k: plain[k] for k in ("FLYTE_SECRETS_DEFAULT_DIR", "FLYTE_SECRETS_FILE_PREFIX",
                                  "FLYTE_SECRETS_ENV_PREFIX")} == \
        {"FLYTE_SECRETS_DEFAULT_DIR": DIR, "FLYTE_SECRETS_FILE_PREFIX": "", "FLYTE_SECRETS_ENV_PREFIX": "_FSEC_"}
    assert any(m["mountPath"] == DIR and m["readOnly"] for m in task["volumeMounts"])
    # The volume stands in for /etc/flyte/secrets: paths the patch names are read there.
    task_env = {k: v.replace(DIR, str(volume)) for k, v in plain.items()}
    reader = ("import json, os, sys\n"
              "from flytekit.core.context_manager import SecretsManager\n"
              "m = SecretsManager()\n"
              "print(json.dumps([m.get(g, k, v) for g, k, v in json.loads(sys.argv[1])]))\n"
              "print(json.dumps({k: v for k, v in os.environ.items() if k.isupper()}))\n")
    read = subprocess.run([bin_dir / "keyway", *wrapper[1:], sys.executable, "-c", reader, json.dumps(reads)],
                          env=dict(run_env, **task_env), capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    values, environment = (json.loads(line) for line in read.stdout.splitlines())
    return values, environment, task_env, volume


def test_flytekit_reads_every_aws_secret_flytepropeller_asks_for(tmp_path, moto_endpoint):
    client = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    for name, value in [("user_secret", "file-canary"), ("db_token", "any-canary"), ("api_key", "env-canary"),
                        ("named_key", "named-env-canary"), ("tls_key", "path-canary"),
                        ("ci/tökén", "octal-canary")]:
        client.create_secret(Name=name, SecretString=value)
    secrets = [
        Secret(group=AWS_GROUP, key="user_secret", mount_requirement=Secret.MountType.FILE),
        Secret(group=AWS_GROUP, key="db_token"),                        # ANY: a file, as Flyte's AWS injector
        Secret(group=AWS_GROUP, key="api_key", mount_requirement=Secret.MountType.ENV_VAR),
        Secret(group=AWS_GROUP, key="named_key", mount_requirement=Secret.MountType.ENV_VAR, env_var="NAMED_KEY"),
        Secret(group=AWS_GROUP + ":", key="tls_key", mount_requirement=Secret.MountType.FILE, env_var="TLS_KEY_PATH"),
        Secret(group=AWS_GROUP, key="ci/tökén", mount_requirement=Secret.MountType.FILE),   # octal escapes
    ]
    encoded = annotations(secrets, doubled=2)
    assert "\\303\\266" in marshal_text(secrets[5])
    response, pod = mutate("aws", encoded)
    assert response["allowed"] is True, response
    assert "warnings" not in response, response
    config = f'[providers.aws-sm]\ntype = "aws"\nregion = "us-east-1"\nendpoint = "{moto_endpoint}"\n'
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"}
    values, environment, task_env, volume = deliver(tmp_path, pod, config, env, [
        [AWS_GROUP, "user_secret", None], [AWS_GROUP, "db_token", None], [AWS_GROUP, "api_key", None],
        [AWS_GROUP, "named_key", None], [AWS_GROUP + ":", "tls_key", None], [AWS_GROUP, "ci/tökén", None]])
    assert values == ["file-canary", "any-canary", "env-canary", "named-env-canary", "path-canary", "octal-canary"]
    # env_var: the value for ENV_VAR, the file's path for a file; Flyte's own name for ENV_VAR too.
    assert environment["NAMED_KEY"] == "named-env-canary"
    assert environment[f"_FSEC_{AWS_GROUP.upper()}_API_KEY"] == "env-canary"
    assert (volume / "arn:aws:secretsmanager:us-east-1:123456789012:secret:" / "tls_key").read_text() == "path-canary"
    assert task_env["TLS_KEY_PATH"] == str(volume / f"{AWS_GROUP}:" / "tls_key")
    assert oct((volume / AWS_GROUP / "user_secret").stat().st_mode & 0o777) == "0o400"


def test_flytekit_reads_every_gcp_secret_flytepropeller_asks_for(tmp_path, gcp_emulator):
    seed_gcp(gcp_emulator, {"db-password": b"gcp-file-canary", "api-token": b"gcp-full-name-canary",
                            "token": b"gcp-env-canary"})
    secrets = [
        Secret(group="db-password", group_version="1", mount_requirement=Secret.MountType.FILE),
        Secret(group="projects/proj/secrets/api-token", group_version="latest"),
        Secret(group="token", mount_requirement=Secret.MountType.ENV_VAR),   # no version: latest (Flyte refuses)
    ]
    response, pod = mutate("gcp:proj", annotations(secrets, doubled=0))
    assert response["allowed"] is True, response
    config = f'[providers.gcp-sm]\ntype = "gcp"\nendpoint = "{gcp_emulator}"\ncredentials = "anonymous"\n'
    values, environment, _, volume = deliver(tmp_path, pod, config, {}, [
        ["db-password", None, "1"], ["projects/proj/secrets/api-token", None, "latest"], ["token", None, None]])
    assert values == ["gcp-file-canary", "gcp-full-name-canary", "gcp-env-canary"]
    assert environment["_FSEC_TOKEN"] == "gcp-env-canary"
    assert (volume / "projects/proj/secrets/api-token/latest").read_text() == "gcp-full-name-canary"


def test_a_labelled_pod_without_secret_annotations_is_admitted_unchanged():
    response, _ = mutate("aws", {"other": "x"})
    assert response["allowed"] is True and "patch" not in response, response


@pytest.mark.parametrize("value, fragment", [
    (base64.b32encode(b'group: "x"\n').decode().rstrip("="), "not Flyte's base32"),   # RFC 4648's alphabet
    (flyte_base32(b'group: "x"\ncolour: "red"\n'), "unknown field `colour`"),
])
def test_an_annotation_that_does_not_decode_is_refused_by_name(value, fragment):
    response, _ = mutate("aws", {"flyte.secrets/s0": value})
    assert response["allowed"] is False
    assert "flyte.secrets/s0" in response["status"]["message"] and fragment in response["status"]["message"], response


def test_flytekit_reads_every_vault_secret_flytepropeller_asks_for(tmp_path, bao_server):
    vault, call = bao_server
    call("POST", "secret/data/ci/github", {"data": {"token": "vault-kv2-canary", "user": "ci"}})
    call("POST", "sys/mounts/kv", {"type": "kv", "options": {"version": "1"}})
    call("POST", "kv/app", {"password": "vault-kv1-canary"})
    secrets = [
        # Flyte's Vault injector: the group is the API path (KV v2's with data/), the key the field.
        Secret(group="secret/data/ci/github", key="token", group_version="kv2", mount_requirement=Secret.MountType.FILE),
        Secret(group="kv/app", key="password", group_version="kv1"),
    ]
    response, pod = mutate("vault", annotations(secrets))
    assert response["allowed"] is True, response
    (tmp_path / "vault-token").write_text("root")
    config = f'[providers.vault]\ntype = "vault"\naddress = "{vault}"\n[providers.vault.auth]\nmethod = "token"\n' \
             f'token_file = "vault-token"\n'
    values, _, _, volume = deliver(tmp_path, pod, config, {}, [
        ["secret/data/ci/github", "token", "kv2"], ["kv/app", "password", "kv1"]])
    assert values == ["vault-kv2-canary", "vault-kv1-canary"]
    # Where Vault Agent writes it for Flyte, too: <group>/<key>.
    assert (volume / "secret/data/ci/github/token").read_text() == "vault-kv2-canary"
    env_var = annotations([Secret(group="secret/data/ci/github", key="user", mount_requirement=Secret.MountType.ENV_VAR)])
    refused, _ = mutate("vault", env_var)
    assert refused["allowed"] is False and "Flyte's Vault secrets are files" in refused["status"]["message"]


def test_flytekit_reads_every_azure_secret_flytepropeller_asks_for(tmp_path, azure_vault):
    version = azure_vault.put("versioned", "azure-versioned-canary")
    azure_vault.put("latest-only", "azure-latest-canary")
    endpoint, ca = azure_vault.endpoint, azure_vault.ca
    secrets = [
        Secret(group="https://kv1.vault.azure.net/secrets/versioned", group_version=version,
               mount_requirement=Secret.MountType.FILE),
        Secret(group="https://kv1.vault.azure.net/secrets/latest-only"),
    ]
    response, pod = mutate("azure", annotations(secrets))
    assert response["allowed"] is True, response
    (tmp_path / "azure-token").write_text("token")
    config = (f'[providers.azure-kv]\ntype = "azure"\nendpoint = "{endpoint}"\ncredentials = "token-file"\n'
              f'token_file = "azure-token"\nca_file = "{ca}"\nverify_challenge_resource = false\n')
    # Flyte's users read the name and the version (docs.union.ai), where Flyte's init container wrote them.
    values, _, _, _ = deliver(tmp_path, pod, config, {}, [["versioned", None, version], ["latest-only", None, None]])
    assert values == ["azure-versioned-canary", "azure-latest-canary"]


def test_flytekit_reads_every_kubernetes_secret_flytepropeller_asks_for(tmp_path, k8s_api_server):
    api, put = k8s_api_server
    put("ml", "github-creds", {"token": b"k8s-file-canary", "user": b"k8s-env-canary"})
    secrets = [
        Secret(group="github-creds", key="token", mount_requirement=Secret.MountType.FILE),
        Secret(group="github-creds", key="user", mount_requirement=Secret.MountType.ENV_VAR),
    ]
    response, pod = mutate("k8s", annotations(secrets), namespace="ml")
    assert response["allowed"] is True, response
    (tmp_path / "k8s-token").write_text("admin")
    config = f'[providers.k8s]\ntype = "k8s"\napi_server = "{api}"\ntoken_file = "k8s-token"\n'
    values, environment, _, volume = deliver(tmp_path, pod, config, {}, [
        ["github-creds", "token", None], ["github-creds", "user", None]])
    assert values == ["k8s-file-canary", "k8s-env-canary"]
    assert environment["_FSEC_GITHUB-CREDS_USER"] == "k8s-env-canary"
    assert oct((volume / "github-creds" / "token").stat().st_mode & 0o777) == "0o400"
