"""``python -m keyway._launch``: resolve references, write files, then exec a command with the values in its
environment. The Ray runtime_env plugin (``keyway.ray_plugin``) puts it in front of every worker it starts, so
values exist only in the worker process and the files it reads, never in the runtime_env, its context, the
agent's log or the dashboard.

    python -m keyway._launch [--env VAR=REF]... [--file NAME=REF]... [--template NAME=TEXT]...
                             [--dir DIR | --root ROOT] -- COMMAND [ARG]...

A ``--template`` file holds TEXT with each ``{{ REF }}`` replaced by the value (``keyway.render_template``).

Files go in ``--dir DIR`` (kept, shared by every process given it), or with ``--root ROOT`` in a directory of their
own, ``ROOT/w-PID-START``, named after the process (the exec keeps its PID) and its start time: each launch removes
the directories under ROOT whose process is gone (``sweep``), and so does the Ray plugin, every few seconds, in
the node's runtime-env agent. The command finds its files in ``$KEYWAY_SECRETS_DIR``.

Exit codes as the ``keyway`` CLI's: 2 usage, 3 not found, 4 permission denied, 5 upstream unavailable or
throttled, 1 other; the one-line message on stderr names the reference, never a value.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
from typing import Dict, List, NoReturn, Optional, Tuple

import keyway

USAGE = ("usage: python -m keyway._launch [--env VAR=REF]... [--file NAME=REF]... [--template NAME=TEXT]... "
         "[--dir DIR | --root ROOT] -- COMMAND [ARG]...")
#: The command's environment variable naming the directory of its files.
DIR_VARIABLE = "KEYWAY_SECRETS_DIR"
#: The command's environment variable holding its own process ID (the exec keeps it): the launcher delivered
#: this process's secrets. ``keyway.ray_plugin.require_delivery`` checks it; a value inherited from another
#: process does not match.
DELIVERED_VARIABLE = "KEYWAY_RAY_DELIVERED"
_PROCESS_DIR = re.compile(r"^w-([0-9]+)-([0-9]+)$")
#: The permission bits a ``--root`` must not have: writable by group or others.
ROOT_MASK = 0o022


def _fail(message: str, code: int) -> NoReturn:
    print(f"keyway: error: {message}", file=sys.stderr)
    sys.exit(code)


def _exit_code(error: BaseException) -> int:
    for kind, code in ((keyway.NotFound, 3), (keyway.PermissionDenied, 4), (keyway.Throttled, 5),
                       (keyway.Unavailable, 5), (keyway.InvalidReference, 2),
                       (keyway.ConfigurationError, 2)):
        if isinstance(error, kind):
            return code
    return 1


Pairs = List[Tuple[str, str]]


def parse(argv: List[str]) -> Tuple[Pairs, Pairs, Pairs, Dict[str, str], List[str]]:
    """Returns the env, file and template pairs, the directory options given (``dir``, ``root``) and the
    command."""
    env: Pairs = []
    files: Pairs = []
    templates: Pairs = []
    where: Dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            command = argv[i + 1:]
            if not command:
                _fail("no command after `--`; " + USAGE, 2)
            return env, files, templates, where, command
        if arg in ("--env", "--file", "--template", "--dir", "--root") and i + 1 < len(argv):
            value = argv[i + 1]
            i += 2
            if arg in ("--dir", "--root"):
                where[arg[2:]] = value
                continue
            name, sep, reference = value.partition("=")
            if not sep or not name:
                _fail(f"{arg} takes NAME={'TEXT' if arg == '--template' else 'REFERENCE'}; " + USAGE, 2)
            {"--env": env, "--file": files, "--template": templates}[arg].append((name, reference))
            continue
        _fail(f"unexpected argument `{arg}`; " + USAGE, 2)
    _fail("no `--` before the command; " + USAGE, 2)


def unsafe_dir(directory: str, leaf_mask: int = 0o077) -> Optional[str]:
    """Creates ``directory`` (0700) and returns why it is not safe for secret files, or None when it and every
    directory above it is: owned by this user or root, and writable by others only when sticky (/tmp, /dev/shm);
    the directory itself owned by this user with none of ``leaf_mask``'s permission bits (0o077: private; a
    ``--root`` takes 0o022, since each process's own directory under it is private). Otherwise another user could
    swap the files the worker reads, or the directory itself, between our write and its read."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    me = os.geteuid()
    path = os.path.abspath(directory)
    leaf = True
    while True:
        st = os.lstat(path)
        unsafe = (not stat.S_ISDIR(st.st_mode) or st.st_uid not in (me, 0)
                  or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX)
                  or (leaf and (st.st_uid != me or st.st_mode & leaf_mask)))
        if unsafe:
            return (f"{path} is not safe for secret files (owner uid {st.st_uid}, mode {stat.filemode(st.st_mode)}); "
                    f"remove it, or give runtime_env keyway.dir a directory only this user can write")
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path, leaf = parent, False


def private_dir(directory: str, leaf_mask: int = 0o077) -> None:
    """``unsafe_dir``, exiting with status 1 and its one-line reason when the directory is not safe."""
    problem = unsafe_dir(directory, leaf_mask)
    if problem:
        _fail(problem, 1)


def _start_time(pid: int) -> Optional[int]:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), 0 where there is no
    ``/proc``, None when the process is gone. With the PID it names one process: a PID reused by a later process
    has another start time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat_line = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        stat_line = b""
    if not stat_line:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0
    # The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    return int(stat_line[stat_line.rindex(b")") + 2:].split()[19])


def process_dir(root: str, pid: int) -> str:
    """The directory under ``root`` that belongs to process ``pid``, named ``w-PID-START``."""
    return os.path.join(root, f"w-{pid}-{_start_time(pid) or 0}")


def sweep(root: str) -> List[str]:
    """Removes every ``w-PID-START`` directory under ``root`` whose process is gone (or whose PID now belongs to
    a later process), with the secret files in it; returns the names removed. Anything else under ``root`` is left
    alone. Safe to run from several processes at once."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        match = _PROCESS_DIR.match(name)
        if not match:
            continue
        pid, started = int(match.group(1)), int(match.group(2))
        now = _start_time(pid)
        if now is not None and (now == started or started == 0 or now == 0):
            continue
        shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        removed.append(name)
    return removed


def stage_file(directory: str, name: str, data: bytes) -> str:
    """A private temporary file beside ``name`` holding ``data``, fsynced, mode 0400; returns its path. On an
    error nothing is left behind. The name is cut short in it, so a name near the 255-byte limit still fits."""
    temp = os.path.join(directory, f".{name[:64]}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(temp)
        raise
    return temp


def write_files(directory: str, files: List[Tuple[str, bytes]]) -> None:
    """All or nothing: every file is staged first, and only when all are written do they replace the old ones
    (each by a rename, so a reader never sees a partial value)."""
    staged: List[Tuple[str, str]] = []
    try:
        for name, data in files:
            staged.append((stage_file(directory, name, data), os.path.join(directory, name)))
    except BaseException:
        for temp, _ in staged:
            os.unlink(temp)
        raise
    for i, (temp, path) in enumerate(staged):
        try:
            os.replace(temp, path)
        except BaseException:
            # The files not yet renamed hold values too: none may stay behind.
            for later, _ in staged[i:]:
                os.unlink(later)
            raise


def main(argv: List[str]) -> None:
    env, files, templates, where, command = parse(argv)
    if len(where) > 1:
        _fail("give --dir or --root, not both; " + USAGE, 2)
    if (files or templates) and not where:
        _fail("--file and --template need --dir or --root", 2)
    for name, _ in files + templates:
        if not name or name in (".", "..") or "/" in name:
            _fail(f"file name `{name}` must be one path component", 2)
    directory = where.get("dir", "")
    written = files + templates
    if written and "root" in where:
        private_dir(where["root"], ROOT_MASK)
        sweep(where["root"])
        directory = process_dir(where["root"], os.getpid())
    if written:
        private_dir(directory)
    references = [r for _, r in env] + [r for _, r in files]
    try:
        secrets = keyway.get_secrets(references) if references else []
        # Every value is fetched before the first file is written: all or nothing.
        values = [s.value for s in secrets] + [keyway.render_template(text) for _, text in templates]
    except keyway.KeywayError as e:
        _discard(where, directory)
        _fail(str(e), _exit_code(e))
    child_env: Dict[str, str] = dict(os.environ)
    if written:
        # Written first, so the command starts only once every file exists.
        try:
            write_files(directory, [(name, value.raw_value()) for (name, _), value in zip(written, values[len(env):])])
        except OSError as e:
            _discard(where, directory)
            _fail(f"cannot write the secret files in {directory}: {e.strerror}", 1)
        child_env[DIR_VARIABLE] = directory
    for (var, reference), value in zip(env, values):
        raw = value.raw_value()
        if b"\0" in raw:
            _discard(where, directory)
            _fail(f"the value of {reference} holds a NUL byte, which an environment variable cannot carry; "
                  f"deliver it as a file", 2)
        child_env[var] = os.fsdecode(raw)
    del secrets, values
    child_env[DELIVERED_VARIABLE] = str(os.getpid())
    try:
        os.execvpe(command[0], command, child_env)
    except OSError as e:
        _discard(where, directory)
        _fail(f"cannot run {command[0]}: {e.strerror}", 127 if isinstance(e, FileNotFoundError) else 126)


def _discard(where: Dict[str, str], directory: str) -> None:
    """On failure, the files of a process directory go with it (nothing is left half delivered); a ``--dir`` is
    shared with other processes and keeps what it had."""
    if "root" in where and directory:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
