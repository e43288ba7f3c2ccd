"""``RaySecretProxy``: raysecretsproxy's actor, with its methods and their behaviour, over one of the two caches of
``keyway.ray._cache`` (chosen when it starts, from the operator it is given)."""

from __future__ import annotations

from typing import Any, Iterable, List, Optional

import ray

from keyway.ray._cache import Cache, NativeCache, OperatorCache
from keyway.ray._operators import RaySecretOperator, _KeywayOperator
from keyway.ray._secret import RaySecret


class _Proxy:
    def __init__(self, ray_secret_operator: RaySecretOperator, default_ttl=-1) -> None:
        self.default_ttl = default_ttl
        self.__operator = ray_secret_operator
        if isinstance(ray_secret_operator, _KeywayOperator):
            ray_secret_operator.initialize(default_ttl=default_ttl)
        else:
            ray_secret_operator.initialize()
        backend = ray_secret_operator._keyway_backend()
        self._cache: Cache = (OperatorCache(ray_secret_operator, default_ttl) if backend is None
                              else NativeCache(ray_secret_operator, backend, default_ttl))

    def hydrate_cache(self, secret_names: Optional[Iterable[str]] = None, filter=None) -> None:
        if self.default_ttl == 0:
            return
        names = secret_names if secret_names is not None else self.list_secrets(filter)
        self._cache.hydrate(list(names))

    def purge_cache(self) -> None:
        self._cache.purge()

    def purge_secret(self, secret_name: str) -> None:
        self._cache.purge_secret(secret_name)

    def get_secret(self, secret_name: str, ttl=None, **kwargs) -> RaySecret:
        return self._cache.get(secret_name, self.default_ttl if ttl is None else ttl, kwargs)

    def list_secrets(self, filter=None) -> List[str]:
        return self.__operator.list_secrets(filter)

    def list_cached_secrets(self) -> List[str]:
        return self._cache.cached()


#: Threads of the proxy actor: calls waiting on an upstream fetch hold one each, so up to 3 slow fetches can be in
#: flight while cached reads are still answered. More threads cost round-trip rate when callers queue many calls
#: (Ray's pool threads then contend for the GIL; docs/benchmarks.md); ``RaySecretProxy.options(max_concurrency=N)``.
THREADS = 4

#: The actor: ``RaySecretProxy.remote(operator, default_ttl=-1)``. Typed ``Any``, as the original is untyped: Ray
#: types an actor's methods only when each is decorated with ``ray.method`` and takes positional arguments, and
#: the original's callers pass keywords (``get_secret.remote(secret_name=...)``). (Ray's overloads of ``remote``
#: also leave out its keyword form.)
RaySecretProxy: Any = ray.remote(max_concurrency=THREADS)(_Proxy)  # type: ignore[call-overload]
