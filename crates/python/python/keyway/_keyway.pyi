"""Type stubs of the native extension."""

import builtins
from collections.abc import Awaitable, Iterable, Sequence
from os import PathLike
from typing import Literal, TypeAlias, TypeVar, final

__all__ = [
    "SecretValue",
    "Secret",
    "Backend",
    "configure",
    "_after_fork",
    "get_secret",
    "get_secrets",
    "list_secrets",
    "aget_secret",
    "aget_secrets",
    "alist_secrets",
    "render_template",
    "template_references",
    "_default_gcp_project",
    "KeywayError",
    "NotFound",
    "PermissionDenied",
    "Throttled",
    "Unavailable",
    "InvalidReference",
    "ConfigurationError",
]

class KeywayError(Exception):
    """A Keyway failure; the message says what to do (and never holds a value)."""

    upstream_code: str | None
    """The backend's own error code behind it (AWS ``ThrottlingException``, gRPC ``PERMISSION_DENIED``), if any."""
    failure: str | None
    """A failure before the backend answered: ``unreachable``, ``connect_timeout``, ``read_timeout``,
    ``no_credentials``, ``no_region`` or ``bad_response``; ``None`` otherwise. Both are set on every error Keyway raises,
    through a daemon too (not on one constructed in Python)."""
    upstream_status: int | None
    """The backend's own HTTP status, where it answered with an error (not carried through a daemon)."""
    upstream_message: str | None
    """The backend's own message, where it answered with an error (not carried through a daemon)."""

class NotFound(KeywayError): ...
class PermissionDenied(KeywayError): ...
class Throttled(KeywayError): ...
class Unavailable(KeywayError): ...
class InvalidReference(KeywayError): ...
class ConfigurationError(KeywayError):
    """Keyway's configuration, not the request, is what to fix: a config file that does not load, no AWS region, an
    encrypted local file and no age identity, a local store file that does not parse."""

@final
class SecretValue:
    """A secret's bytes: redacted in str/repr, compared in constant time, neither hashable nor picklable."""

    def value(self) -> str: ...
    def raw_value(self) -> bytes: ...
    def __len__(self) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...

@final
class Secret:
    reference: str
    value: SecretValue
    version: str
    name: str
    stages: list[str]
    created: float | None
    fetched_at: float
    age_seconds: float
    stale: bool

def configure(
    config: str | PathLike[str] | None = None,
    daemon: Literal["auto", "always", "never"] = "auto",
    socket: str | PathLike[str] | None = None,
    local_dir: str | PathLike[str] | None = None,
) -> Literal["daemon", "direct"]: ...
def get_secret(reference: str, ttl: float | None = None, refresh: bool = False) -> Secret: ...
def get_secrets(references: Iterable[str], ttl: float | None = None, refresh: bool = False) -> list[Secret]: ...
def list_secrets(provider: str, filter: str | None = None) -> list[str]: ...
def _after_fork() -> None:
    """In a child just forked: the next call builds this process's own runtime and state."""
    ...

# Behind keyway.aget_secret & co. (call them inside a running event loop): (True, the answer) when it came from
# memory, else (False, an asyncio future of it).
_T = TypeVar("_T")
_Now: TypeAlias = tuple[Literal[True], _T] | tuple[Literal[False], Awaitable[_T]]

def aget_secret(reference: str, ttl: float | None = None, refresh: bool = False) -> _Now[Secret]: ...
def aget_secrets(
    references: Iterable[str], ttl: float | None = None, refresh: bool = False
) -> _Now[list[Secret]]: ...
def alist_secrets(provider: str, filter: str | None = None) -> _Now[list[str]]: ...
def render_template(template: str, ttl: float | None = None, refresh: bool = False) -> SecretValue:
    """The template with each ``{{ REF }}`` replaced by the value (other ``{{ ... }}`` stay text); all or nothing."""
    ...
def template_references(template: str) -> list[str]:
    """The references of a template's placeholders, each once, in order; ``InvalidReference`` names an unclosed
    one's line."""
    ...
def _default_gcp_project() -> str | None:
    """The GCP project Google's client libraries would name (``keyway._gcp``); None when no source names one."""
    ...

@final
class Backend:
    """One AWS or GCP secret manager with its own Rust cache (used by keyway.ray's operators)."""

    def __new__(
        cls,
        kind: Literal["aws", "gcp"],
        *,
        region: str | None = None,
        endpoint: str | None = None,
        profile: str | None = None,
        project: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        anonymous: bool = False,
        default_ttl: float = -1.0,
    ) -> Backend: ...
    def get(
        self,
        name: str,
        ttl: float | None = None,
        refresh: bool = False,
        version_stage: str | None = None,
        version_id: str | None = None,
        version: str | None = None,
    ) -> tuple[bytes, dict[str, object], float | None]:
        """``(value, metadata, reusable_for)``: the seconds the answer may be handed out again without asking
        (until the read that would start a refresh-ahead; None: until purged; 0: not at all)."""
    def warm(self, names: Sequence[str], ttl: float | None = None) -> list[tuple[str, str | None]]: ...
    def list(
        self,
        prefix: str | None = None,
        *,
        aws_filters: builtins.list[tuple[str, builtins.list[str]]] | None = None,
        gcp_filter: str | None = None,
    ) -> builtins.list[str]: ...
    def secret_name(self, name: str) -> str:
        """The secret ``name`` is for, as ``cached`` names it (``projects/P/secrets/S`` for a GCP secret)."""
    # After `def list`, `list` in this class names the method: the builtin is `builtins.list`.
    def cached(self) -> builtins.list[str]:
        """Names of the cached secrets, as ``secret_name`` gives them."""
    def purge(self, name: str | None = None) -> None:
        """Drops one secret (every version, however its name was spelled) or, without a name, everything."""
