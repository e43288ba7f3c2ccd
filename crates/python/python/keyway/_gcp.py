"""The GCP project ``google.auth.default()`` would name, found without the Google client.

``GCPRaySecretOperator(project_name=None)`` needs it: the original asks ``google.auth.default()``, and Keyway's
operator must not pull the Google client into the driver. The same sources in the same order:

1. ``GOOGLE_CLOUD_PROJECT`` (or the legacy ``GCLOUD_PROJECT``);
2. the file ``GOOGLE_APPLICATION_CREDENTIALS`` names: a service account key's ``project_id`` (other kinds name
   no project, and the search stops there, as Google's does);
3. gcloud's application default credentials (``$CLOUDSDK_CONFIG`` or ``~/.config/gcloud``): the file's
   ``project_id``, else ``gcloud config get project``;
4. the Compute Engine metadata server (``GCE_METADATA_IP`` / ``GCE_METADATA_HOST`` override its address), when
   it answers as Google's does.

``tests/python/test_gcp_project.py`` checks each against ``google.auth.default()`` in the same environment.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import urllib.request
from typing import Optional

_FLAVOR = {"Metadata-Flavor": "Google"}
# Google pings the metadata server with a 3 s timeout; an address that is not routed would hang that long.
_METADATA_TIMEOUT = 3


def default_project() -> Optional[str]:
    """The project, or None when none of the sources names one."""
    explicit = os.environ.get("GOOGLE_CLOUD_PROJECT", os.environ.get("GCLOUD_PROJECT"))
    if explicit:
        return explicit
    named = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    gcloud_adc = _gcloud_config_dir() / "application_default_credentials.json"
    if named is not None and pathlib.Path(named) != gcloud_adc:
        return _project_of_key_file(pathlib.Path(named))
    if gcloud_adc.is_file():
        return _project_of_key_file(gcloud_adc) or _gcloud_project()
    return _metadata_project()


def _gcloud_config_dir() -> pathlib.Path:
    configured = os.environ.get("CLOUDSDK_CONFIG")
    if configured:
        return pathlib.Path(configured)
    return pathlib.Path.home() / ".config" / "gcloud"


def _project_of_key_file(path: pathlib.Path) -> Optional[str]:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    if info.get("type") == "service_account":
        return info.get("project_id") or None
    if info.get("type") == "gdch_service_account":
        return info.get("project") or None
    return None


def _gcloud_project() -> Optional[str]:
    try:
        out = subprocess.run(["gcloud", "config", "get", "project"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode().strip() or None


def _metadata_get(url: str) -> Optional[str]:
    """The body, if the server answered 200 as Google's metadata server (its flavor header)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=_FLAVOR), timeout=_METADATA_TIMEOUT) as r:
            if r.status != 200 or r.headers.get("Metadata-Flavor") != "Google":
                return None
            return r.read().decode().strip()
    except (OSError, ValueError):  # URLError is an OSError
        return None


def _metadata_project() -> Optional[str]:
    ip = os.environ.get("GCE_METADATA_IP", "169.254.169.254")
    host = os.environ.get("GCE_METADATA_HOST") or os.environ.get("GCE_METADATA_ROOT", "metadata.google.internal")
    if _metadata_get(f"http://{ip}") is None:
        return None
    return _metadata_get(f"http://{host}/computeMetadata/v1/project/project-id") or None
