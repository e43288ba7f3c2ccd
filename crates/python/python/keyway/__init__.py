"""Keyway: secrets for Ray, Kubernetes and Flyte workloads.

One reference syntax for every backend (``aws-sm://NAME#field``, ``gcp-sm://PROJECT/SECRET``, ``local://NAME``),
resolved through the node's Keyway daemon when its socket is there, otherwise in-process with Keyway's Rust
providers and cache (no boto3 or Google client needed)::

    import keyway
    token = keyway.get_secret("aws-sm://ci/github#github_token").value
    token.value()         # the text, when you need it
    print(token)          # SecretValue([redacted 40 bytes])

``keyway.render_template("DB_PASSWORD={{ aws-sm://prod/db#password }}")`` fills a template (an ``.env`` file, a
``.netrc``) and returns a ``SecretValue``.

Errors are ``keyway.NotFound``, ``keyway.PermissionDenied``, ``keyway.Throttled``, ``keyway.Unavailable`` and
``keyway.InvalidReference``, all ``keyway.KeywayError``; their messages say what to do and never hold a value.
"""

from keyway._keyway import (
    InvalidReference,
    KeywayError,
    NotFound,
    PermissionDenied,
    Secret,
    SecretValue,
    Throttled,
    Unavailable,
    configure,
    get_secret,
    get_secrets,
    list_secrets,
    render_template,
)

__all__ = [
    "InvalidReference",
    "KeywayError",
    "NotFound",
    "PermissionDenied",
    "Secret",
    "SecretValue",
    "Throttled",
    "Unavailable",
    "configure",
    "get_secret",
    "get_secrets",
    "list_secrets",
    "render_template",
]
