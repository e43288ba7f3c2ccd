"""A drop-in for ``raysecretsproxy``: change ``from raysecretsproxy... import X`` to ``from keyway.ray import X``.

Same names and signatures: ``RaySecretProxy`` (a Ray actor), ``RaySecretOperator``, ``AWSRaySecretOperator``,
``GCPRaySecretOperator`` and ``RaySecret``. The built-in operators are backed by Keyway's Rust providers and cache
(no boto3 or Google client in the actor; single-flight; ``hydrate_cache`` fetches concurrently and lists every
page), and the actor serves concurrent callers, so one slow upstream fetch no longer blocks cached reads. A user's
own ``RaySecretOperator`` subclass implementing ``_fetch`` keeps working, cached in the actor as before.

Named actors have no access control in Ray and constructor arguments are stored in Ray's control store: do not
pass credentials to operators when jobs of different owners share a cluster; use the node's Keyway daemon
(``keyway.get_secret``, identity by unix-socket peer credentials) there.
"""

from __future__ import annotations

import concurrent.futures
import copyreg
import importlib
import logging
import os
import threading
from time import monotonic, time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, cast

try:
    import ray
except ModuleNotFoundError as missing:  # Ray itself, not something Ray imports
    if missing.name != "ray":
        raise
    raise ModuleNotFoundError("keyway.ray needs Ray: pip install 'keyway[ray]' (the Ray Keyway is tested with)",
                              name="ray") from None

from keyway._gcp import default_project
from keyway._keyway import Backend, InvalidReference, KeywayError, NotFound

logger = logging.getLogger(__name__)

__all__ = [
    "AWSRaySecretOperator",
    "GCPRaySecretOperator",
    "RaySecret",
    "RaySecretOperator",
    "RaySecretProxy",
    "get_secret",
    "node_proxy",
    "start_node_proxies",
]


class RaySecret:
    """A fetched secret. ``str``/``repr`` show only the name; ``value()``/``raw_value()`` expose it.

    Ray pickles every return of an actor that is not an exact builtin type. The proxy hands Ray the serialization
    of an answer it keeps, made once (``_serialized``, see ``_serve_kept_serializations``); anything else is
    pickled per call, kept short: slots, and a reducer in ``copyreg``'s dispatch table, which the pickler finds
    before it would look for ``__reduce_ex__`` (measured: 12 against 18 us a serialization, a ``str`` 2 us).
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
        # _serve_kept_serializations). Never pickled: the reducer below names the fields it sends.
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


class RaySecretOperator:
    """Base of the operators; subclass it and implement ``initialize`` and ``_fetch`` for another backend."""

    def __init__(self, **kwargs) -> None:
        raise NotImplementedError

    def initialize(self) -> None:
        """Initializes internal state of the operator (called inside the actor)."""
        raise NotImplementedError

    def _fetch(self, secret_name: str, **kwargs) -> Tuple[bytes, Dict]:
        """Gets a secret from the underlying provider."""
        raise NotImplementedError

    def get_secret(self, secret_name: str, ttl: Optional[int] = None, **kwargs) -> RaySecret:
        """Gets a RaySecret from the underlying provider."""
        secret_bytes, metadata = self._fetch(secret_name, **kwargs)
        return RaySecret(secret_name=secret_name, secret=secret_bytes, ttl=ttl, metadata=metadata)

    def list_secrets(self, filter=Any) -> List[str]:
        """Lists available secret names (not values)."""
        raise NotImplementedError

    # Keyway's own operators return their Rust backend; user subclasses return None.
    def _keyway_backend(self) -> Optional[Backend]:
        return None


class _KeywayOperator(RaySecretOperator):
    """Keyway's own operators: a Rust ``Backend`` answers ``_lookup``, which also says for how many seconds the
    answer may be handed out again without asking (None: until purged) and when it was fetched (epoch seconds);
    ``_fetch`` is the original's API."""

    def initialize(self, default_ttl: float = -1) -> None:
        raise NotImplementedError

    def _lookup(self, secret_name: str, ttl: Optional[float] = None,
                **kwargs) -> Tuple[bytes, Any, Optional[float], float]:
        raise NotImplementedError

    def _started(self) -> Backend:
        """The backend; built here when the operator is used before (or without) the actor's ``initialize``, as
        the original allows."""
        backend = self._keyway_backend()
        if backend is None:
            self.initialize()
            backend = self._keyway_backend()
            assert backend is not None, "initialize() builds the backend"
        return backend

    def _fetch(self, secret_name: str, ttl: Optional[float] = None, **kwargs) -> Tuple[bytes, Any]:
        value, metadata, _, _ = self._lookup(secret_name, ttl, **kwargs)
        return value, metadata


def _translated(module: str, error: KeywayError, *args) -> KeywayError:
    """``error`` as the class of ``keyway._google`` or ``keyway._botocore`` that is also the client library's (as the
    original raises), where that library is installed."""
    try:
        translate = importlib.import_module(f"keyway.{module}").translate
    except ImportError:
        return error
    return translate(error, *args)


class SecretNotFound(NotFound, ValueError):
    """The original's ``ValueError`` for a secret AWS does not have, which is ``keyway.NotFound`` too; its message is
    the original's, Keyway's (which says what to do) is ``keyway_message``."""

    keyway_message: Optional[str] = None


class InvalidSecretRequest(InvalidReference, ValueError):
    """The original's ``ValueError`` for a request AWS refuses as invalid, which is ``keyway.InvalidReference`` too."""

    keyway_message: Optional[str] = None


#: AWS's codes the original reads as "no such secret" (a ValueError), each with its message.
_AWS_NOT_FOUND = ("InvalidParameterException", "InvalidRequestException", "ResourceNotFoundException")


def _not_found(secret_name: str, kwargs: Dict, error: Optional[KeywayError] = None) -> ValueError:
    # The original's message: the request's arguments as boto3 got them, SecretId set last (names and version
    # labels, never a value). Keyway's own message, which says what to do, rides along as `keyway_message`.
    arguments = dict(kwargs)
    arguments["SecretId"] = secret_name
    cls = InvalidSecretRequest if isinstance(error, InvalidReference) else SecretNotFound
    raised = cls(f"Cannot find secret {secret_name} associated arguments: {arguments}")
    raised.keyway_message = str(error) if error is not None else None
    return raised


class AWSRaySecretOperator(_KeywayOperator):
    """AWS Secrets Manager. Takes boto3 client keyword arguments: ``region_name``, ``endpoint_url``,
    ``aws_access_key_id``/``aws_secret_access_key``/``aws_session_token`` (prefer the standard credential chain:
    Ray stores constructor arguments in its control store), ``profile_name``."""

    def __init__(self, **kwargs) -> None:
        unknown = set(kwargs) - {"region_name", "endpoint_url", "aws_access_key_id", "aws_secret_access_key",
                                 "aws_session_token", "profile_name", "use_ssl", "verify", "config"}
        if unknown:
            raise TypeError(f"AWSRaySecretOperator does not support {sorted(unknown)}")
        verify = kwargs.get("verify")
        if verify is False or isinstance(verify, str):
            raise TypeError("AWSRaySecretOperator always verifies TLS against the system's trust store: drop "
                            "`verify` (add a private CA to the system store)")
        config = kwargs.get("config")
        if config is not None:
            # botocore's Config: its region counts; Keyway's own timeouts and retries replace the rest.
            options = dict(getattr(config, "_user_provided_options", {}))
            if options.get("region_name") and not kwargs.get("region_name"):
                kwargs = dict(kwargs, region_name=options["region_name"])
            ignored = sorted(set(options) - {"region_name"})
            if ignored:
                logger.warning("AWSRaySecretOperator ignores botocore config %s: Keyway's own timeouts and "
                               "retries apply", ", ".join(ignored))
        if kwargs.get("use_ssl") is False and not kwargs.get("endpoint_url"):
            # boto3 would then reach AWS over plain HTTP; Keyway does not (an http:// endpoint_url still works).
            logger.warning("AWSRaySecretOperator ignores use_ssl=False: Keyway reaches AWS over TLS only")
        self.__kwargs = kwargs
        self.__backend: Optional[Backend] = None

    def initialize(self, default_ttl: float = -1) -> None:
        k = self.__kwargs
        self.__backend = Backend("aws", region=k.get("region_name"), endpoint=k.get("endpoint_url"),
                                 profile=k.get("profile_name"), access_key=k.get("aws_access_key_id"),
                                 secret_key=k.get("aws_secret_access_key"), session_token=k.get("aws_session_token"),
                                 default_ttl=float(default_ttl))

    def _keyway_backend(self) -> Optional[Backend]:
        return self.__backend

    def _endpoint_url(self) -> Optional[str]:
        """The endpoint boto3 would name in a connection error."""
        region = (self.__kwargs.get("region_name") or os.environ.get("AWS_REGION")
                  or os.environ.get("AWS_DEFAULT_REGION"))
        default = f"https://secretsmanager.{region}.amazonaws.com" if region else None
        return self.__kwargs.get("endpoint_url") or default

    def _lookup(self, secret_name: str, ttl: Optional[float] = None,
                **kwargs) -> Tuple[bytes, Any, Optional[float], float]:
        try:
            value, metadata, reusable = self._started().get(secret_name, ttl=None if ttl is None else float(ttl),
                                                           version_stage=kwargs.get("VersionStage"),
                                                           version_id=kwargs.get("VersionId"))
        except KeywayError as e:
            if isinstance(e, (NotFound, InvalidReference)) or getattr(e, "upstream_code", None) in _AWS_NOT_FOUND:
                raise _not_found(secret_name, kwargs, e) from None
            raise _translated("_botocore", e, "GetSecretValue", self._endpoint_url()) from None
        # The original's metadata: boto3's answer without the value, Name and ResponseMetadata, in its order.
        shaped: Dict[str, Any] = {"ARN": metadata["Name"], "VersionId": metadata["VersionId"],
                                  "VersionStages": metadata["VersionStages"]}
        created = metadata.get("CreatedDate")
        if created is not None:
            shaped["CreatedDate"] = _aws_datetime(float(cast("float", created)))
        return value, shaped, reusable, float(cast("float", metadata["FetchedAt"]))

    def list_secrets(self, filter=None) -> List[str]:
        backend = self._started()
        try:
            if filter is None:
                return backend.list()
            if isinstance(filter, str):  # Keyway's own: a name prefix
                return backend.list(filter)
            # The original's Filters, passed to AWS unchanged, on every page.
            return backend.list(aws_filters=_aws_filters(filter))
        except KeywayError as e:
            raise _translated("_botocore", e, "ListSecrets", self._endpoint_url()) from None


def _aws_filters(filter) -> List[Tuple[str, List[str]]]:
    """boto3's ``Filters`` (``[{"Key": "tag-key", "Values": ["team"]}, ...]``), for AWS unchanged."""
    try:
        return [(str(f["Key"]), [str(v) for v in f["Values"]]) for f in filter]
    except (TypeError, KeyError) as e:
        raise TypeError('Filters is a list of {"Key": ..., "Values": [...]}, as boto3 takes it') from e


def _aws_datetime(seconds: float):
    """A ``CreatedDate`` as botocore parses it: a datetime in the local zone (dateutil's, as botocore's), or UTC."""
    import datetime

    try:
        from dateutil.tz import tzlocal  # type: ignore[import-untyped]

        zone: datetime.tzinfo = tzlocal()
    except ImportError:
        zone = datetime.timezone.utc
    return datetime.datetime.fromtimestamp(seconds, zone)


class GCPRaySecretOperator(_KeywayOperator):
    """GCP Secret Manager. ``project_name`` (None: the project ``google.auth.default()`` would name, from the same
    sources: ``keyway._gcp``); ``credentials`` may be ``AnonymousCredentials()`` (emulators) or None
    (Application Default Credentials); ``client_options={"api_endpoint": ...}`` overrides the endpoint."""

    def __init__(self, project_name: Optional[str] = None, credentials=None, **client_kwargs) -> None:
        if project_name is None:
            # The original asks google.auth.default(); the same sources, without the Google client.
            project_name = default_project()
        if project_name is None:
            raise RuntimeError("Could not automatically determine a project ID, please explicitly pass in.")
        anonymous = credentials is not None and type(credentials).__name__ == "AnonymousCredentials"
        if credentials is not None and not anonymous:
            raise TypeError("pass credentials through Application Default Credentials, or AnonymousCredentials()")
        unknown = set(client_kwargs) - {"client_options", "transport", "client_info"}
        if unknown:
            raise TypeError(f"GCPRaySecretOperator does not support {sorted(unknown)}")
        options = client_kwargs.get("client_options")
        endpoint = None
        if options is not None:
            endpoint = options.get("api_endpoint") if isinstance(options, dict) else getattr(options, "api_endpoint", None)
        if endpoint and "://" not in endpoint:
            endpoint = "https://" + endpoint
        self.__project = project_name
        self.__endpoint = endpoint
        self.__anonymous = anonymous
        self.__backend: Optional[Backend] = None

    def initialize(self, default_ttl: float = -1) -> None:
        self.__backend = Backend("gcp", project=self.__project, endpoint=self.__endpoint,
                                 anonymous=self.__anonymous, default_ttl=float(default_ttl))

    def _keyway_backend(self) -> Optional[Backend]:
        return self.__backend

    def _lookup(self, secret_name: str, ttl: Optional[float] = None,
                **kwargs) -> Tuple[bytes, Any, Optional[float], float]:
        try:
            value, metadata, reusable = self._started().get(secret_name, ttl=None if ttl is None else float(ttl),
                                                           version=kwargs.get("version"))
        except KeywayError as e:
            raise _translated("_google", e) from None
        crc32c, fetched_at = cast("int", metadata["DataCrc32c"]), cast("float", metadata["FetchedAt"])
        return value, _payload(crc32c), reusable, fetched_at

    def list_secrets(self, filter=None) -> List[str]:
        try:
            # The original's filter expression, passed to Google unchanged.
            names = self._started().list(gcp_filter=filter) if filter is not None else self._started().list()
        except KeywayError as e:
            raise _translated("_google", e) from None
        return [f"projects/{self.__project}/secrets/{n}" for n in names]


def _payload(crc32c: int) -> Any:
    """The original's GCP metadata: the ``SecretPayload`` of the answer with its data cleared (its ``data_crc32c``
    kept), where Google's client is installed; else a dict of that field."""
    try:
        from google.cloud import secretmanager
    except ImportError:
        return {"data_crc32c": crc32c}
    return secretmanager.SecretPayload(data_crc32c=crc32c)


#: Ray's own serializer of this process, once `_serve_kept_serializations` put its hook in front of it.
_ray_serialize: Optional[Callable[[Any], Any]] = None


def _serve_kept_serializations() -> Optional[Callable[[Any], Any]]:
    """In the proxy's actor process: Ray's serializer answers a ``RaySecret`` that carries its serialization
    (``_serialized``, made by the proxy when it kept the answer) with that, instead of pickling it again for every
    caller. Ray pickles any return that is not an exact builtin type, and in the actor, between Ray's own work on
    each call, that pickling costs more than the proxy's whole lookup (docs/benchmarks.md). Returns Ray's own
    serializer, to make the serializations with; None where this Ray has no such hook (a version other than the
    one Keyway is tested with), and then every answer is pickled as before. A Ray internal: the test suite checks
    that the hook is in place on the Ray Keyway pins."""
    global _ray_serialize
    if _ray_serialize is None:
        try:
            context = ray._private.worker.global_worker.get_serialization_context()
            original = context.serialize
        except AttributeError:
            logger.debug("this Ray has no serialization hook: answers are pickled per call")
            return None

        def serialize(value: Any) -> Any:
            if type(value) is RaySecret and value._serialized is not None:
                return value._serialized
            return original(value)

        context.serialize = serialize
        _ray_serialize = original
    return _ray_serialize


class _Proxy:
    def __init__(self, ray_secret_operator: RaySecretOperator, default_ttl=-1) -> None:
        self.default_ttl = default_ttl
        self.__operator = ray_secret_operator
        ours = ray_secret_operator if isinstance(ray_secret_operator, _KeywayOperator) else None
        if ours is not None:
            ours.initialize(default_ttl=default_ttl)
        else:
            ray_secret_operator.initialize()
        self.__backend = ray_secret_operator._keyway_backend()
        # Keyway's operators say how long an answer may be handed out again; a subclass that overrides _fetch is
        # asked through it on every call.
        overridden = type(ray_secret_operator)._fetch is not _KeywayOperator._fetch
        self.__lookup = None if ours is None or self.__backend is None or overridden else ours._lookup
        # Keyway's operators' answers hold only text, bytes and numbers (no out-of-band buffers), so one
        # serialization of a kept answer can be written for every caller.
        self.__serialize = None if self.__lookup is None else _serve_kept_serializations()
        # Keyway's operators: each name as callers spelled it -> the secret the Rust cache keys it under
        # (``projects/P/secrets/S`` for every spelling of a GCP secret), so list_cached_secrets gives the callers'
        # spellings, as the original, whose cache is keyed by them, does.
        self.__spelled: Dict[str, str] = {}
        # Keyway's operators: (name, ttl) -> the RaySecret last built for it and the monotonic time until which
        # it may be handed out again (None: until purged), as the Rust cache said. A cached read then skips the
        # Rust lookup and the building of the answer: in the actor, between Ray's own work on each call, that
        # costs ~35 us of CPU, against ~3 us in a tight loop (docs/benchmarks.md). Replaced whole under the lock
        # (readers take no lock); emptied by every purge, and `__purges` keeps a fetch that a purge overtook
        # from putting its answer back.
        self.__ready: Dict[Tuple[str, Any], Tuple[RaySecret, Optional[float]]] = {}
        self.__purges = 0
        # User operators: the original's Python cache, behind a lock now that calls are concurrent.
        self.__vault: Dict[str, RaySecret] = {}
        self.__lock = threading.Lock()

    def hydrate_cache(self, secret_names: Optional[Iterable[str]] = None, filter=None) -> None:
        if self.default_ttl == 0:
            return
        names = secret_names if secret_names is not None else self.list_secrets(filter)
        if self.__backend is not None:
            for name, error in self.__backend.warm(list(names)):
                if error is not None:
                    logger.error("hydrating the cache for secret %s: %s", name, error)
                else:
                    self.__spell(name)
            return
        # A user's operator: its _fetch calls block on IO (and release the GIL), so they run side by side, each
        # failure logged as the original logs it; the cache takes the answers in the order asked.
        names = list(names)
        if not names:
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(_HYDRATE_THREADS, len(names))) as pool:
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

    def __fetch_for_cache(self, name: str) -> Optional[RaySecret]:
        """A user operator's answer for hydrate_cache, or None when the cache holds a fresh one already."""
        with self.__lock:
            cached = self.__vault.get(name)
        if cached is not None and not cached.is_expired():
            return None
        return self.__operator.get_secret(secret_name=name, ttl=self.default_ttl)

    def purge_cache(self) -> None:
        if self.__backend is not None:
            self.__backend.purge()
            self.__spelled.clear()
        with self.__lock:
            self.__forget_ready()
            self.__vault = {}

    def purge_secret(self, secret_name: str) -> None:
        if self.__backend is not None:
            self.__backend.purge(secret_name)
            doomed = self.__backend.secret_name(secret_name)
            for spelling, name in list(self.__spelled.items()):
                if name == doomed:
                    self.__spelled.pop(spelling, None)
        with self.__lock:
            self.__forget_ready()
            self.__vault.pop(secret_name, None)

    def get_secret(self, secret_name: str, ttl=None, **kwargs) -> RaySecret:
        ttl = self.default_ttl if ttl is None else ttl
        if self.__backend is not None:
            ready = None if kwargs else self.__ready.get((secret_name, ttl))
            if ready is not None and (ready[1] is None or monotonic() < ready[1]):
                return ready[0]
            purges = self.__purges
            # The Rust cache decides: ttl 0 asks the upstream, -1 never expires, and as in the original any other
            # negative has always expired, so it asks each time too.
            effective = 0 if self.default_ttl == 0 or (ttl is not None and ttl < 0 and ttl != -1) else ttl
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
        with self.__lock:
            cached = self.__vault.get(secret_name)
        if ttl != 0 and cached is not None and not cached.is_expired():
            return cached
        secret = self.__operator.get_secret(secret_name=secret_name, ttl=ttl, **kwargs)
        if self.default_ttl != 0 and ttl != 0:
            with self.__lock:
                self.__vault[secret.secret_name] = secret
        return secret

    def list_secrets(self, filter=None) -> List[str]:
        return self.__operator.list_secrets(filter)

    def list_cached_secrets(self) -> List[str]:
        if self.__backend is not None:
            spellings: Dict[str, List[str]] = {}
            for spelling, name in list(self.__spelled.items()):
                spellings.setdefault(name, []).append(spelling)
            return [s for name in self.__backend.cached() for s in spellings.get(name, [name])]
        with self.__lock:
            return list(self.__vault.keys())

    def __spell(self, secret_name: str) -> None:
        assert self.__backend is not None, "only Keyway's operators have spellings"
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
            ready = {k: v for k, v in self.__ready.items() if v[1] is None or v[1] > now}
            if len(ready) >= _READY_MAX:
                ready = {}
            ready[key] = (secret, None if reusable is None else now + reusable)
            self.__ready = ready

    def __forget_ready(self) -> None:
        """Under the lock: after a purge of the Rust cache."""
        self.__purges += 1
        self.__ready = {}


#: Fetches a user's operator runs at once in ``hydrate_cache``: each is a blocking call to its upstream.
_HYDRATE_THREADS = 16

#: Answers `_Proxy` keeps ready at most (distinct names and ttls asked within their reuse time); past it, they
#: are dropped and rebuilt from the Rust cache.
_READY_MAX = 1024


#: Threads of the proxy actor: calls waiting on an upstream fetch hold one each, so up to 3 slow fetches can be in
#: flight while cached reads are still answered. More threads cost round-trip rate when callers queue many calls
#: (Ray's pool threads then contend for the GIL; docs/benchmarks.md); ``RaySecretProxy.options(max_concurrency=N)``.
_THREADS = 4

#: The actor: ``RaySecretProxy.remote(operator, default_ttl=-1)``. Typed ``Any``, as the original is untyped: Ray
#: types an actor's methods only when each is decorated with ``ray.method`` and takes positional arguments, and
#: the original's callers pass keywords (``get_secret.remote(secret_name=...)``). (Ray's overloads of ``remote``
#: also leave out its keyword form.)
RaySecretProxy: Any = ray.remote(max_concurrency=_THREADS)(_Proxy)  # type: ignore[call-overload]


# --- One proxy per node -------------------------------------------------------------------------------------
#
# Secret values then travel from the proxy to callers on the same node only, never across the network inside
# Ray's RPC.

_PROXY_PREFIX = "keyway-secrets"


def _node_proxy_name(prefix: str, node_id: str) -> str:
    return f"{prefix}-{node_id}"


class _NodeProxy(_Proxy):
    def __init__(self, ray_secret_operator: RaySecretOperator, default_ttl=-1) -> None:
        # What this proxy was started with, as Ray stored it (before initialize() builds anything), so that a
        # node that joins later can start its own proxy alike (see node_proxy).
        self.__recipe = ray.cloudpickle.dumps((ray_secret_operator, default_ttl))
        super().__init__(ray_secret_operator, default_ttl=default_ttl)

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def recipe(self) -> bytes:
        return self.__recipe


_NodeProxyActor: Any = ray.remote(max_concurrency=_THREADS)(_NodeProxy)  # type: ignore[call-overload]


def _start_on(node_id: str, operator: RaySecretOperator, default_ttl, prefix: str):
    """The named proxy pinned to ``node_id``: started, or found when it runs already (also when another caller
    starts it at the same moment)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return _NodeProxyActor.options(
        name=_node_proxy_name(prefix, node_id),
        get_if_exists=True,
        lifetime="detached",
        num_cpus=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
    ).remote(operator, default_ttl=default_ttl)


def start_node_proxies(operator: RaySecretOperator, default_ttl=-1, prefix: str = _PROXY_PREFIX) -> Dict[str, Any]:
    """Starts (or finds) one named proxy on every alive node, pinned there; returns {node_id: actor}.

    Call it from the driver once; ``get_secret`` then reaches the proxy on the caller's own node, and on a node
    that joined since (an autoscaled one), starts that node's proxy alike on first use. The operator is stored by
    Ray as a constructor argument: give it no credentials (use the nodes' identity)."""
    return {
        node["NodeID"]: _start_on(node["NodeID"], operator, default_ttl, prefix)
        for node in ray.nodes()
        if node.get("Alive")
    }


def node_proxy(prefix: str = _PROXY_PREFIX):
    """The proxy actor on the caller's node. On a node without one yet (it joined after ``start_node_proxies``,
    as autoscaled nodes do), starts it with the operator and TTL another node's proxy was started with."""
    node_id = ray.get_runtime_context().get_node_id()
    name = _node_proxy_name(prefix, node_id)
    try:
        return ray.get_actor(name)
    except ValueError:
        pass
    for other in ray.util.list_named_actors():
        if not other.startswith(f"{prefix}-") or other == name:
            continue
        try:
            recipe = cast("bytes", ray.get(ray.get_actor(other).recipe.remote()))
        except (ValueError, AttributeError, ray.exceptions.RayActorError):
            continue  # gone with its node, or another actor of a name like theirs
        operator, default_ttl = ray.cloudpickle.loads(recipe)
        return _start_on(node_id, operator, default_ttl, prefix)
    raise RuntimeError(
        f"no Keyway secrets proxy on node {node_id} or any other: call keyway.ray.start_node_proxies(...) from the "
        f"driver")


def get_secret(secret_name: str, ttl=None, prefix: str = _PROXY_PREFIX, **kwargs) -> RaySecret:
    """``get_secret`` through the proxy on the caller's own node."""
    return ray.get(node_proxy(prefix).get_secret.remote(secret_name, ttl=ttl, **kwargs))
