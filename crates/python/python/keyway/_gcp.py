"""The GCP project ``google.auth.default()`` would name, found without the Google client.

``GCPRaySecretOperator(project_name=None)`` needs it: the original asks ``google.auth.default()``, and Keyway's
operator must not pull the Google client into the driver. The lookup is the Rust providers' own
(``keyway_providers::gcp::project``: ``GOOGLE_CLOUD_PROJECT``, the credentials file, gcloud's, the metadata
server), so ``keyway.get_secret("gcp-sm://SECRET")`` and the operator name the same project.
``tests/python/test_gcp_project.py`` checks each source against ``google.auth.default()`` in the same environment.
"""

from __future__ import annotations

from typing import Optional

from keyway._keyway import _default_gcp_project


def default_project() -> Optional[str]:
    """The project, or None when none of the sources names one."""
    return _default_gcp_project()
