"""Keyway replaces Flyte's secret webhook with no change to Flyte or flytekit.

The Pod carries Flyte's annotations, built from flytekit's own `Secret` model the way flytepropeller encodes them
(protobuf text format, base32 without padding). `keyway webhook --review` mutates it; the init container's command
from the patch runs for real against moto into a directory standing in for the volume; then flytekit's own
`SecretsManager`, configured only by the environment the patch sets, reads the secrets back.
"""

import base64
import json
import os
import subprocess
import sys

import boto3
import jsonpatch
from flytekit.models.security import Secret
from google.protobuf import text_format

from conftest import binary

GROUP = "arn:aws:secretsmanager:us-east-1:123456789012:secret"


def annotation(key: str, mount) -> str:
    text = text_format.MessageToString(Secret(group=GROUP, key=key, mount_requirement=mount).to_flyte_idl(), as_one_line=True)
    return base64.b32encode(text.encode()).decode().rstrip("=")


def test_flytekit_reads_what_the_keyway_patch_delivers(tmp_path, moto_endpoint):
    client = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_secret(Name="user_secret", SecretString="flyte-canary-value")
    client.create_secret(Name="db_token", SecretString="db-token-value")
    client.create_secret(Name="api_key", SecretString="env-canary-value")
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "f1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:flyte:flytepropeller"},
            "object": {
                "metadata": {
                    "name": "a1b2-n0-0",
                    "labels": {"inject-flyte-secrets": "true"},
                    "annotations": {
                        "flyte.secrets/s0": annotation("user_secret", Secret.MountType.FILE),
                        "flyte.secrets/s1": annotation("db_token", Secret.MountType.ANY),
                        "flyte.secrets/s2": annotation("api_key", Secret.MountType.ENV_VAR),
                    },
                },
                # flytepropeller sets args, not command
                "spec": {"containers": [{"name": "task", "image": "ghcr.io/flyteorg/flytekit:py3.11",
                                         "args": ["pyflyte-execute", "--inputs", "s3://bucket/inputs.pb"]}]},
            },
        },
    }
    answer = subprocess.run([binary("keyway"), "webhook", "--flyte", "aws", "--review", "-"],
                            input=json.dumps(review), capture_output=True, text=True, check=True)
    response = json.loads(answer.stdout)["response"]
    assert response["allowed"] is True, response
    assert "warnings" not in response, response
    patch = json.loads(base64.b64decode(response["patch"], validate=True))   # the API's JSON form of []byte
    pod = jsonpatch.apply_patch(review["request"]["object"], patch)

    task = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value", "") for e in task["env"]}
    assert env == {"FLYTE_SECRETS_DEFAULT_DIR": "/etc/flyte/secrets", "FLYTE_SECRETS_FILE_PREFIX": ""}
    assert any(m["mountPath"] == "/etc/flyte/secrets" and m["readOnly"] for m in task["volumeMounts"])
    [init] = pod["spec"]["initContainers"]

    # The init container's command, run for real; the volume is a temporary directory.
    volume = tmp_path / "volume"
    command = list(init["command"])
    command[command.index("--dir") + 1] = str(volume)
    bin_dir = tmp_path / "bin"
    command[command.index("--install-self") + 1] = str(bin_dir)
    config = tmp_path / "keyway.toml"
    config.write_text(f'[providers.aws-sm]\ntype = "aws"\nregion = "us-east-1"\nendpoint = "{moto_endpoint}"\n')
    run_env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_EC2_METADATA_DISABLED="true", KEYWAY_CONFIG=str(config))
    rendered = subprocess.run([binary("keyway"), *command[1:]], env=run_env, capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    assert "flyte-canary-value" not in rendered.stderr
    assert "env-canary-value" not in json.dumps(pod), "only references in the Pod"

    # flytekit's own SecretsManager, configured only by the variables the patch sets (the directory swapped for
    # the stand-in volume), in a fresh interpreter so nothing is cached.
    task_env = dict(os.environ, FLYTE_SECRETS_DEFAULT_DIR=str(volume),
                    FLYTE_SECRETS_FILE_PREFIX=env["FLYTE_SECRETS_FILE_PREFIX"])
    # The task container's command from the patch (the wrapper the init container installed, then
    # `keyway exec ... --`), with the reader standing in for pyflyte-execute.
    assert task["args"] == ["pyflyte-execute", "--inputs", "s3://bucket/inputs.pb"]
    wrapper = task["command"]
    assert wrapper[:2] == ["/keyway/bin/keyway", "exec"] and wrapper[-1] == "--", wrapper
    read = subprocess.run(
        [bin_dir / "keyway", *wrapper[1:], sys.executable, "-c",
         "from flytekit.core.context_manager import SecretsManager as S; import sys;"
         "m = S(); print(m.get(sys.argv[1], 'user_secret')); print(m.get(sys.argv[1], 'db_token'));"
         "print(m.get(sys.argv[1], 'api_key'))", GROUP],
        env=dict(task_env, **{k: v for k, v in run_env.items() if k.startswith(("AWS_", "KEYWAY_"))}),
        capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    assert read.stdout.split() == ["flyte-canary-value", "db-token-value", "env-canary-value"]
