"""User code as a type checker sees it (keyway ships py.typed): checked by test_typing.py with mypy, never run.
``assert_type`` fails the check when the public API's types drift."""

from typing import Literal, assert_type

import ray

import keyway
import keyway.ray
from keyway.ray import AWSRaySecretOperator, GCPRaySecretOperator, RaySecret, RaySecretProxy


def direct() -> None:
    secret = keyway.get_secret("aws-sm://ci/github#github_token", ttl=60)
    assert_type(secret, keyway.Secret)
    assert_type(secret.value, keyway.SecretValue)
    assert_type(secret.value.value(), str)
    assert_type(secret.value.raw_value(), bytes)
    assert_type(secret.created, float | None)
    # Any iterable of references, a generator too.
    assert_type(keyway.get_secrets(f"local://{n}" for n in ("a", "b")), list[keyway.Secret])
    assert_type(keyway.list_secrets("aws-sm", filter="ci/"), list[str])
    assert_type(keyway.render_template("TOKEN={{ local://token }}"), keyway.SecretValue)
    assert_type(keyway.configure(daemon="never"), Literal["daemon", "direct"])
    try:
        keyway.get_secret("local://absent")
    except keyway.NotFound as e:
        assert_type(e.upstream_code, str | None)


async def in_asyncio() -> None:
    assert_type(await keyway.aget_secret("local://token"), keyway.Secret)
    assert_type(await keyway.aget_secrets(("local://a", "local://b")), list[keyway.Secret])
    assert_type(await keyway.alist_secrets("local"), list[str])


def drop_in() -> None:
    # The actor is untyped, as the original's is (Ray types only positional ``ray.method``s): code written for
    # the original type-checks unchanged, keywords included.
    proxy = RaySecretProxy.remote(AWSRaySecretOperator(region_name="us-east-1"), default_ttl=300)
    proxy.hydrate_cache.remote(secret_names=None)
    secret: RaySecret = ray.get(proxy.get_secret.remote(secret_name="ci/github", ttl=0))
    assert_type(secret.value(), str)
    assert_type(secret.raw_value(), bytes)
    assert_type(secret.is_expired(), bool)
    assert_type(secret.secret_name, str)
    keyway.ray.start_node_proxies(GCPRaySecretOperator(project_name="my-project"))
    assert_type(keyway.ray.get_secret("projects/my-project/secrets/db"), RaySecret)
