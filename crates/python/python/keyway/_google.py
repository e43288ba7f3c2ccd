"""Errors of the drop-in GCP operator that are Keyway's and ``google.api_core``'s at once.

raysecretsproxy's GCP operator turns every 4xx into ``google.api_core.exceptions``' class of the HTTP status
(``NotFound``, ``Forbidden``, ``BadRequest``, ...), lets 5xx classes through, and raises ``google.auth``'s
``DefaultCredentialsError`` when there are no credentials; code written against it catches those. Keyway's code
catches ``keyway.NotFound`` and the rest. Where the Google client is installed (it is, wherever raysecretsproxy
was), each class here is both: the class of the gRPC code Secret Manager answered with (the error's
``upstream_code``: ``PermissionDenied``, ``FailedPrecondition``, ..., each a subclass of its HTTP status's
class, so caught where the original's were), or of the failure before it answered (``failure``), or else the
kind's, so either ``except`` works; without it the operator raises Keyway's own. Imported only when an error is
raised. The message is Google's own, as the original passes it on (``404 Secret [...] not found ...``); Keyway's,
which says what to do, is ``keyway_message`` (none holds a value).
"""

from typing import Dict, List, Optional, Tuple, Type

from google.api_core import exceptions as _g
from google.auth import exceptions as _auth

import keyway


class DefaultCredentialsError(keyway.PermissionDenied, _auth.DefaultCredentialsError):
    """No credentials file and no metadata server: google-auth's error, raised where the original built its
    client."""


class NotFound(keyway.NotFound, _g.NotFound):
    pass


class FailedPrecondition(keyway.NotFound, _g.FailedPrecondition):
    """A disabled or destroyed version: Keyway's NotFound, Google's 400."""


class PermissionDenied(keyway.PermissionDenied, _g.PermissionDenied):
    pass


class Unauthenticated(keyway.PermissionDenied, _g.Unauthenticated):
    pass


class InvalidArgument(keyway.InvalidReference, _g.InvalidArgument):
    pass


class OutOfRange(keyway.InvalidReference, _g.OutOfRange):
    pass


class ResourceExhausted(keyway.Throttled, _g.ResourceExhausted):
    pass


class DeadlineExceeded(keyway.Unavailable, _g.DeadlineExceeded):
    pass


class InternalServerError(keyway.Unavailable, _g.InternalServerError):
    pass


class ServiceUnavailable(keyway.Unavailable, _g.ServiceUnavailable):
    pass


class Unknown(keyway.Unavailable, _g.Unknown):
    pass


class Aborted(keyway.Unavailable, _g.Aborted):
    pass


_BY_CODE: Dict[Optional[str], Type[keyway.KeywayError]] = {"NOT_FOUND": NotFound, "FAILED_PRECONDITION": FailedPrecondition, "PERMISSION_DENIED": PermissionDenied,
            "UNAUTHENTICATED": Unauthenticated, "INVALID_ARGUMENT": InvalidArgument, "OUT_OF_RANGE": OutOfRange,
            "RESOURCE_EXHAUSTED": ResourceExhausted, "DEADLINE_EXCEEDED": DeadlineExceeded,
            "INTERNAL": InternalServerError, "UNAVAILABLE": ServiceUnavailable, "UNKNOWN": Unknown,
            "ABORTED": Aborted}
_BY_FAILURE: Dict[Optional[str], Type[keyway.KeywayError]] = {"read_timeout": DeadlineExceeded, "connect_timeout": DeadlineExceeded,
               "unreachable": ServiceUnavailable, "no_credentials": DefaultCredentialsError}
_BY_KIND: List[Tuple[Type[keyway.KeywayError], Type[keyway.KeywayError]]] = [(keyway.NotFound, NotFound), (keyway.PermissionDenied, PermissionDenied),
            (keyway.InvalidReference, InvalidArgument), (keyway.Throttled, ResourceExhausted),
            (keyway.Unavailable, ServiceUnavailable)]


def translate(error: keyway.KeywayError) -> keyway.KeywayError:
    """The same error as the class that is also Google's."""
    code, failure = getattr(error, "upstream_code", None), getattr(error, "failure", None)
    both = _BY_CODE.get(code) or _BY_FAILURE.get(failure)
    # A class of another kind than Keyway's would break `except keyway.<Kind>`; fall back to the kind's.
    if both is None or not issubclass(both, type(error)):
        both = next((b for kind, b in _BY_KIND if isinstance(error, kind)), None)
    if both is None:
        return error
    said = getattr(error, "upstream_message", None)
    translated = both(str(error) if said is None else said)
    # Instance attributes: pickled with it.
    translated.upstream_code, translated.failure = code, failure
    translated.keyway_message = str(error)  # type: ignore[attr-defined]
    return translated
