"""Applications written for the AWS Secrets Manager Agent work unchanged against `keyway serve`.

The client code is the AWS documentation's own pattern: `requests.get("http://localhost:2773/secretsmanager/get?
secretId=...", headers={"X-Aws-Parameters-Secrets-Token": token})`, then `json.loads(...)["SecretString"]`.
"""

import json
import os
import subprocess
import urllib.error
import urllib.request

import boto3
import pytest
import requests

from conftest import binary, free_port


@pytest.fixture()
def daemon(tmp_path, moto_endpoint):
    client = boto3.client(
        "secretsmanager",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_secret(Name="MyTest", SecretString=json.dumps({"username": "app", "password": "py-canary-7731"}))
    client.create_secret(Name="Binary", SecretBinary=b"\x00\x01bin")
    token_file = tmp_path / "awssmatoken"
    token_file.write_text("python-agent-token\n")
    port = free_port()
    config = tmp_path / "keyway.toml"
    config.write_text(
        f"""
[providers.aws-sm]
type = "aws"
region = "us-east-1"
endpoint = "{moto_endpoint}"
"""
    )
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_TOKEN=f"file://{token_file}", AWS_EC2_METADATA_DISABLED="true")
    proc = subprocess.Popen(
        [binary("keyway"), "--config", config, "--socket", tmp_path / "k.sock", "serve", "--tcp", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        assert proc.stdout.readline().startswith("listening on unix:")
        assert proc.stdout.readline().strip() == f"listening on tcp:127.0.0.1:{port}"
        yield f"http://localhost:{port}", token_file
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "py-canary-7731" not in err


def test_requests_client_as_in_the_aws_docs(daemon):
    base, token_file = daemon
    headers = {"X-Aws-Parameters-Secrets-Token": token_file.read_text().strip()}
    response = requests.get(f"{base}/secretsmanager/get?secretId=MyTest", headers=headers)
    assert response.status_code == 200, response.text
    secret = json.loads(json.loads(response.text)["SecretString"])
    assert secret["password"] == "py-canary-7731"
    body = response.json()
    assert body["Name"] == "MyTest"
    assert body["ARN"].startswith("arn:aws:secretsmanager:us-east-1:")
    assert body["VersionStages"] == ["AWSCURRENT"]

    # The path form and binary secrets.
    response = requests.get(f"{base}/v1/Binary", headers=headers)
    assert response.status_code == 200
    import base64

    assert base64.b64decode(response.json()["SecretBinary"]) == b"\x00\x01bin"


def test_urllib_client_errors_have_the_aws_shape(daemon, moto_endpoint):
    base, token_file = daemon
    request = urllib.request.Request(
        f"{base}/secretsmanager/get?secretId=Nope",
        headers={"X-Aws-Parameters-Secrets-Token": token_file.read_text().strip()},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request)
    # The agent passes Secrets Manager's own status, code and message on; here the upstream is moto.
    client = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    with pytest.raises(client.exceptions.ResourceNotFoundException) as upstream:
        client.get_secret_value(SecretId="Nope")
    assert err.value.code == upstream.value.response["ResponseMetadata"]["HTTPStatusCode"]
    assert json.loads(err.value.read()) == {"__type": "ResourceNotFoundException",
                                            "message": upstream.value.response["Error"]["Message"]}

    # No token: the agent's 403, plain text.
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/secretsmanager/get?secretId=MyTest")
    assert (err.value.code, err.value.read()) == (403, b"Bad Token")
