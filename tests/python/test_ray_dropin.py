"""`keyway.ray` against the original `raysecretsproxy`, on a real local Ray and moto: the same expectations for
both (where the original behaves sensibly), so `from keyway.ray import ...` is the whole migration."""

import importlib
import time

import boto3
import pytest
import ray

from conftest import free_port, http_reply, loopback_http, moto_count, moto_record, moto_requests, start_moto

CANARY = "ray-canary-value-8842"


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    proc, endpoint = start_moto(tmp_path_factory.mktemp("moto"))
    client = boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_secret(Name="app/token", SecretString=CANARY)
    for i in range(5):
        client.create_secret(Name=f"app/s{i}", SecretString=f"v{i}")
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


def implementation(module):
    """The API from `module`: the original, or Keyway's drop-in."""
    if module == "raysecretsproxy":
        mod = importlib.import_module("raysecretsproxy.ray_secret_proxy")
        ops = importlib.import_module("raysecretsproxy.aws_secret_operator")
        base = importlib.import_module("raysecretsproxy.ray_secret_operator")
        return mod.RaySecretProxy, ops.AWSRaySecretOperator, base.RaySecretOperator
    mod = importlib.import_module("keyway.ray")
    return mod.RaySecretProxy, mod.AWSRaySecretOperator, mod.RaySecretOperator


@pytest.fixture(params=["raysecretsproxy", "keyway.ray"])
def impl(request):
    """The module to import the API from: the original, or Keyway's drop-in."""
    return implementation(request.param)


def proxy(impl, moto, default_ttl=-1, **operator_kwargs):
    RaySecretProxy, AWSRaySecretOperator, _ = impl
    operator = AWSRaySecretOperator(endpoint_url=moto, region_name="us-east-1",
                                    aws_access_key_id="testing", aws_secret_access_key="testing", **operator_kwargs)
    return RaySecretProxy.remote(operator, default_ttl=default_ttl)


def test_get_secret_caches_and_ttl_zero_asks_again(ray_local, moto, impl):
    actor = proxy(impl, moto)
    moto_record(moto)
    secret = ray.get(actor.get_secret.remote("app/token"))
    assert secret.value() == CANARY and secret.raw_value() == CANARY.encode()
    assert secret.secret_name == "app/token"
    assert CANARY not in str(secret) and CANARY not in repr(secret)
    assert not secret.is_expired()
    # Every field survives Ray's pickling of the return (keyway.ray's RaySecret has its own reducer).
    assert secret.ttl == -1 and abs(secret.create_timestamp - time.time()) < 60
    assert "ARN" in secret.metadata and "VersionId" in secret.metadata
    assert moto_count(moto, "GetSecretValue") == 1
    ray.get(actor.get_secret.remote("app/token"))
    assert moto_count(moto, "GetSecretValue") == 1, "a cached name makes no upstream call"
    ray.get(actor.get_secret.remote("app/token", ttl=0))
    assert moto_count(moto, "GetSecretValue") == 2, "ttl=0 asks the upstream"


def test_hydrate_list_and_purge(ray_local, moto, impl):
    actor = proxy(impl, moto)
    names = [f"app/s{i}" for i in range(5)]
    ray.get(actor.hydrate_cache.remote(secret_names=names))
    assert sorted(ray.get(actor.list_cached_secrets.remote())) == names
    moto_record(moto)
    assert [ray.get(actor.get_secret.remote(n)).value() for n in names] == [f"v{i}" for i in range(5)]
    assert moto_count(moto, "GetSecretValue") == 0, "hydrated"
    ray.get(actor.purge_secret.remote("app/s0"))
    assert "app/s0" not in ray.get(actor.list_cached_secrets.remote())
    ray.get(actor.purge_cache.remote())
    assert ray.get(actor.list_cached_secrets.remote()) == []
    listed = ray.get(actor.list_secrets.remote())
    assert set(names + ["app/token"]) <= set(listed)


def test_hydrate_by_listing_takes_the_filter(ray_local, moto, impl):
    """No names: hydrate_cache lists with boto3's own filter shape and caches exactly what matched."""
    actor = proxy(impl, moto)
    ray.get(actor.hydrate_cache.remote(filter=[{"Key": "name", "Values": ["app/s"]}]))
    names = [f"app/s{i}" for i in range(5)]
    assert sorted(ray.get(actor.list_cached_secrets.remote())) == names
    moto_record(moto)
    assert [ray.get(actor.get_secret.remote(n)).value() for n in names] == [f"v{i}" for i in range(5)]
    assert moto_count(moto, "GetSecretValue") == 0, "hydrated"


def test_a_name_filter_with_several_values_lists_each(ray_local, moto, impl):
    actor = proxy(impl, moto)
    listed = ray.get(actor.list_secrets.remote([{"Key": "name", "Values": ["app/s1", "app/s3"]}]))
    assert sorted(listed) == ["app/s1", "app/s3"]


def test_an_expired_secret_is_fetched_again(ray_local, moto, impl):
    """default_ttl=1: a cached read within the second, then the secret reports itself expired and the next
    get_secret asks the upstream again (the original's whole-second arithmetic, so wait past two seconds)."""
    actor = proxy(impl, moto, default_ttl=1)
    moto_record(moto)
    first = ray.get(actor.get_secret.remote("app/s1"))
    ray.get(actor.get_secret.remote("app/s1"))
    assert moto_count(moto, "GetSecretValue") == 1
    assert first.ttl == 1 and not first.is_expired()
    time.sleep(2.1)
    assert first.is_expired()
    again = ray.get(actor.get_secret.remote("app/s1"))
    assert moto_count(moto, "GetSecretValue") == 2, "an expired secret is fetched again"
    assert again.value() == "v1" and not again.is_expired()


def _set_secret(moto, name, value):
    client = boto3.client("secretsmanager", endpoint_url=moto, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    try:
        client.create_secret(Name=name, SecretString=value)
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=name, SecretString=value)


def test_a_purge_drops_the_cached_answer_and_the_next_read_asks_again(ray_local, moto, impl):
    """A rotated secret: cached reads keep the old value until purge_secret (or purge_cache); the next read asks
    the upstream once and every read after it has the new value."""
    actor = proxy(impl, moto)
    _set_secret(moto, "app/rotating", "old")
    assert ray.get(actor.get_secret.remote("app/rotating")).value() == "old"
    _set_secret(moto, "app/rotating", "new")
    assert ray.get(actor.get_secret.remote("app/rotating")).value() == "old", "cached"
    for purge, value in ((lambda: actor.purge_secret.remote("app/rotating"), "new"),
                         (lambda: actor.purge_cache.remote(), "newer")):
        ray.get(purge())
        moto_record(moto)
        assert [ray.get(actor.get_secret.remote("app/rotating")).value() for _ in range(3)] == [value] * 3
        assert moto_count(moto, "GetSecretValue") == 1
        _set_secret(moto, "app/rotating", "newer")


def test_a_secret_read_steadily_is_refreshed_before_it_expires(ray_local, moto):
    """keyway.ray's cache refreshes an entry read in the last fifth of its TTL in the background, so callers of a
    hot secret never wait for the upstream; the answers the proxy keeps ready must not hide those reads from it."""
    import keyway.ray as kr

    _set_secret(moto, "app/hot", "one")
    actor = proxy((kr.RaySecretProxy, kr.AWSRaySecretOperator, None), moto, default_ttl=6)
    moto_record(moto)
    assert ray.get(actor.get_secret.remote("app/hot")).value() == "one"
    # The entry was fetched before this instant: it expires before `expiry`, and refresh-ahead starts at 4.8 s.
    expiry = time.monotonic() + 5.9
    _set_secret(moto, "app/hot", "two")
    time.sleep(5.0)
    assert ray.get(actor.get_secret.remote("app/hot")).value() == "one", "still fresh"
    while moto_count(moto, "GetSecretValue") < 2 and time.monotonic() < expiry:
        time.sleep(0.02)
    assert moto_count(moto, "GetSecretValue") == 2, "the read in the last fifth started a refresh"
    # moto counts the request before it answers: the refreshed entry lands a moment later.
    while (value := ray.get(actor.get_secret.remote("app/hot")).value()) != "two" and time.monotonic() < expiry:
        time.sleep(0.02)
    assert value == "two"
    assert moto_count(moto, "GetSecretValue") == 2, "no caller waited for the upstream"


def test_a_kept_answer_is_serialized_once_and_reaches_every_caller_whole(ray_local, moto):
    """keyway.ray serializes an answer it keeps once, and its hook in front of Ray's serializer (in the actor's
    process) hands that serialization to every caller. On the Ray Keyway pins the hook must be in place (a Ray
    upgrade that moves the serializer fails here, not silently slower), and what 8 concurrent tasks receive
    through it is the whole answer."""
    import keyway.ray as kr

    actor = proxy((kr.RaySecretProxy, kr.AWSRaySecretOperator, None), moto)
    first = ray.get(actor.get_secret.remote("app/token"))

    def inspect(self):
        import keyway.ray._serialize

        serialize = ray._private.worker.global_worker.get_serialization_context().serialize
        kept = [secret for secret, _ in self._cache._ready.values()]
        return (keyway.ray._serialize.ray_serialize is not None, serialize.__qualname__,
                [secret._serialized is not None for secret in kept])

    hooked, serializer, carried = ray.get(actor.__ray_call__.remote(inspect))
    assert hooked and serializer == "serve_kept_serializations.<locals>.serialize" and carried == [True]

    @ray.remote(num_cpus=0)
    def read(actor, calls):
        return [ray.get(actor.get_secret.remote("app/token")) for _ in range(calls)]

    answers = [secret for batch in ray.get([read.remote(actor, 25) for _ in range(8)]) for secret in batch]
    assert len(answers) == 200
    for secret in answers:
        assert (secret.value(), secret.secret_name, secret.ttl, secret.metadata, secret.create_timestamp) == (
            CANARY, "app/token", -1, first.metadata, first.create_timestamp)
        assert secret._serialized is None, "the serialization stays in the actor"


def test_default_ttl_zero_caches_nothing(ray_local, moto, impl):
    actor = proxy(impl, moto, default_ttl=0)
    ray.get(actor.hydrate_cache.remote(secret_names=["app/s2"]))
    moto_record(moto)
    assert ray.get(actor.get_secret.remote("app/s2")).value() == "v2"
    assert ray.get(actor.get_secret.remote("app/s2")).value() == "v2"
    assert moto_count(moto, "GetSecretValue") == 2, "default_ttl=0: every call asks the upstream"
    assert ray.get(actor.list_cached_secrets.remote()) == []


def test_listing_and_hydrating_page_through_every_secret(ray_local, tmp_path):
    """Past ListSecrets' page of 100 (the original stops at the first page)."""
    import keyway.ray as kr

    proc, endpoint = start_moto(tmp_path)
    try:
        client = boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        names = sorted(f"many/s{i:03d}" for i in range(130))
        for name in names:
            client.create_secret(Name=name, SecretString=name)
        client.create_secret(Name="other/x", SecretString="x")
        actor = proxy((kr.RaySecretProxy, kr.AWSRaySecretOperator, None), endpoint)
        assert sorted(ray.get(actor.list_secrets.remote())) == sorted(names + ["other/x"])
        ray.get(actor.hydrate_cache.remote(filter=[{"Key": "name", "Values": ["many/"]}]))
        assert sorted(ray.get(actor.list_cached_secrets.remote())) == names
        moto_record(endpoint)
        assert ray.get(actor.get_secret.remote("many/s129")).value() == "many/s129"
        assert moto_count(endpoint, "GetSecretValue") == 0, "hydrated past the first page"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_missing_secrets_raise_value_error(ray_local, moto, impl):
    actor = proxy(impl, moto)
    with pytest.raises(ValueError) as missing:
        ray.get(actor.get_secret.remote("app/missing"))
    if impl[1].__module__.startswith("keyway"):
        import keyway

        assert isinstance(missing.value, keyway.NotFound)


# Secret names of `failing_aws` that fail otherwise than with AccessDeniedException: AWS's code, its HTTP
# status, Keyway's kind.
AWS_FAILURES = {"expired/token": ("ExpiredTokenException", 400, "PermissionDenied"),
                "throttled/token": ("ThrottlingException", 400, "Throttled"),
                "internal/token": ("InternalServiceError", 500, "Unavailable")}


@pytest.fixture(scope="module")
def failing_aws():
    """An endpoint that answers every Secrets Manager call as AWS does an identity without the permission (HTTP
    400, the JSON protocol's error shape, code AccessDeniedException), or for the names in AWS_FAILURES with
    their code and status."""
    import http.server
    import json

    class Fail(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            code, status, _ = AWS_FAILURES.get(request.get("SecretId"), ("AccessDeniedException", 400, None))
            body = json.dumps({"__type": code, "message": "refused by the test endpoint"}).encode()
            http_reply(self, status, body, {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code})

        def log_message(self, *args):
            pass

    with loopback_http(Fail) as address:
        yield f"http://{address}"


def test_aws_errors_are_botocore_client_errors(ray_local, failing_aws, impl):
    """The original lets boto3's ClientError through (code in e.response["Error"]["Code"]); keyway.ray's errors are
    that and Keyway's at once, so either `except` keeps working."""
    from botocore.exceptions import ClientError

    actor = proxy(impl, failing_aws)
    for call, operation in ((actor.get_secret.remote("app/token"), "GetSecretValue"),
                            (actor.list_secrets.remote(), "ListSecrets")):
        with pytest.raises(ClientError) as denied:
            ray.get(call)
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
        assert denied.value.operation_name == operation
        if impl[1].__module__.startswith("keyway"):
            import keyway

            assert isinstance(denied.value, keyway.PermissionDenied)
            assert "secretsmanager:" in denied.value.cause.keyway_message, "Keyway's: which permission to grant"


@pytest.mark.parametrize("name", sorted(AWS_FAILURES))
def test_aws_error_codes_reach_the_caller_as_aws_sent_them(ray_local, failing_aws, impl, name):
    """Each of AWS's codes comes back in the ClientError as boto3 reports it, from either module; keyway.ray's
    error is also of Keyway's kind and carries the code as `upstream_code`."""
    from botocore.config import Config
    from botocore.exceptions import ClientError

    import keyway

    code, _, kind = AWS_FAILURES[name]
    # boto3 would retry the 500 and the throttle for seconds; Keyway ignores `config` (its own retries apply).
    actor = proxy(impl, failing_aws, config=Config(retries={"total_max_attempts": 1}))
    with pytest.raises(ClientError) as failed:
        ray.get(actor.get_secret.remote(name))
    assert failed.value.response["Error"]["Code"] == code
    assert failed.value.operation_name == "GetSecretValue"
    if impl[1].__module__.startswith("keyway"):
        assert isinstance(failed.value, getattr(keyway, kind))
        assert failed.value.upstream_code == code


def test_an_unreachable_aws_endpoint_raises_botocores_connection_error(ray_local, impl):
    """boto3 raises EndpointConnectionError (not a ClientError) when nothing listens; so does keyway.ray, which is
    keyway.Unavailable as well, with `failure` "unreachable"."""
    from botocore.config import Config
    from botocore.exceptions import ClientError, EndpointConnectionError

    import keyway

    port = free_port()  # bound, then released: nothing listens
    actor = proxy(impl, f"http://127.0.0.1:{port}", config=Config(retries={"total_max_attempts": 1}))
    with pytest.raises(EndpointConnectionError) as unreachable:
        ray.get(actor.get_secret.remote("app/token"))
    assert not isinstance(unreachable.value, ClientError)
    assert f"127.0.0.1:{port}" in unreachable.value.kwargs["endpoint_url"]
    if impl[1].__module__.startswith("keyway"):
        assert isinstance(unreachable.value, keyway.Unavailable)
        assert unreachable.value.failure == "unreachable"
        assert "check the endpoint and network" in str(unreachable.value), "Keyway's message: what to do"


def test_no_aws_credentials_raise_botocores_no_credentials_error(moto, impl, monkeypatch, tmp_path):
    """With no credentials anywhere in the chain, boto3 raises NoCredentialsError; so does keyway.ray (also
    keyway.PermissionDenied, `failure` "no_credentials"), and the error survives pickling as Ray pickles it. The
    operator runs in this process: the environment of Ray's workers is the test's own."""
    import pickle

    from botocore.exceptions import ClientError, NoCredentialsError

    import keyway

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    operator = impl[1](endpoint_url=moto, region_name="us-east-1")
    operator.initialize()
    with pytest.raises(NoCredentialsError) as missing:
        operator._fetch("app/token")
    assert not isinstance(missing.value, ClientError)
    if impl[1].__module__.startswith("keyway"):
        again = pickle.loads(pickle.dumps(missing.value))
        assert type(again) is type(missing.value) and str(again) == str(missing.value)
        assert isinstance(again, keyway.PermissionDenied) and again.failure == "no_credentials"
        assert "AWS_PROFILE" in str(again), "Keyway's message: what to set"


def test_no_aws_region_raises_botocores_no_region_error(moto, impl, monkeypatch, tmp_path):
    """With no region anywhere, boto3 raises NoRegionError (building the client); so does keyway.ray (at the first
    fetch), which is also keyway.ConfigurationError with `failure` "no_region", and survives pickling."""
    import pickle

    from botocore.exceptions import NoRegionError

    import keyway

    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    operator = impl[1](endpoint_url=moto, aws_access_key_id="testing", aws_secret_access_key="testing")
    with pytest.raises(NoRegionError) as missing:
        operator.initialize()
        operator._fetch("app/token")
    if impl[1].__module__.startswith("keyway"):
        again = pickle.loads(pickle.dumps(missing.value))
        assert type(again) is type(missing.value) and str(again) == str(missing.value)
        assert isinstance(again, keyway.ConfigurationError) and again.failure == "no_region"
        assert "set AWS_REGION" in str(again), "Keyway's message: what to set"


@pytest.mark.parametrize("module", ["raysecretsproxy.gcp_secret_operator", "keyway.ray"])
def test_no_google_credentials_raise_google_auths_default_credentials_error(gcp_emulator, module, monkeypatch,
                                                                             tmp_path):
    """With no credentials file and no metadata server, google-auth raises DefaultCredentialsError (building the
    client); so does keyway.ray (at the first fetch), which is also keyway.PermissionDenied with `failure`
    "no_credentials". A metadata server that refuses connections stands for "not on Google Cloud"."""
    import pickle

    from google.api_core.client_options import ClientOptions
    from google.auth.exceptions import DefaultCredentialsError

    import keyway

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    port = free_port()  # bound, then released: nothing listens
    monkeypatch.setenv("GCE_METADATA_HOST", f"127.0.0.1:{port}")
    monkeypatch.setenv("GCE_METADATA_IP", f"127.0.0.1:{port}")
    operator = importlib.import_module(module).GCPRaySecretOperator(
        project_name="proj", transport="rest", client_options=ClientOptions(api_endpoint=gcp_emulator))
    with pytest.raises(DefaultCredentialsError) as missing:
        operator.initialize()
        operator._fetch("db")
    if module == "keyway.ray":
        again = pickle.loads(pickle.dumps(missing.value))
        assert type(again) is type(missing.value) and str(again) == str(missing.value)
        assert isinstance(again, keyway.PermissionDenied) and again.failure == "no_credentials"
        assert "gcloud auth application-default login" in str(again), "Keyway's message: what to do"


@pytest.mark.parametrize("failure, botocore_class", [("unreachable", "EndpointConnectionError"),
                                                      ("connect_timeout", "ConnectTimeoutError"),
                                                      ("read_timeout", "ReadTimeoutError")])
def test_each_transport_failure_is_botocores_class_and_pickles(failure, botocore_class):
    """A real read timeout takes 30 s to provoke from Keyway (10 s per attempt, three attempts) and minutes from
    boto3, so each row of the translation table (the one the unreachable endpoint above goes through) is checked
    here on a Keyway error shaped as the extension raises it."""
    import pickle

    from botocore import exceptions

    import keyway
    from keyway import _botocore

    error = keyway.Unavailable("AWS GetSecretValue timed out; check the network path to Secrets Manager")
    error.upstream_code, error.failure = None, failure
    translated = pickle.loads(pickle.dumps(_botocore.translate(error, "GetSecretValue", "https://sm.example")))
    assert isinstance(translated, getattr(exceptions, botocore_class)) and isinstance(translated, keyway.Unavailable)
    assert not isinstance(translated, exceptions.ClientError)
    assert (translated.failure, translated.kwargs["endpoint_url"]) == (failure, "https://sm.example")
    assert str(translated) == str(error)


def test_a_users_own_operator_keeps_working(ray_local, impl):
    RaySecretProxy, _, RaySecretOperator = impl

    class Static(RaySecretOperator):
        def __init__(self, **kwargs):
            self.calls = 0

        def initialize(self):
            pass

        def _fetch(self, secret_name, **kwargs):
            self.calls += 1
            return f"static-{secret_name}".encode(), {"calls": self.calls}

        def list_secrets(self, filter=None):
            return ["a", "b"]

    actor = RaySecretProxy.remote(Static())
    first = ray.get(actor.get_secret.remote("a"))
    second = ray.get(actor.get_secret.remote("a"))
    assert first.value() == second.value() == "static-a"
    assert second.metadata == {"calls": 1}, "served from the actor's cache"
    assert ray.get(actor.list_secrets.remote()) == ["a", "b"]


def test_a_subclass_of_keyways_operator_that_overrides_fetch_is_asked_through_it(ray_local, moto):
    import keyway.ray as kr

    class Shouting(kr.AWSRaySecretOperator):
        def _fetch(self, secret_name, **kwargs):
            value, metadata = super()._fetch(secret_name, **kwargs)
            return value.upper(), metadata

    actor = proxy((kr.RaySecretProxy, Shouting, None), moto)
    assert [ray.get(actor.get_secret.remote("app/s1")).value() for _ in range(2)] == ["V1", "V1"]


@pytest.mark.parametrize("module", ["raysecretsproxy.gcp_secret_operator", "keyway.ray"])
def test_gcp_operator_with_google_client_arguments(ray_local, gcp_emulator, module):
    """The GCP operator takes the Google client's own arguments (here: an emulator, anonymously)."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=gcp_emulator))
    secret = client.create_secret(request={"parent": "projects/proj", "secret_id": "db",
                                           "secret": {"replication": {"automatic": {}}}})
    for data in (b"one", b"two"):
        client.add_secret_version(request={"parent": secret.name, "payload": {"data": data}})

    operator_class = importlib.import_module(module).GCPRaySecretOperator
    if module == "keyway.ray":
        from keyway.ray import RaySecretProxy
    else:
        from raysecretsproxy.ray_secret_proxy import RaySecretProxy
    operator = operator_class(project_name="proj", credentials=AnonymousCredentials(), transport="rest",
                              client_options=ClientOptions(api_endpoint=gcp_emulator))
    actor = RaySecretProxy.remote(operator)
    assert ray.get(actor.get_secret.remote("db")).value() == "two"
    assert ray.get(actor.get_secret.remote("db", ttl=0, version="1")).value() == "one"
    client.update_secret(request={"secret": {"name": secret.name, "version_aliases": {"prod": 1}},
                                  "update_mask": {"paths": ["version_aliases"]}})
    assert ray.get(actor.get_secret.remote("db", ttl=0, version="prod")).value() == "one", "a version alias"
    assert ray.get(actor.list_secrets.remote()) == ["projects/proj/secrets/db"]


def _gcp_proxy(module, gcp_emulator, names):
    """A proxy of `module` over the GCP emulator holding `names` (each secret's value is its name)."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=gcp_emulator))
    for name in names:
        secret = client.create_secret(request={"parent": "projects/proj", "secret_id": name,
                                               "secret": {"replication": {"automatic": {}}}})
        client.add_secret_version(request={"parent": secret.name, "payload": {"data": name.encode()}})
    if module == "keyway.ray":
        from keyway.ray import GCPRaySecretOperator, RaySecretProxy
    else:
        from raysecretsproxy.gcp_secret_operator import GCPRaySecretOperator
        from raysecretsproxy.ray_secret_proxy import RaySecretProxy
    return RaySecretProxy.remote(GCPRaySecretOperator(
        project_name="proj", credentials=AnonymousCredentials(), transport="rest",
        client_options=ClientOptions(api_endpoint=gcp_emulator)))


@pytest.mark.parametrize("module", ["raysecretsproxy", "keyway.ray"])
def test_gcp_cached_names_are_spelled_as_asked_and_purge_by_them(ray_local, gcp_emulator, module):
    """Hydrating by listing caches the listed full names, a get_secret by short name caches that spelling, and
    purge_secret by either spelling drops the secret (the original keys its cache by the names as given)."""
    actor = _gcp_proxy(module, gcp_emulator, ["db", "api"])
    ray.get(actor.hydrate_cache.remote())
    assert sorted(ray.get(actor.list_cached_secrets.remote())) == ["projects/proj/secrets/api",
                                                                   "projects/proj/secrets/db"]
    ray.get(actor.purge_secret.remote("projects/proj/secrets/db"))
    assert ray.get(actor.list_cached_secrets.remote()) == ["projects/proj/secrets/api"]
    ray.get(actor.purge_cache.remote())
    assert ray.get(actor.get_secret.remote("db")).value() == "db"
    assert ray.get(actor.list_cached_secrets.remote()) == ["db"]
    ray.get(actor.purge_secret.remote("db"))
    assert ray.get(actor.list_cached_secrets.remote()) == []


def _cached_reads_during_slow_fetches(actor, gcp_emulator, slow_names):
    """The waits of 10 cached reads of `fast` while every name in `slow_names` takes 1 s upstream."""
    import urllib.request

    assert ray.get(actor.get_secret.remote("fast")).value() == "fast"
    urllib.request.urlopen(urllib.request.Request(f"{gcp_emulator}/emulator/latency?ms=1000", method="POST"))
    slow = [actor.get_secret.remote(name) for name in slow_names]
    time.sleep(0.1)
    waits = []
    for _ in range(10):
        started = time.perf_counter()
        ray.get(actor.get_secret.remote("fast"))
        waits.append(time.perf_counter() - started)
    assert [s.value() for s in ray.get(slow)] == list(slow_names)
    return waits


@pytest.mark.parametrize("module", ["raysecretsproxy", "keyway.ray"])
def test_a_slow_upstream_fetch_does_not_block_cached_reads(ray_local, gcp_emulator, module):
    """While one uncached secret takes 1 s upstream, cached reads from another caller: the original's
    single-threaded actor makes them wait for it; keyway.ray's concurrent actor does not."""
    actor = _gcp_proxy(module, gcp_emulator, ["fast", "slow"])
    waits = _cached_reads_during_slow_fetches(actor, gcp_emulator, ["slow"])
    if module == "keyway.ray":
        # The target is 20 ms (bench/ray_bench.py measures ~3 ms on release builds); this debug build on
        # a shared CI machine gets 100 ms of headroom, still a tenth of the original's wait.
        assert max(waits) < 0.1, f"cached reads waited {max(waits):.3f} s behind a slow fetch"
    else:
        assert max(waits) > 0.5, "the original's single-threaded actor serialises calls"


def test_three_slow_fetches_in_flight_leave_cached_reads_answered(ray_local, gcp_emulator):
    """keyway.ray's 4 threads: three cold secrets fetched at once (a cluster starting up) still leave one thread
    for cached reads, as docs/python.md says."""
    actor = _gcp_proxy("keyway.ray", gcp_emulator, ["fast", "slow1", "slow2", "slow3"])
    waits = _cached_reads_during_slow_fetches(actor, gcp_emulator, ["slow1", "slow2", "slow3"])
    assert max(waits) < 0.1, f"cached reads waited {max(waits):.3f} s behind three slow fetches"


def test_aws_operator_keywords_are_honoured_or_refused(moto, caplog):
    """boto3's client keywords: a session token reaches the upstream, botocore's Config gives its region (and
    the options Keyway replaces are named in a warning), and `verify` is refused rather than ignored."""
    import logging

    from botocore.config import Config

    from keyway.ray import AWSRaySecretOperator

    with caplog.at_level(logging.WARNING, logger="keyway.ray"):
        operator = AWSRaySecretOperator(endpoint_url=moto, aws_access_key_id="testing",
                                        aws_secret_access_key="testing", aws_session_token="session-token-1",
                                        config=Config(region_name="us-east-1", retries={"max_attempts": 2}))
    assert "retries" in caplog.text and "region_name" not in caplog.text
    operator.initialize()
    moto_record(moto)
    value, metadata = operator._fetch("app/s3")
    assert value == b"v3" and metadata["ARN"].startswith("arn:aws:secretsmanager:us-east-1:")
    assert {r["headers"].get("X-Amz-Security-Token") for r in moto_requests(moto)} == {"session-token-1"}
    for verify in (False, "/etc/private-ca.pem"):
        with pytest.raises(TypeError, match="verifies TLS"):
            AWSRaySecretOperator(region_name="us-east-1", verify=verify)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="keyway.ray"):
        AWSRaySecretOperator(endpoint_url=moto, use_ssl=False)
        assert caplog.text == "", "an http:// endpoint_url is honoured: nothing ignored"
        AWSRaySecretOperator(region_name="us-east-1", use_ssl=False)
    assert "use_ssl=False" in caplog.text


@pytest.mark.parametrize("module", ["raysecretsproxy", "keyway.ray"])
def test_gcp_errors_are_googles_exception_classes(ray_local, gcp_emulator, module):
    """The original's GCP operator turns each 4xx into google.api_core's class of the HTTP status; keyway.ray
    raises the gRPC code's class, a subclass of that, which is also Keyway's kind, so either `except` keeps
    working: a missing secret, a denied one, a disabled version."""
    import urllib.request

    from google.api_core import exceptions as google
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    import keyway

    actor = _gcp_proxy(module, gcp_emulator, ["locked", "retired"])
    with pytest.raises(google.NotFound) as missing:
        ray.get(actor.get_secret.remote("missing"))
    urllib.request.urlopen(urllib.request.Request(
        f"{gcp_emulator}/emulator/deny?name=projects/proj/secrets/locked", method="POST"))
    with pytest.raises(google.Forbidden) as denied:
        ray.get(actor.get_secret.remote("locked"))
    secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=gcp_emulator)
    ).disable_secret_version(request={"name": "projects/proj/secrets/retired/versions/1"})
    with pytest.raises(google.BadRequest) as disabled:
        ray.get(actor.get_secret.remote("retired"))
    if module == "keyway.ray":
        assert isinstance(missing.value, keyway.NotFound) and isinstance(denied.value, keyway.PermissionDenied)
        assert "missing" in str(missing.value)
        assert isinstance(denied.value, google.PermissionDenied) and denied.value.upstream_code == "PERMISSION_DENIED"
        assert isinstance(disabled.value, google.FailedPrecondition) and isinstance(disabled.value, keyway.NotFound)
        assert "enable it" in disabled.value.cause.keyway_message, "Keyway's message: what to do"


def _raised(call):
    """What `ray.get(call)` raised in the actor (Ray wraps it in a RayTaskError that is also of its class)."""
    with pytest.raises(Exception) as raised:
        ray.get(call)
    return getattr(raised.value, "cause", raised.value)


def _same_error(original, ours):
    """keyway.ray's error is of the original's class (and Keyway's) and reads the same. Google's REST transport
    (the emulator's) puts its request line in the message (`404 GET http://...: MESSAGE`), which its default, gRPC,
    does not; Keyway's message is Google's alone, as over gRPC."""
    import re

    assert isinstance(ours, type(original)), (type(ours).__mro__, type(original))
    assert str(ours) == re.sub(r"^(\d+) [A-Z]+ http\S+: ", r"\1 ", str(original))


def test_aws_errors_are_the_originals_class_and_text(ray_local, moto, failing_aws):
    """The cases raysecretsproxy maps (a missing secret, version or stage, a deleted secret: ValueError with its
    message) and those it lets through (boto3's ClientError, AWS's code and message), from both modules."""
    from botocore.exceptions import ClientError

    _set_secret(moto, "app/deleted", "x")
    boto3.client("secretsmanager", endpoint_url=moto, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").delete_secret(SecretId="app/deleted")
    originals, ours = (proxy(implementation(m), moto) for m in ("raysecretsproxy", "keyway.ray"))
    cases = [(("app/missing",), {}),
             (("app/token",), {"VersionId": "a" * 32}),
             (("app/token",), {"VersionStage": "AWSPREVIOUS"}),
             (("app/deleted",), {})]
    for args, kwargs in cases:
        original = _raised(originals.get_secret.remote(*args, **kwargs))
        assert isinstance(original, ValueError), original
        _same_error(original, _raised(ours.get_secret.remote(*args, **kwargs)))
    assert str(_raised(ours.get_secret.remote("app/token", VersionId="a" * 32))) == (
        f"Cannot find secret app/token associated arguments: {{'VersionId': '{'a' * 32}', 'SecretId': 'app/token'}}")
    denied = [proxy(implementation(m), failing_aws) for m in ("raysecretsproxy", "keyway.ray")]
    for name in ["app/token", *sorted(AWS_FAILURES)]:
        if name == "internal/token":
            continue  # boto3 retries a 500 for seconds; its code is checked in the test above
        original, mine = (_raised(actor.get_secret.remote(name)) for actor in denied)
        assert isinstance(original, ClientError) and isinstance(mine, ClientError)
        # boto3 retries a throttled call and says so (`(reached max retries: 4)`); Keyway does not retry one
        # (docs/python.md), so its text says nothing of retries.
        expected = str(original).replace(" (reached max retries: 4)", "")
        assert (mine.response["Error"]["Code"], str(mine)) == (original.response["Error"]["Code"], expected)
    original, mine = (_raised(actor.list_secrets.remote()) for actor in denied)
    assert (type(mine).__mro__[-4:], str(mine)) == (type(original).__mro__[-4:], str(original))


def test_gcp_errors_are_the_originals_class_and_text(ray_local, gcp_emulator):
    """A missing secret, a denied one, a disabled version: Google's exception class of the HTTP status, Google's
    message, from both modules."""
    import urllib.request

    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    originals = _gcp_proxy("raysecretsproxy", gcp_emulator, ["locked", "retired"])
    ours = _gcp_proxy("keyway.ray", gcp_emulator, [])
    urllib.request.urlopen(urllib.request.Request(
        f"{gcp_emulator}/emulator/deny?name=projects/proj/secrets/locked", method="POST"))
    secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=ClientOptions(api_endpoint=gcp_emulator)
    ).disable_secret_version(request={"name": "projects/proj/secrets/retired/versions/1"})
    for name in ("missing", "locked", "retired", "projects/proj/secrets/missing/versions/3"):
        _same_error(_raised(originals.get_secret.remote(name)), _raised(ours.get_secret.remote(name)))


def test_list_filters_reach_aws_unchanged(ray_local, moto, impl):
    """The original passes boto3's Filters to AWS as they are: tags, descriptions, several keys."""
    client = boto3.client("secretsmanager", endpoint_url=moto, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    for name, team, description in (("tagged/ml", "ml", "model weights"), ("tagged/web", "web", "web token")):
        try:
            client.create_secret(Name=name, SecretString="x", Description=description,
                                 Tags=[{"Key": "team", "Value": team}])
        except client.exceptions.ResourceExistsException:
            pass
    actor = proxy(impl, moto)
    list_with = lambda filters: sorted(ray.get(actor.list_secrets.remote(filters)))  # noqa: E731
    assert list_with([{"Key": "tag-key", "Values": ["team"]}]) == ["tagged/ml", "tagged/web"]
    assert list_with([{"Key": "tag-value", "Values": ["ml"]}]) == ["tagged/ml"]
    assert list_with([{"Key": "description", "Values": ["token"]}]) == ["tagged/web"]
    assert list_with([{"Key": "name", "Values": ["tagged/"]}, {"Key": "tag-value", "Values": ["web"]}]) == ["tagged/web"]


@pytest.mark.parametrize("module", ["raysecretsproxy", "keyway.ray"])
def test_a_gcp_filter_reaches_google_unchanged(ray_local, gcp_emulator, module):
    actor = _gcp_proxy(module, gcp_emulator, ["dev-db", "ray-token", "prod-db"])
    assert sorted(ray.get(actor.list_secrets.remote("name:dev OR name:ray"))) == [
        "projects/proj/secrets/dev-db", "projects/proj/secrets/ray-token"]


def test_metadata_has_the_originals_shape(ray_local, moto, gcp_emulator):
    """AWS: boto3's answer without the value, Name and ResponseMetadata (CreatedDate a datetime); GCP: the
    SecretPayload with its data cleared."""
    import datetime

    from google.cloud import secretmanager

    aws = [ray.get(proxy(implementation(m), moto).get_secret.remote("app/s2"))
           for m in ("raysecretsproxy", "keyway.ray")]
    assert list(aws[1].metadata) == list(aws[0].metadata) == ["ARN", "VersionId", "VersionStages", "CreatedDate"]
    assert aws[1].metadata == aws[0].metadata
    assert isinstance(aws[1].metadata["CreatedDate"], datetime.datetime)
    gcp = [ray.get(_gcp_proxy(m, gcp_emulator, ["shaped"] if m == "raysecretsproxy" else []).get_secret.remote(
        "shaped")) for m in ("raysecretsproxy", "keyway.ray")]
    assert type(gcp[1].metadata) is type(gcp[0].metadata) is secretmanager.SecretPayload
    assert gcp[1].metadata == gcp[0].metadata and gcp[1].metadata.data == b""


@pytest.mark.parametrize("module", ["raysecretsproxy", "keyway.ray"])
def test_the_ttl_rule_is_the_originals(ray_local, moto, module):
    """-1 never expires; any other negative always has, so each read asks the upstream."""
    actor = proxy(implementation(module), moto, default_ttl=-2)
    moto_record(moto)
    first = ray.get(actor.get_secret.remote("app/s3"))
    assert first.is_expired()
    ray.get(actor.get_secret.remote("app/s3"))
    assert moto_count(moto, "GetSecretValue") == 2
    forever = ray.get(actor.get_secret.remote("app/s3", ttl=-1))
    assert not forever.is_expired()


def test_hydrating_through_a_users_operator_runs_its_fetches_side_by_side(ray_local):
    """A user's operator whose _fetch waits 20 ms: 50 names hydrate at once, not one after another, with the
    original's error reporting (a failing name is logged, the others cached)."""
    timings = {}
    for module in ("raysecretsproxy", "keyway.ray"):
        RaySecretProxy, _, RaySecretOperator = implementation(module)

        class Slow(RaySecretOperator):
            def __init__(self):
                pass

            def initialize(self):
                pass

            def _fetch(self, secret_name, **kwargs):
                time.sleep(0.02)
                if secret_name == "s-broken":
                    raise ValueError("no such secret")
                return secret_name.encode(), {}

            def list_secrets(self, filter=None):
                return [f"s{i:02d}" for i in range(50)] + ["s-broken"]

        actor = RaySecretProxy.remote(Slow())
        ray.get(actor.list_cached_secrets.remote())  # started
        started = time.perf_counter()
        ray.get(actor.hydrate_cache.remote())
        timings[module] = time.perf_counter() - started
        assert ray.get(actor.list_cached_secrets.remote()) == [f"s{i:02d}" for i in range(50)]
    # The figure with its command is in docs/benchmarks.md (bench/ray_hydrate.py); here only that the
    # fetches overlap, with room for a loaded machine.
    assert timings["keyway.ray"] * 3 < timings["raysecretsproxy"], timings
