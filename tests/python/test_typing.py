"""keyway ships ``py.typed``: mypy checks the package's own code, the native module's stubs against the module
itself (``stubtest``), and user code against the public types (``typing/usage.py``, ``typing/mistakes.py``)."""

import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
PACKAGE = HERE.parents[1] / "crates" / "python"


def mypy(*args: str, cwd: pathlib.Path = HERE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_the_package_type_checks():
    # Configuration and files from crates/python/pyproject.toml's [tool.mypy].
    out = mypy(cwd=PACKAGE)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_stubs_match_the_native_module():
    # Every name, signature and default; classes that cannot be subclassed are @final. (PEP 800's
    # @disjoint_base, which no released checker acts on yet, is left out.)
    out = subprocess.run([sys.executable, "-m", "mypy.stubtest", "--ignore-disjoint-bases", "keyway._keyway"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr


def test_user_code_sees_the_public_types():
    out = mypy("--strict", "typing/usage.py")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mistakes_in_user_code_are_caught():
    out = mypy("typing/mistakes.py")
    errors = [line.split(": error: ", 1)[1] for line in out.stdout.splitlines() if ": error: " in line]
    assert errors == [
        'Argument 1 to "get_secret" has incompatible type "bytes"; expected "str"  [arg-type]',
        'Incompatible types in assignment (expression has type "SecretValue", variable has type "str")  [assignment]',
        'Incompatible types in assignment (expression has type "str", variable has type "int")  [assignment]',
    ], out.stdout + out.stderr
