"""``python -m keyway._launch``: resolve references, write files, then exec a command with the values in its
environment. The Ray runtime_env plugin (``keyway.ray_plugin``) puts it in front of every worker it starts, so
values exist only in the worker process and the files it reads, never in the runtime_env, its context, the
agent's log or the dashboard.

    python -m keyway._launch [--env VAR=REF]... [--file NAME=REF]... [--dir DIR] -- COMMAND [ARG]...

Exit codes as the ``keyway`` CLI's: 2 usage, 3 not found, 4 permission denied, 5 upstream unavailable or
throttled, 1 other; the one-line message on stderr names the reference, never a value.
"""

from __future__ import annotations

import os
import stat
import sys
from typing import Dict, List, Tuple

import keyway

USAGE = "usage: python -m keyway._launch [--env VAR=REF]... [--file NAME=REF]... [--dir DIR] -- COMMAND [ARG]..."


def _fail(message: str, code: int) -> "NoReturn":  # noqa: F821
    print(f"keyway: error: {message}", file=sys.stderr)
    sys.exit(code)


def _exit_code(error: BaseException) -> int:
    for kind, code in ((keyway.NotFound, 3), (keyway.PermissionDenied, 4), (keyway.Throttled, 5),
                       (keyway.Unavailable, 5), (keyway.InvalidReference, 2)):
        if isinstance(error, kind):
            return code
    return 1


def parse(argv: List[str]) -> Tuple[List[Tuple[str, str]], List[Tuple[str, str]], str, List[str]]:
    env: List[Tuple[str, str]] = []
    files: List[Tuple[str, str]] = []
    directory = ""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            command = argv[i + 1:]
            if not command:
                _fail("no command after `--`; " + USAGE, 2)
            return env, files, directory, command
        if arg in ("--env", "--file", "--dir") and i + 1 < len(argv):
            value = argv[i + 1]
            i += 2
            if arg == "--dir":
                directory = value
                continue
            name, sep, reference = value.partition("=")
            if not sep or not name:
                _fail(f"{arg} takes NAME=REFERENCE; " + USAGE, 2)
            (env if arg == "--env" else files).append((name, reference))
            continue
        _fail(f"unexpected argument `{arg}`; " + USAGE, 2)
    _fail("no `--` before the command; " + USAGE, 2)


def private_dir(directory: str) -> None:
    """Creates `directory` (0700) and refuses it unless it and every directory above it is safe: owned by this
    user or root, and writable by others only when sticky (/tmp, /dev/shm). Otherwise another user could
    swap the files the worker reads, or the directory itself, between our write and its read."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    me = os.geteuid()
    path = os.path.abspath(directory)
    leaf = True
    while True:
        st = os.lstat(path)
        unsafe = (not stat.S_ISDIR(st.st_mode) or st.st_uid not in (me, 0)
                  or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX)
                  or (leaf and (st.st_uid != me or st.st_mode & 0o077)))
        if unsafe:
            _fail(f"{path} is not safe for secret files (owner uid {st.st_uid}, mode {stat.filemode(st.st_mode)}); "
                  f"remove it, or give runtime_env keyway.dir a directory only this user can write", 1)
        parent = os.path.dirname(path)
        if parent == path:
            return
        path, leaf = parent, False


def write_file(directory: str, name: str, data: bytes) -> None:
    """All-or-nothing per file: a private temporary file, fsync, then rename over the old one, so a reader
    never sees a partial value; mode 0400."""
    path = os.path.join(directory, name)
    temp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def main(argv: List[str]) -> None:
    env, files, directory, command = parse(argv)
    if files and not directory:
        _fail("--file needs --dir", 2)
    for name, _ in files:
        if not name or name in (".", "..") or "/" in name:
            _fail(f"file name `{name}` must be one path component", 2)
    if files:
        private_dir(directory)
    references = [r for _, r in env] + [r for _, r in files]
    try:
        secrets = keyway.get_secrets(references) if references else []
    except keyway.KeywayError as e:
        _fail(str(e), _exit_code(e))
    values = [s.value for s in secrets]
    if files:
        # Written first, so the command starts only once every file exists.
        for (name, _), value in zip(files, values[len(env):]):
            write_file(directory, name, value.raw_value())
    child_env: Dict[str, str] = dict(os.environ)
    for (var, reference), value in zip(env, values):
        raw = value.raw_value()
        if b"\0" in raw:
            _fail(f"the value of {reference} holds a NUL byte, which an environment variable cannot carry; "
                  f"deliver it as a file", 2)
        child_env[var] = os.fsdecode(raw)
    del secrets, values
    try:
        os.execvpe(command[0], command, child_env)
    except OSError as e:
        _fail(f"cannot run {command[0]}: {e.strerror}", 127 if isinstance(e, FileNotFoundError) else 126)


if __name__ == "__main__":
    main(sys.argv[1:])
