"""Errors of the drop-in AWS operator that are Keyway's and botocore's at once.

raysecretsproxy's AWS operator lets boto3's errors through for everything but a missing secret: ``ClientError``
when AWS answered (code in ``e.response["Error"]["Code"]``), ``EndpointConnectionError``, ``ConnectTimeoutError``
or ``ReadTimeoutError`` when it did not, ``NoCredentialsError`` when nothing could sign the request,
``NoRegionError`` when no region was set; code written against it catches those. Keyway's code catches
``keyway.PermissionDenied`` and the rest. Where botocore is installed (it is, wherever raysecretsproxy was), each
class here is both, chosen by the error's ``failure`` and ``upstream_code`` (AWS's own code, as boto3 would
report it), so either ``except`` works; without botocore the operator raises Keyway's own. Imported only when an
error is raised. A ``ClientError``'s message is AWS's own, as boto3 words it (``An error occurred (CODE) when
calling the OPERATION operation: MESSAGE``); Keyway's, which says what to do, is ``keyway_message`` (none holds a
value).
"""

from typing import Dict, List, Optional, Tuple, Type, cast

from botocore import exceptions as _bc

import keyway


class _Both(_bc.ClientError):
    """A ``ClientError`` whose message is Keyway's."""

    #: AWS's error code when Keyway's error carries none (None: then it is not a ClientError).
    default_code: Optional[str] = None

    def __init__(self, error_response, operation_name):
        super().__init__(error_response, operation_name)
        self.upstream_code, self.failure = error_response["Error"]["Code"], None
        # In the response, which is what pickles with it (see __reduce__).
        self.keyway_message = error_response["Error"].get("KeywayMessage")

    def __reduce__(self):
        # ClientError pickles as a plain ClientError; keep the class (module-level, so picklable by name), which
        # Ray needs to hand the caller an error that is Keyway's too.
        return type(self), (self.response, self.operation_name)


class PermissionDeniedClientError(keyway.PermissionDenied, _Both):
    default_code = "AccessDeniedException"


class ThrottledClientError(keyway.Throttled, _Both):
    default_code = "ThrottlingException"


class UnavailableClientError(keyway.Unavailable, _Both):
    default_code = None  # without AWS's code it is not a ClientError (a response Keyway could not read)


class _Transport:
    """A botocore error raised before AWS answered; botocore pickles it as ``cls(*args, **kwargs)`` (the args are
    ``ReadTimeoutError``'s request and response)."""

    fmt = "{message}"
    kind_of_failure = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.upstream_code, self.failure = None, self.kind_of_failure


class NoCredentialsError(_Transport, keyway.PermissionDenied, _bc.NoCredentialsError):
    kind_of_failure = "no_credentials"


class NoRegionError(_Transport, keyway.ConfigurationError, _bc.NoRegionError):
    kind_of_failure = "no_region"


class EndpointConnectionError(_Transport, keyway.Unavailable, _bc.EndpointConnectionError):
    kind_of_failure = "unreachable"


class ConnectTimeoutError(_Transport, keyway.Unavailable, _bc.ConnectTimeoutError):
    kind_of_failure = "connect_timeout"


class ReadTimeoutError(_Transport, keyway.Unavailable, _bc.ReadTimeoutError):
    kind_of_failure = "read_timeout"


_BY_FAILURE: Dict[Optional[str], Type[_Transport]] = {c.kind_of_failure: c
               for c in (NoCredentialsError, NoRegionError, EndpointConnectionError, ConnectTimeoutError,
                         ReadTimeoutError)}
_BY_KIND: List[Tuple[Type[keyway.KeywayError], Type[_Both]]] = [(keyway.PermissionDenied, PermissionDeniedClientError), (keyway.Throttled, ThrottledClientError),
            (keyway.Unavailable, UnavailableClientError)]


def translate(error: keyway.KeywayError, operation: str, endpoint_url: Optional[str] = None) -> keyway.KeywayError:
    """The same error as the class that is also botocore's, as boto3 would have raised it from ``operation``
    against ``endpoint_url``."""
    transport = _BY_FAILURE.get(getattr(error, "failure", None))
    if transport is not None:
        translated: _Transport
        if transport in (NoCredentialsError, NoRegionError):
            translated = transport(message=str(error))
        else:
            translated = transport(message=str(error), endpoint_url=endpoint_url or "")
        return cast("keyway.KeywayError", translated)  # every _Transport class is a Keyway error too
    for kind, both in _BY_KIND:
        if isinstance(error, kind):
            code = getattr(error, "upstream_code", None) or both.default_code
            if code is None:
                return error
            said = getattr(error, "upstream_message", None)
            status = getattr(error, "upstream_status", None)
            response = {"Error": {"Code": code, "Message": str(error) if said is None else said,
                                  "KeywayMessage": str(error)},
                        "ResponseMetadata": {} if status is None else {"HTTPStatusCode": status}}
            return both(response, operation)
    return error
