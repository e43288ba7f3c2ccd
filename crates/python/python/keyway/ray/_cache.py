"""The proxy's cache, one interface with two implementations.

- ``NativeCache``, for Keyway's own operators (and subclasses of them): the Rust cache behind the operator's
  ``Backend`` decides what is fresh (single-flight, one upstream call per secret version however many callers
  ask), and answers it may hand out again are kept ready, built and serialized once.
- ``OperatorCache``, for a user's own ``RaySecretOperator``: the original's Python cache of ``RaySecret`` by name,
  behind a lock now that the actor serves calls concurrently.

The proxy chooses one when it starts and delegates every call; it holds no cache state itself.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from time import monotonic, time
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

from keyway._keyway import Backend
from keyway.ray._operators import RaySecretOperator, _KeywayOperator
from keyway.ray._secret import RaySecret
from keyway.ray._serialize import serve_kept_serializations

logger = logging.getLogger("keyway.ray")

#: Fetches a user's operator runs at once in ``hydrate``: each is a blocking call to its upstream.
HYDRATE_THREADS = 16

#: Answers ``NativeCache`` keeps ready at most (distinct names and ttls asked within their reuse time); past it,
#: they are dropped and rebuilt from the Rust cache.
READY_MAX = 1024


class Cache(Protocol):
    """What the proxy asks of its cache. ``ttl`` is the caller's, already defaulted to the proxy's."""

    def get(self, secret_name: str, ttl: Any, kwargs: Dict[str, Any]) -> RaySecret: ...

    def hydrate(self, names: List[str]) -> None: ...

    def purge(self) -> None: ...

    def purge_secret(self, secret_name: str) -> None: ...

    def cached(self) -> List[str]: ...


class NativeCache:
    """Keyway's operators: the Rust cache answers; a cached read skips both it and the building of the answer."""

    def __init__(self, operator: RaySecretOperator, backend: Backend, default_ttl: Any) -> None:
        self.__operator = operator
        self.__backend = backend
        self.__default_ttl = default_ttl
        # Keyway's operators say how long an answer may be handed out again; a subclass that overrides _fetch is
        # asked through it on every call.
        ours = operator if isinstance(operator, _KeywayOperator) else None
        overridden = type(operator)._fetch is not _KeywayOperator._fetch
        self.__lookup: Optional[Callable[..., Tuple[bytes, Any, Optional[float], float]]] = (
            None if ours is None or overridden else ours._lookup)
        # Keyway's operators' answers hold only text, bytes and numbers (no out-of-band buffers), so one
        # serialization of a kept answer can be written for every caller.
        self.__serialize = None if self.__lookup is None else serve_kept_serializations()
        # Each name as callers spelled it -> the secret the Rust cache keys it under (``projects/P/secrets/S`` for
        # every spelling of a GCP secret), so ``cached`` gives the callers' spellings, as the original, whose
        # cache is keyed by them, does.
        self.__spelled: Dict[str, str] = {}
        # (name, ttl) -> the RaySecret last built for it and the monotonic time until which it may be handed out
        # again (None: until purged), as the Rust cache said. A cached read then costs a dict lookup: in the
        # actor, between Ray's own work on each call, the Rust lookup and the building of the answer would cost
        # several times what they cost in a tight loop (docs/benchmarks.md). Replaced whole under the lock
        # (readers take no lock); emptied by every purge, and ``__purges`` keeps a fetch that a purge overtook
        # from putting its answer back.
        self._ready: Dict[Tuple[str, Any], Tuple[RaySecret, Optional[float]]] = {}
        self.__purges = 0
        self.__lock = threading.Lock()

    def get(self, secret_name: str, ttl: Any, kwargs: Dict[str, Any]) -> RaySecret:
        ready = None if kwargs else self._ready.get((secret_name, ttl))
        if ready is not None and (ready[1] is None or monotonic() < ready[1]):
            return ready[0]
        purges = self.__purges
        # The Rust cache decides: ttl 0 asks the upstream, -1 never expires, and as in the original any other
        # negative has always expired, so it asks each time too.
        effective = 0 if self.__default_ttl == 0 or (ttl is not None and ttl < 0 and ttl != -1) else ttl
        fetched_at = time()
        if self.__lookup is not None:
            value, metadata, reusable, fetched_at = self.__lookup(secret_name, ttl=effective, **kwargs)
        else:
            value, metadata = self.__operator._fetch(secret_name, ttl=effective, **kwargs)
            reusable = 0
        if secret_name not in self.__spelled:
            self.__spell(secret_name)
        secret = RaySecret(secret_name=secret_name, secret=value, ttl=ttl, metadata=metadata)
        # Expiry counts from the fetch, as in the original, whose cached RaySecret is the one first built.
        secret.create_timestamp = int(fetched_at)
        if reusable != 0 and not kwargs:
            self.__keep((secret_name, ttl), secret, reusable, purges)
        return secret

    def hydrate(self, names: List[str]) -> None:
        # The Rust backend fetches them concurrently, each failure logged as the original logs it.
        for name, error in self.__backend.warm(names):
            if error is not None:
                logger.error("hydrating the cache for secret %s: %s", name, error)
            else:
                self.__spell(name)

    def purge(self) -> None:
        self.__backend.purge()
        self.__spelled.clear()
        self.__forget_ready()

    def purge_secret(self, secret_name: str) -> None:
        self.__backend.purge(secret_name)
        doomed = self.__backend.secret_name(secret_name)
        for spelling, name in list(self.__spelled.items()):
            if name == doomed:
                self.__spelled.pop(spelling, None)
        self.__forget_ready()

    def cached(self) -> List[str]:
        spellings: Dict[str, List[str]] = {}
        for spelling, name in list(self.__spelled.items()):
            spellings.setdefault(name, []).append(spelling)
        return [s for name in self.__backend.cached() for s in spellings.get(name, [name])]

    def __spell(self, secret_name: str) -> None:
        self.__spelled[secret_name] = self.__backend.secret_name(secret_name)

    def __keep(self, key: Tuple[str, Any], secret: RaySecret, reusable: Optional[float], purges: int) -> None:
        """Keeps `secret` for the calls to come, serialized once for all of them, dropping what may no longer be
        handed out."""
        if self.__serialize is not None:
            secret._serialized = self.__serialize(secret)
        now = monotonic()
        with self.__lock:
            if purges != self.__purges:
                return
            ready = {k: v for k, v in self._ready.items() if v[1] is None or v[1] > now}
            if len(ready) >= READY_MAX:
                ready = {}
            ready[key] = (secret, None if reusable is None else now + reusable)
            self._ready = ready

    def __forget_ready(self) -> None:
        """After a purge of the Rust cache."""
        with self.__lock:
            self.__purges += 1
            self._ready = {}


class OperatorCache:
    """A user's operator: the original's cache of ``RaySecret`` by name, each expiring by its own ttl."""

    def __init__(self, operator: RaySecretOperator, default_ttl: Any) -> None:
        self.__operator = operator
        self.__default_ttl = default_ttl
        self.__vault: Dict[str, RaySecret] = {}
        self.__lock = threading.Lock()

    def get(self, secret_name: str, ttl: Any, kwargs: Dict[str, Any]) -> RaySecret:
        with self.__lock:
            cached = self.__vault.get(secret_name)
        if ttl != 0 and cached is not None and not cached.is_expired():
            return cached
        secret = self.__operator.get_secret(secret_name=secret_name, ttl=ttl, **kwargs)
        if self.__default_ttl != 0 and ttl != 0:
            with self.__lock:
                self.__vault[secret.secret_name] = secret
        return secret

    def hydrate(self, names: List[str]) -> None:
        # The operator's _fetch calls block on IO (and release the GIL), so they run side by side, each failure
        # logged as the original logs it; the cache takes the answers in the order asked.
        if not names:
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(HYDRATE_THREADS, len(names))) as pool:
            futures = [pool.submit(self.__fetch_for_cache, name) for name in names]
        for name, future in zip(names, futures, strict=True):
            try:
                secret = future.result()
            except Exception:
                logger.exception("hydrating the cache for secret %s", name)
                continue
            if secret is not None:
                with self.__lock:
                    self.__vault[secret.secret_name] = secret

    def purge(self) -> None:
        with self.__lock:
            self.__vault = {}

    def purge_secret(self, secret_name: str) -> None:
        with self.__lock:
            self.__vault.pop(secret_name, None)

    def cached(self) -> List[str]:
        with self.__lock:
            return list(self.__vault.keys())

    def __fetch_for_cache(self, name: str) -> Optional[RaySecret]:
        """The operator's answer for ``hydrate``, or None when the cache holds a fresh one already."""
        with self.__lock:
            cached = self.__vault.get(name)
        if cached is not None and not cached.is_expired():
            return None
        return self.__operator.get_secret(secret_name=name, ttl=self.__default_ttl)
