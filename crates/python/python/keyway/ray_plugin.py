"""A Ray ``runtime_env`` plugin: secrets for a job's workers from references, never values, in the runtime_env.

    ray.init(runtime_env={"keyway": {
        "env": {"GITHUB_TOKEN": "aws-sm://ci/github#github_token"},   # environment variables of every worker
        "files": {"db-password": "gcp-sm://my-project/db-password"},  # files in $KEYWAY_SECRETS_DIR, mode 0400
        "templates": {".netrc": "machine github.com login x password {{ aws-sm://ci/github#github_token }}\n"},
    }})

Each worker gets its files in a private directory of its own (in memory, under ``/dev/shm``), removed within a few
seconds of the worker's exit by a sweep in the node's runtime-env agent, or after the agent by the reaper it starts
(``keyway._reap``: when Ray stops, the agent goes with the workers), and at the next worker start; with
``"dir": "/abs/path"`` every worker of the runtime_env shares that directory instead, and the files stay.

Register it on every node before ``ray start`` (and in the driver's environment for a local ``ray.init``)::

    export RAY_RUNTIME_ENV_PLUGINS='[{"class": "keyway.ray_plugin.KeywayPlugin"}]'

Ray ignores a runtime_env field no plugin claims: on a node without the plugin registered, a worker would start
without its secrets and without a word. ``runtime_env(env=..., files=..., templates=...)`` builds the same
runtime_env with a worker setup hook, ``require_delivery``, that fails such a worker at start with a message
saying how to register the plugin::

    ray.init(runtime_env=keyway.ray_plugin.runtime_env(env={"GITHUB_TOKEN": "aws-sm://ci/github#github_token"}))

Why it is built this way (``docs/python.md``): Ray's runtime-env agent logs the whole context, ``env_vars``
included, at INFO in ``runtime_env_agent.log``, shows the runtime_env in the dashboard, caches the context per
identical runtime_env (a rotated value would never be picked up) and runs ``os.path.expandvars`` on values. So the
plugin never puts a value in the context: it checks the references, then wraps the worker's Python executable in
``python -m keyway._launch --env VAR=REF ... --``, which resolves them on the worker's own node at each worker
start (through the node's Keyway daemon when its socket is there, in-process otherwise) and execs the worker
with the values in its environment only. The context, the agent's log and the dashboard hold references.

A DeveloperAPI of Ray: tested with the Ray version pinned in ``scripts/requirements-test.txt`` (2.60), which
``pip install keyway[ray]`` installs; on another Ray every setup logs a warning naming both versions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import sys
import tempfile
from typing import Any, Dict, List, Optional

import ray
from ray._private.runtime_env.context import RuntimeEnvContext
from ray._private.runtime_env.plugin import RuntimeEnvPlugin

from keyway._keyway import InvalidReference, template_references
from keyway._launch import DELIVERED_VARIABLE, DIR_VARIABLE, ROOT_MASK, sweep, unsafe_dir
from keyway._reap import SWEEP_SECONDS

__all__ = ["DIR_VARIABLE", "KeywayPlugin", "launch_prefix", "files_root", "require_delivery", "runtime_env"]

#: The registration line of the plugin, for messages.
REGISTER = """RAY_RUNTIME_ENV_PLUGINS='[{"class": "keyway.ray_plugin.KeywayPlugin"}]'"""

#: The Ray minor version the plugin is tested with (the pin of scripts/requirements-test.txt and of the
#: ``ray`` extra in pyproject.toml; a test keeps the three equal).
TESTED_RAY = "2.60"


def untested_ray(version: str) -> Optional[str]:
    """A warning when ``version`` is not the Ray the plugin is tested with (its plugin API is a DeveloperAPI)."""
    if version == TESTED_RAY or version.startswith(TESTED_RAY + "."):
        return None
    return (f"keyway: the runtime_env plugin is tested with Ray {TESTED_RAY}, this is Ray {version}: Ray may "
            f"have changed its plugin interface; pin ray=={TESTED_RAY}.* or check the plugin's tests")


def _agent_log() -> logging.Logger:
    """The sweeper outlives the per-setup loggers create() gets (Ray closes them), so it logs into the agent's own
    log (runtime_env_agent.log) through a child of the agent's logger: ``runtime_env_agent`` in Ray 2.60, whose
    agent runs that module as a script; by its package name where a Ray imports it so."""
    for name in ("runtime_env_agent", "ray._private.runtime_env.agent.runtime_env_agent"):
        if logging.getLogger(name).handlers:
            return logging.getLogger(name).getChild("keyway")
    return logging.getLogger(__name__)


def _start_reaper() -> Optional[int]:
    """Starts ``keyway._reap`` in a session of its own (Ray's stop does not signal it), its standard input the
    read end of a pipe whose write end, returned, only this process holds (not inheritable); its standard error
    into ``keyway_reaper.log`` beside the agent's log. None, after a warning in the agent's log, if it cannot
    start: the in-agent sweep and the next worker start still remove the files."""
    import subprocess

    log = _agent_log()
    handler_files = [getattr(h, "baseFilename", None) for h in log.parent.handlers] if log.parent else []
    log_dir = next((os.path.dirname(f) for f in handler_files if f), None)
    read_end, write_end = os.pipe()
    try:
        with open(os.path.join(log_dir, "keyway_reaper.log") if log_dir else os.devnull, "ab") as stderr:
            subprocess.Popen([sys.executable, "-m", "keyway._reap", files_root()], stdin=read_end,
                             stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    except OSError as e:
        os.close(write_end)
        log.warning("keyway: cannot start the reaper of workers that outlive this agent: %s", e.strerror)
        return None
    finally:
        os.close(read_end)
    return write_end


_REFERENCE = re.compile(r"^[a-z][a-z0-9-]*://\S+$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FILE = re.compile(r"^[A-Za-z0-9._-]+$")


def _spec(runtime_env: Any) -> Dict[str, Any]:
    spec = runtime_env.get(KeywayPlugin.name)
    if not isinstance(spec, dict):
        raise ValueError('runtime_env["keyway"] must be a dict with "env", "files" and/or "templates"')
    return spec


def _check(spec: Dict[str, Any]) -> None:
    """Every problem names the key and never shows the value (a value pasted in place of a reference must not
    reach the logs through our own error)."""
    unknown = set(spec) - {"env", "files", "templates", "dir"}
    if unknown:
        raise ValueError(f'runtime_env["keyway"] has unknown keys {sorted(unknown)}; use "env", "files", "templates" '
                         f'and "dir"')
    if not spec.get("env") and not spec.get("files") and not spec.get("templates"):
        raise ValueError('runtime_env["keyway"] names no secret; give "env", "files" and/or "templates"')
    for section, pattern, what in (("env", _VARIABLE, "an environment variable name"),
                                   ("files", _FILE, "a file name (letters, digits, ., _, -)")):
        entries = spec.get(section, {})
        if not isinstance(entries, dict):
            raise ValueError(f'runtime_env["keyway"]["{section}"] must map names to references')
        for name, reference in entries.items():
            if not isinstance(name, str) or not pattern.match(name) or name in (".", ".."):
                raise ValueError(f'runtime_env["keyway"]["{section}"]: `{name}` is not {what}')
            if not isinstance(reference, str) or not _REFERENCE.match(reference):
                raise ValueError(
                    f'runtime_env["keyway"]["{section}"]["{name}"] is not a Keyway reference (write e.g. '
                    f'aws-sm://NAME#field); put the reference there, never the value (not shown)')
    templates = spec.get("templates", {})
    if not isinstance(templates, dict):
        raise ValueError('runtime_env["keyway"]["templates"] must map file names to template texts')
    for name, text in templates.items():
        where = f'runtime_env["keyway"]["templates"]["{name}"]'
        if not isinstance(name, str) or not _FILE.match(name) or name in (".", ".."):
            raise ValueError(f'runtime_env["keyway"]["templates"]: `{name}` is not a file name '
                             f'(letters, digits, ., _, -)')
        if name in spec.get("files", {}):
            raise ValueError(f'{where} and runtime_env["keyway"]["files"]["{name}"] name one file; rename one')
        if not isinstance(text, str):
            raise ValueError(f"{where} must be the template's text, with {{{{ REF }}}} placeholders")
        if "\0" in text:
            raise ValueError(f"{where} holds a NUL byte, which the worker's command line cannot carry")
        # A placeholder holds a reference by construction (`INSTANCE://...`): what can be wrong is one not closed.
        try:
            template_references(text)
        except InvalidReference as e:
            raise ValueError(f"{where}: {e}") from None
    directory = spec.get("dir")
    if directory is not None and (not isinstance(directory, str) or not os.path.isabs(directory)):
        raise ValueError('runtime_env["keyway"]["dir"] must be an absolute path')


def require_delivery() -> None:
    """A Ray worker setup hook (``runtime_env`` sets it): fails the worker at start unless the plugin's launcher
    started it, which is what happens on a node where the plugin is not registered (Ray then ignores the
    ``keyway`` field and the worker would run without its secrets)."""
    if os.environ.get(DELIVERED_VARIABLE) != str(os.getpid()):
        raise RuntimeError(
            "keyway: this worker started without the keyway runtime_env plugin, so none of its secrets was "
            f"delivered; register the plugin on every node before `ray start`: {REGISTER} (docs/python.md)")


def runtime_env(env: Optional[Dict[str, str]] = None, files: Optional[Dict[str, str]] = None,
                templates: Optional[Dict[str, str]] = None, dir: Optional[str] = None,
                **fields: Any) -> Dict[str, Any]:
    """A runtime_env (for ``ray.init``, ``.options`` or ``@ray.remote``) whose ``keyway`` field delivers these
    references, with ``require_delivery`` as the workers' setup hook, so that a worker on a node without the
    plugin fails at start instead of running without its secrets. ``fields`` are the runtime_env's other fields
    (``pip``, ``env_vars``, ...). Raises ``ValueError`` as the plugin would, at once, and when the runtime_env has
    a setup hook of its own (call ``require_delivery()`` from it instead)."""
    spec = {key: value for key, value in (("env", env), ("files", files), ("templates", templates), ("dir", dir))
            if value is not None}
    _check(spec)
    from ray._private.ray_constants import WORKER_PROCESS_SETUP_HOOK_ENV_VAR as hook

    env_vars = dict(fields.pop("env_vars", None) or {})
    if "worker_process_setup_hook" in fields or hook in env_vars:
        raise ValueError("this runtime_env has a worker_process_setup_hook of its own; call "
                         "keyway.ray_plugin.require_delivery() from it and give the keyway field as a dict")
    # As an environment variable, not the worker_process_setup_hook field, which Ray takes in ray.init only:
    # so it works in a task's or an actor's runtime_env too.
    env_vars[hook] = f"{__name__}.require_delivery"
    return {**fields, KeywayPlugin.name: spec, "env_vars": env_vars}


def files_root() -> str:
    """The directory under which each worker gets a directory of its own: ``KEYWAY_RAY_FILES_ROOT`` (an absolute
    path) when set in the environment of ``ray start``, otherwise in memory (``/dev/shm``) when there is one."""
    configured = os.environ.get("KEYWAY_RAY_FILES_ROOT")
    if configured:
        if not os.path.isabs(configured):
            raise ValueError(f"keyway: KEYWAY_RAY_FILES_ROOT must be an absolute path, not `{configured}`")
        return configured
    base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    return os.path.join(base, f"keyway-ray-{os.getuid()}")


def launch_prefix(spec: Dict[str, Any], python: Optional[str] = None) -> List[str]:
    """The words that run ``keyway._launch`` in front of the worker (before its own executable)."""
    words = [python or sys.executable, "-m", "keyway._launch"]
    for var, reference in sorted(spec.get("env", {}).items()):
        words += ["--env", f"{var}={reference}"]
    files = spec.get("files", {})
    templates = spec.get("templates", {})
    if files or templates:
        words += ["--dir", spec["dir"]] if spec.get("dir") else ["--root", files_root()]
        for name, reference in sorted(files.items()):
            words += ["--file", f"{name}={reference}"]
        for name, text in sorted(templates.items()):
            words += ["--template", f"{name}={text}"]
    return words + ["--"]


class KeywayPlugin(RuntimeEnvPlugin):
    """``runtime_env={"keyway": {"env": {VAR: REF}, "files": {NAME: REF}, "templates": {NAME: TEXT}, "dir": DIR}}``."""

    name = "keyway"
    # After the plugins that choose the Python executable (pip, uv, conda: priority 10), so it wraps theirs.
    priority = 90
    # The agent's sweeper of exited workers' directories under files_root(), started by the first create()
    # that needs it.
    _sweeper: Optional["asyncio.Task[None]"] = None
    # The agent's end of the pipe of the reaper (keyway._reap) that sweeps after the agent is gone.
    _reaper: Optional[int] = None

    @staticmethod
    def validate(runtime_env_dict: dict) -> None:
        _check(_spec(runtime_env_dict))

    async def create(self, uri: Optional[str], runtime_env: Any, context: RuntimeEnvContext,
                     logger: logging.Logger = logging.getLogger(__name__)) -> float:
        """Resolves every reference once on this node, and checks the files' directory as the launcher will, so
        a missing secret or permission, or a directory another user could change, fails the job's runtime_env
        setup with a message naming it instead of workers that die at start (which Ray retries without end).
        The values are dropped at once (zeroized in Rust); nothing is written or logged."""
        import keyway

        warning = untested_ray(ray.__version__)
        if warning:
            logger.warning("%s", warning)
        spec = _spec(runtime_env)
        written = bool(spec.get("files") or spec.get("templates"))
        per_worker = written and not spec.get("dir")
        if written:
            check = (files_root(), ROOT_MASK) if per_worker else (spec["dir"],)
            problem = await asyncio.to_thread(unsafe_dir, *check)
            if problem:
                raise RuntimeError(f"keyway: {problem}")
        references = list(spec.get("env", {}).values()) + list(spec.get("files", {}).values())
        for text in spec.get("templates", {}).values():
            references += template_references(text)
        try:
            await asyncio.to_thread(keyway.get_secrets, references)
        except keyway.KeywayError as e:
            raise RuntimeError(f"keyway: {e}") from None
        logger.info("keyway: %d reference(s) resolve on this node", len(references))
        if per_worker:
            self._start_sweeper()
        return 0

    @classmethod
    def _start_sweeper(cls) -> None:
        if cls._sweeper is None or cls._sweeper.done():
            cls._sweeper = asyncio.get_running_loop().create_task(cls._sweep_forever())
        if cls._reaper is None:
            cls._reaper = _start_reaper()

    @classmethod
    async def _sweep_forever(cls) -> None:
        """Every SWEEP_SECONDS, removes the files of the workers that have exited, so no value outlives its
        worker by more than that while the node's agent runs."""
        log, root = _agent_log(), files_root()
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                removed = await asyncio.to_thread(sweep, root)
            except OSError as e:
                log.warning("keyway: cannot sweep %s: %s", root, e.strerror)
                continue
            if removed:
                log.info("keyway: removed the secret files of %d exited worker(s)", len(removed))

    def modify_context(self, uris: List[str], runtime_env: Any, context: RuntimeEnvContext,
                       logger: logging.Logger = logging.getLogger(__name__)) -> None:
        spec = _spec(runtime_env)
        prefix = launch_prefix(spec)
        context.py_executable = " ".join(shlex.quote(w) for w in prefix) + " " + context.py_executable
