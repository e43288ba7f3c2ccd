"""Errors of the drop-in GCP operator that are Keyway's and ``google.api_core``'s at once.

raysecretsproxy's GCP operator raises ``google.api_core.exceptions`` by HTTP status (``NotFound``, ``Forbidden``,
...), and code written against it catches those; Keyway's code catches ``keyway.NotFound`` and the rest. Where
the Google client is installed (it is, wherever raysecretsproxy was), each class here is both, so either
``except`` works; without it the operator raises Keyway's own. Imported only when an error is raised.
"""

from google.api_core import exceptions as _g

import keyway


class NotFound(keyway.NotFound, _g.NotFound):
    pass


class Forbidden(keyway.PermissionDenied, _g.Forbidden):
    pass


class BadRequest(keyway.InvalidReference, _g.BadRequest):
    pass


class TooManyRequests(keyway.Throttled, _g.TooManyRequests):
    pass


class ServiceUnavailable(keyway.Unavailable, _g.ServiceUnavailable):
    pass


_BY_KIND = [(keyway.NotFound, NotFound), (keyway.PermissionDenied, Forbidden), (keyway.InvalidReference, BadRequest),
            (keyway.Throttled, TooManyRequests), (keyway.Unavailable, ServiceUnavailable)]


def translate(error: keyway.KeywayError) -> keyway.KeywayError:
    """The same error as the class that is also Google's (the message is Keyway's, which holds no value)."""
    for kind, both in _BY_KIND:
        if isinstance(error, kind):
            return both(str(error))
    return error
