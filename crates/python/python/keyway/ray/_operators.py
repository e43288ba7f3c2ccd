"""The operators: raysecretsproxy's base class, which a user subclasses for another backend, and Keyway's AWS and GCP
operators, backed by Keyway's Rust providers and cache, raising the original's errors with its messages."""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any, Dict, List, Optional, Tuple, cast

from keyway._gcp import default_project
from keyway._keyway import Backend, InvalidReference, KeywayError, NotFound
from keyway.ray._secret import RaySecret

logger = logging.getLogger("keyway.ray")


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
