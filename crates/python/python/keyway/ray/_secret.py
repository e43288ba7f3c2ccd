"""``RaySecret``: what the proxy answers, as raysecretsproxy's, whose value never shows in ``str`` or ``repr``."""

from __future__ import annotations

import copyreg
import logging
from time import time
from typing import Any

logger = logging.getLogger("keyway.ray")


class RaySecret:
    """A fetched secret. ``str``/``repr`` show only the name; ``value()``/``raw_value()`` expose it.

    Ray pickles every return of an actor that is not an exact builtin type. The proxy hands Ray the serialization
    of an answer it keeps, made once (``_serialized``, see ``keyway.ray._serialize``); anything else is pickled
    per call, so pickling stays short: slots, and a reducer in ``copyreg``'s dispatch table, which the pickler
    finds before it would look for ``__reduce_ex__`` (the costs: docs/benchmarks.md).
    """

    __slots__ = ("create_timestamp", "secret_name", "metadata", "ttl", "_secret", "_serialized")

    def __init__(self, secret_name: str, secret: bytes, ttl=-1, metadata={}) -> None:  # noqa: B006 (original API)
        # The proxy sets it to when the value was fetched, so a cached answer expires as the first one would.
        self.create_timestamp = int(time())
        self.secret_name = secret_name
        self.metadata = metadata
        self.ttl = ttl
        self._secret = bytes(secret)
        # In the proxy's actor: Ray's serialization of this answer, made once for every caller (see
        # keyway.ray._serialize). Never pickled: the reducer below names the fields it sends.
        self._serialized: Any = None

    def __str__(self) -> str:
        return self.secret_name + ": ***********"

    def __repr__(self) -> str:
        return str(self)

    def value(self) -> str:
        if self.is_expired():
            logger.warning("secret %s is expired; fetch it again", self.secret_name)
        return self.raw_value().decode()

    def raw_value(self) -> bytes:
        return self._secret

    def is_expired(self) -> bool:
        # The original's rule: -1 never expires, any other negative always has, whole seconds otherwise; None
        # (an operator's get_secret called without a ttl, where the original raises TypeError) never expires.
        if self.ttl is None or self.ttl == -1 or (int(time()) - self.create_timestamp) <= self.ttl:
            return False
        return True


def _restore_secret(secret_name: str, secret: bytes, ttl, metadata, create_timestamp: int) -> RaySecret:
    restored = RaySecret.__new__(RaySecret)
    restored.secret_name = secret_name
    restored._secret = secret
    restored.ttl = ttl
    restored.metadata = metadata
    restored.create_timestamp = create_timestamp
    restored._serialized = None
    return restored


def _reduce_secret(secret: RaySecret):
    return _restore_secret, (secret.secret_name, secret._secret, secret.ttl, secret.metadata, secret.create_timestamp)


copyreg.pickle(RaySecret, _reduce_secret)
