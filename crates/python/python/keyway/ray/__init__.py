"""A drop-in for ``raysecretsproxy``: change ``from raysecretsproxy... import X`` to ``from keyway.ray import X``.

Same names and signatures: ``RaySecretProxy`` (a Ray actor), ``RaySecretOperator``, ``AWSRaySecretOperator``,
``GCPRaySecretOperator`` and ``RaySecret``. The built-in operators are backed by Keyway's Rust providers and cache
(no boto3 or Google client in the actor; single-flight; ``hydrate_cache`` fetches concurrently and lists every
page), and the actor serves concurrent callers, so one slow upstream fetch no longer blocks cached reads. A user's
own ``RaySecretOperator`` subclass implementing ``_fetch`` keeps working, cached in the actor as before.

Named actors have no access control in Ray and constructor arguments are stored in Ray's control store: do not
pass credentials to operators when jobs of different owners share a cluster; use the node's Keyway daemon
(``keyway.get_secret``, identity by unix-socket peer credentials) there.

The modules: ``_secret`` (the answer), ``_operators`` (the original's base class and Keyway's AWS and GCP
operators), ``_cache`` (one interface: the Rust-backed cache of Keyway's operators, the original's Python cache
for a user's), ``_proxy`` (the actor), ``_serialize`` (the hook in front of Ray's serializer), ``_nodes`` (one
proxy per node).
"""

from __future__ import annotations

try:
    import ray  # noqa: F401 (the check below: every module of the package needs it)
except ModuleNotFoundError as missing:  # Ray itself, not something Ray imports
    if missing.name != "ray":
        raise
    raise ModuleNotFoundError("keyway.ray needs Ray: pip install 'keyway[ray]' (the Ray Keyway is tested with)",
                              name="ray") from None

from keyway.ray._nodes import get_secret, node_proxy, start_node_proxies
from keyway.ray._operators import (
    AWSRaySecretOperator,
    GCPRaySecretOperator,
    InvalidSecretRequest,
    RaySecretOperator,
    SecretNotFound,
)
from keyway.ray._proxy import RaySecretProxy
from keyway.ray._secret import RaySecret

__all__ = [
    "AWSRaySecretOperator",
    "GCPRaySecretOperator",
    "InvalidSecretRequest",
    "RaySecret",
    "RaySecretOperator",
    "RaySecretProxy",
    "SecretNotFound",
    "get_secret",
    "node_proxy",
    "start_node_proxies",
]
