"""Errors of the drop-in AWS operator that are Keyway's and botocore's ``ClientError`` at once.

raysecretsproxy's AWS operator lets boto3's ``ClientError`` through for everything but a missing secret, and code
written against it catches that and reads ``e.response["Error"]["Code"]``; Keyway's code catches
``keyway.PermissionDenied`` and the rest. Where botocore is installed (it is, wherever raysecretsproxy was), each
class here is both, with the AWS error code of its kind, so either ``except`` works; without botocore the operator
raises Keyway's own. Imported only when an error is raised.

``keyway.Unavailable`` stays Keyway's alone: it covers both AWS's internal errors (a ``ClientError`` in boto3) and
an unreachable endpoint (botocore's ``EndpointConnectionError``, not a ``ClientError``).
"""

from botocore.exceptions import ClientError

import keyway


class _Both(ClientError):
    """A ``ClientError`` whose message is Keyway's (which holds no value)."""

    code = ""

    def __reduce__(self):
        # ClientError pickles as a plain ClientError; keep the class (module-level, so picklable by name), which
        # Ray needs to hand the caller an error that is Keyway's too.
        return type(self), (self.response, self.operation_name)


class AccessDeniedException(keyway.PermissionDenied, _Both):
    code = "AccessDeniedException"


class ThrottlingException(keyway.Throttled, _Both):
    code = "ThrottlingException"


_BY_KIND = [(keyway.PermissionDenied, AccessDeniedException), (keyway.Throttled, ThrottlingException)]


def translate(error: keyway.KeywayError, operation: str) -> keyway.KeywayError:
    """The same error as the class that is also botocore's, as boto3 would have raised it from ``operation``."""
    for kind, both in _BY_KIND:
        if isinstance(error, kind):
            response = {"Error": {"Code": both.code, "Message": str(error)}, "ResponseMetadata": {}}
            return both(response, operation)
    return error
