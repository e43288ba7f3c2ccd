"""Keyway: secrets for Ray, Kubernetes and Flyte workloads.

One reference syntax for every backend (``aws-sm://NAME#field``, ``gcp-sm://PROJECT/SECRET``, ``local://NAME``),
resolved through the node's Keyway daemon when its socket is there, otherwise in-process with Keyway's Rust
providers and cache (no boto3 or Google client needed)::

    import keyway
    token = keyway.get_secret("aws-sm://ci/github#github_token").value
    token.value()         # the text, when you need it
    print(token)          # SecretValue([redacted 40 bytes])

In asyncio code (Ray Serve, an async actor, FastAPI), ``await keyway.aget_secret(ref)``, ``aget_secrets`` and
``alist_secrets`` do the same without holding up the event loop.

``keyway.render_template("DB_PASSWORD={{ aws-sm://prod/db#password }}")`` fills a template (an ``.env`` file, a
``.netrc``) and returns a ``SecretValue``.

Errors are ``keyway.NotFound``, ``keyway.PermissionDenied``, ``keyway.Throttled``, ``keyway.Unavailable``,
``keyway.InvalidReference`` and ``keyway.ConfigurationError`` (Keyway's configuration, not the request, is what to
fix), all ``keyway.KeywayError``; their messages say what to do and never hold a value.
"""

import os
from collections.abc import Iterable

from keyway import _keyway
from keyway._keyway import (
    ConfigurationError,
    InvalidReference,
    KeywayError,
    NotFound,
    PermissionDenied,
    Secret,
    SecretValue,
    Throttled,
    Unavailable,
    configure,
    get_secret,
    get_secrets,
    list_secrets,
    render_template,
)


# A process forked after first use (multiprocessing's "fork", PyTorch's DataLoader workers) has the parent's
# runtime but not its threads: the child builds its own on its first call, with the same configure() settings.
os.register_at_fork(after_in_child=_keyway._after_fork)


# The native calls answer (True, the result) when it came from memory, else (False, an awaitable of it); read by
# index, which type checkers narrow on (a cached read pays no cast).

async def aget_secret(reference: str, ttl: float | None = None, refresh: bool = False) -> Secret:
    """``get_secret`` for asyncio code: the event loop keeps running while the secret is fetched (on Keyway's own
    threads). Same arguments, result and errors."""
    now = _keyway.aget_secret(reference, ttl, refresh)
    return now[1] if now[0] else await now[1]


async def aget_secrets(references: Iterable[str], ttl: float | None = None, refresh: bool = False) -> list[Secret]:
    """``get_secrets`` for asyncio code: concurrent, all or nothing."""
    now = _keyway.aget_secrets(references, ttl, refresh)
    return now[1] if now[0] else await now[1]


async def alist_secrets(provider: str, filter: str | None = None) -> list[str]:
    """``list_secrets`` for asyncio code."""
    now = _keyway.alist_secrets(provider, filter)
    return now[1] if now[0] else await now[1]


__all__ = [
    "ConfigurationError",
    "InvalidReference",
    "KeywayError",
    "NotFound",
    "PermissionDenied",
    "Secret",
    "SecretValue",
    "Throttled",
    "Unavailable",
    "aget_secret",
    "aget_secrets",
    "alist_secrets",
    "configure",
    "get_secret",
    "get_secrets",
    "list_secrets",
    "render_template",
]
