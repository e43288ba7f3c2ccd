"""raysecretsproxy's own test, from its published source, run unchanged against the original and against
keyway.ray.

The test is `tests/test_ray_secret_proxy.py` of the raysecretsproxy 0.0.3 sdist on PyPI (its wheel has no tests),
which scripts/python-env.sh keeps in the venv. Two lines are replaced, each for a reason: the import names the
module under test (the original's published `__init__.py` is empty, so the test's own import fails against it;
the submodules are imported instead), and `ray.init(local_mode=True)`, which Ray 2.60 refuses for the original
too, gives way to this module's Ray. Every other line runs as its authors wrote it.
"""

import os
import pathlib
import sys
import tarfile
import types

import pytest
import ray

SDIST = pathlib.Path(os.environ.get("KEYWAY_VENV", pathlib.Path(sys.prefix))) / "peers" / "raysecretsproxy-0.0.3.tar.gz"
TEST = "raysecretsproxy-0.0.3/tests/test_ray_secret_proxy.py"
THEIR_IMPORT = "from raysecretsproxy import AWSRaySecretOperator, GCPRaySecretOperator, RaySecretOperator, RaySecretProxy"
THEIR_RAY = "ray.init(local_mode=True)"
IMPORTS = {
    "raysecretsproxy": "from raysecretsproxy.aws_secret_operator import AWSRaySecretOperator; "
                       "from raysecretsproxy.gcp_secret_operator import GCPRaySecretOperator; "
                       "from raysecretsproxy.ray_secret_operator import RaySecretOperator; "
                       "from raysecretsproxy.ray_secret_proxy import RaySecretProxy",
    "keyway.ray": "from keyway.ray import AWSRaySecretOperator, GCPRaySecretOperator, RaySecretOperator, RaySecretProxy",
}


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def their_test(module: str) -> types.ModuleType:
    """The original's test module, its import naming `module`."""
    if not SDIST.exists():
        pytest.fail(f"{SDIST} is missing: run scripts/python-env.sh (scripts/test.sh does)")
    with tarfile.open(SDIST) as sdist:
        member = sdist.extractfile(TEST)
        assert member is not None, f"{TEST} is not in {SDIST}"
        source = member.read().decode()
    assert source.count(THEIR_IMPORT) == 1 and source.count(THEIR_RAY) == 1, "the published test changed"
    source = source.replace(THEIR_IMPORT, IMPORTS[module]).replace(THEIR_RAY, "pass  # this module's Ray")
    test = types.ModuleType(f"their_test_{module.replace('.', '_')}")
    test.__file__ = f"{SDIST}!{TEST}"
    exec(compile(source, test.__file__, "exec"), test.__dict__)  # noqa: S102 (the peer's own published test)
    return test


@pytest.mark.parametrize("module", ["raysecretsproxy", "keyway.ray"])
def test_raysecretsproxys_own_test_proxy_passes(ray_local, module):
    their_test(module).test_proxy()
