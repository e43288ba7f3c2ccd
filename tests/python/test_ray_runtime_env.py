"""The Ray runtime_env plugin (keyway.ray_plugin) on a real local Ray, against moto.

A task's runtime_env names references; the task sees the values in its environment and files, while the job's
runtime_env, the runtime-env agent's log (which logs the whole context at INFO) and every other file under the
Ray session directory hold the references only. A rotated value reaches the next worker; a missing secret fails
the runtime_env setup loudly, naming the reference.
"""

import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import boto3
import pytest
import ray

CANARY = "kw-canary-3f9c1e7a55d04b8e"
FILE_CANARY = "kw-file-canary-a81d2c"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from conftest import start_moto

    tmp = tmp_path_factory.mktemp("ray-runtime-env")
    moto_proc, endpoint = start_moto(tmp)
    client = boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_secret(Name="ci/github", SecretString=json.dumps({"github_token": CANARY}))
    client.create_secret(Name="db/password", SecretString=FILE_CANARY)
    config = tmp / "keyway.toml"
    config.write_text(f'[providers.aws-sm]\ntype = "aws"\nregion = "us-east-1"\nendpoint = "{endpoint}"\n')
    # The raylet, its runtime-env agent and the workers inherit this environment from the driver.
    saved = dict(os.environ)
    os.environ.update({
        "RAY_RUNTIME_ENV_PLUGINS": json.dumps([{"class": "keyway.ray_plugin.KeywayPlugin"}]),
        "KEYWAY_CONFIG": str(config), "KEYWAY_DAEMON": "never", "KEYWAY_RAY_SWEEP_SECONDS": "0.2",
        "KEYWAY_RAY_REAP_SECONDS": "5",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true",
    })
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Workers cannot import this test module: ship its functions by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        yield client, pathlib.Path(ray._private.worker._global_node.get_session_dir_path())
    finally:
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)
        moto_proc.terminate()


SPEC = {"keyway": {"env": {"GITHUB_TOKEN": "aws-sm://ci/github#github_token"},
                   "files": {"db-password": "aws-sm://db/password"}}}
TEMPLATE = "TOKEN={{ aws-sm://ci/github#github_token }}\nDB='{{ aws-sm://db/password }}'\n# {{ .Values.kept }}\n"


# max_calls=1: each call gets a fresh worker, so each resolves the references anew at its start.
@ray.remote(max_calls=1)
def inspect():
    directory = os.environ.get("KEYWAY_SECRETS_DIR", "")
    path = os.path.join(directory, "db-password")
    mode = oct(os.stat(path).st_mode & 0o777) if os.path.exists(path) else None
    with open(path) as f:
        file_value = f.read()
    template_path = os.path.join(directory, "app.env")
    template_value = open(template_path).read() if os.path.exists(template_path) else None
    return {
        "template": template_value and digest(template_value),
        "env": digest(os.environ.get("GITHUB_TOKEN", "")),
        "file": digest(file_value),
        "mode": mode,
        "dir_mode": oct(os.stat(directory).st_mode & 0o777),
        "dir": directory,
        "pid": os.getpid(),
        "runtime_env": json.dumps(ray.get_runtime_context().runtime_env),
    }


def gone_within(path: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_workers_get_the_values_and_the_runtime_env_holds_references(cluster):
    seen = ray.get(inspect.options(runtime_env=SPEC).remote())
    assert seen["env"] == digest(CANARY)
    assert seen["file"] == digest(FILE_CANARY)
    assert (seen["mode"], seen["dir_mode"]) == ("0o400", "0o700")
    assert "aws-sm://ci/github#github_token" in seen["runtime_env"]
    assert CANARY not in seen["runtime_env"] and FILE_CANARY not in seen["runtime_env"]
    assert seen["template"] is None


def test_templates_become_files_with_the_values_in_place(cluster):
    spec = {"keyway": {**SPEC["keyway"], "templates": {"app.env": TEMPLATE}}}
    seen = ray.get(inspect.options(runtime_env=spec).remote())
    assert seen["template"] == digest(f"TOKEN={CANARY}\nDB='{FILE_CANARY}'\n# {{{{ .Values.kept }}}}\n")
    assert seen["file"] == digest(FILE_CANARY) and seen["env"] == digest(CANARY)
    assert "{{ aws-sm://db/password }}" in seen["runtime_env"] and FILE_CANARY not in seen["runtime_env"]


def test_a_workers_files_are_its_own_and_go_when_it_exits(cluster):
    """Each worker's files are in a directory named after its process; the agent's sweep removes it (values
    included) within seconds of the worker's exit, while a live worker keeps its own."""
    from keyway.ray_plugin import files_root

    @ray.remote
    class Holder:
        def where(self):
            return os.environ["KEYWAY_SECRETS_DIR"], os.getpid()

    _, session = cluster
    holder = Holder.options(runtime_env=SPEC).remote()
    held_dir, held_pid = ray.get(holder.where.remote())
    seen = ray.get(inspect.options(runtime_env=SPEC).remote())  # max_calls=1: its worker exits after the call
    assert os.path.dirname(seen["dir"]) == files_root()
    assert os.path.basename(seen["dir"]).startswith(f"w-{seen['pid']}-")
    assert held_dir != seen["dir"] and os.path.basename(held_dir).startswith(f"w-{held_pid}-")
    assert gone_within(seen["dir"], 30), f"{seen['dir']} outlived its worker"
    assert os.path.exists(os.path.join(held_dir, "db-password")), "a live worker lost its files"
    ray.kill(holder)
    assert gone_within(held_dir, 30), f"{held_dir} outlived its killed worker"
    agent_log = b"".join(p.read_bytes() for p in session.glob("logs/runtime_env_agent*.log"))
    # A count, not 1: another test's exited worker may go in the same sweep.
    assert re.search(rb"keyway: removed the secret files of [0-9]+ exited worker", agent_log), \
        "the agent's sweep did not run"


# A Ray of its own, stopped while a worker with files is alive (the module's Ray sweeps another root).
STOPPED_RAY = f"""
import os, ray
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)

@ray.remote
class Holder:
    def where(self):
        return os.environ["KEYWAY_SECRETS_DIR"]

held = ray.get(Holder.options(runtime_env={SPEC!r}).remote().where.remote())
assert os.path.exists(os.path.join(held, "db-password"))
print("session", ray._private.worker._global_node.get_session_dir_path())
print("held", held, flush=True)
# As `ray stop` does, every process at once: here the agent first, so that the worker outlives it.
node = ray._private.worker._global_node
raylet = node.all_processes[ray._private.ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
agents = [pid for pid in filter(str.isdigit, os.listdir("/proc"))
          if open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[1] == str(raylet)
          and open(f"/proc/{{pid}}/cmdline", "rb").read().startswith(b"ray::RuntimeEnvAgent")]
assert len(agents) == 1, agents
os.kill(int(agents[0]), 9)
ray.shutdown()
"""


def test_the_files_of_workers_alive_when_ray_stops_go_after_it(cluster, tmp_path):
    """When Ray stops, the runtime-env agent goes with its workers, so its sweep cannot remove the files of those
    alive at that moment; the reaper it started beside it (keyway._reap) does, after both are gone, then exits."""
    root = tmp_path / "files"
    env = dict(os.environ, KEYWAY_RAY_FILES_ROOT=str(root))
    run = subprocess.run([sys.executable, "-c", STOPPED_RAY], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    said = dict(line.split(" ", 1) for line in run.stdout.splitlines() if line.startswith(("session ", "held ")))
    session, held = said["session"], said["held"]
    assert held.startswith(f"{root}/w-"), held
    assert gone_within(held, 30), f"{held} outlived the Ray that ran its worker"
    # The reaper writes its line just after the removal.
    said = "removed the secret files of 1 worker(s) that outlived the runtime-env agent"
    log = pathlib.Path(session, "logs", "keyway_reaper.log")
    deadline = time.monotonic() + 10
    while said not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert said in log.read_text(), log.read_text()

    def reapers():
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"keyway._reap" in cmdline and str(root).encode() in cmdline:
                found.append(pid)
        return found

    deadline = time.monotonic() + 30
    while reapers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not reapers(), "the reaper did not exit after its time"


def test_the_runtime_env_helper_delivers_as_the_plain_field_does(cluster):
    from keyway.ray_plugin import runtime_env

    built = runtime_env(**SPEC["keyway"], env_vars={"OTHER": "kept"})
    assert built["keyway"] == SPEC["keyway"] and built["env_vars"]["OTHER"] == "kept"
    seen = ray.get(inspect.options(runtime_env=built).remote())
    assert (seen["env"], seen["file"]) == (digest(CANARY), digest(FILE_CANARY))
    with pytest.raises(ValueError, match="not a Keyway reference"):
        runtime_env(env={"TOKEN": "ghp_pasted_value"})
    with pytest.raises(ValueError, match="call keyway.ray_plugin.require_delivery"):
        runtime_env(env={"TOKEN": "aws-sm://ci/github"}, worker_process_setup_hook="my.hook")


# A Ray of its own on which the plugin is NOT registered: Ray ignores the keyway field.
UNREGISTERED_RAY = """
import os, ray
from keyway.ray_plugin import runtime_env
ray.init(address="local", num_cpus=1, include_dashboard=False)

@ray.remote(max_retries=0)
def token():
    return os.environ.get("TOKEN")

print("plain field:", ray.get(token.options(runtime_env={"keyway": {"env": {"TOKEN": "local://x"}}}).remote()))
try:
    ray.get(token.options(runtime_env=runtime_env(env={"TOKEN": "local://x"})).remote())
    print("helper: delivered nothing, and said nothing")
except ray.exceptions.RayError as e:
    print("helper: the worker failed:", type(e).__name__, flush=True)
# Why comes to the driver's stderr through Ray's log streaming, a moment later.
import time
time.sleep(5)
ray.shutdown()
"""


def test_without_the_plugin_the_helpers_setup_hook_fails_the_worker_loudly(tmp_path):
    env = local_store_env(tmp_path)
    env.pop("RAY_RUNTIME_ENV_PLUGINS", None)
    run = subprocess.run([sys.executable, "-c", UNREGISTERED_RAY], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    # What the guard is for: the plain field reaches no worker, silently.
    assert "plain field: None" in run.stdout, run.stdout
    assert "helper: the worker failed: WorkerCrashedError" in run.stdout, run.stdout + run.stderr[-3000:]
    said = run.stdout + run.stderr
    assert "started without the keyway runtime_env plugin" in said, said[-3000:]
    assert "RAY_RUNTIME_ENV_PLUGINS=" in said


def test_the_files_root_can_be_moved_but_only_to_an_absolute_path(monkeypatch):
    from keyway.ray_plugin import files_root

    monkeypatch.setenv("KEYWAY_RAY_FILES_ROOT", "/srv/keyway-files")
    assert files_root() == "/srv/keyway-files"
    monkeypatch.setenv("KEYWAY_RAY_FILES_ROOT", "relative/dir")
    with pytest.raises(ValueError, match="KEYWAY_RAY_FILES_ROOT must be an absolute path"):
        files_root()


def test_a_rotated_value_reaches_the_next_worker(cluster):
    client, _ = cluster
    before = ray.get(inspect.options(runtime_env=SPEC).remote())
    client.put_secret_value(SecretId="db/password", SecretString=FILE_CANARY + "-rotated")
    after = ray.get(inspect.options(runtime_env=SPEC).remote())
    assert before["file"] == digest(FILE_CANARY)
    assert after["file"] == digest(FILE_CANARY + "-rotated")
    client.put_secret_value(SecretId="db/password", SecretString=FILE_CANARY)


@pytest.mark.parametrize("spec", [
    {"keyway": {"env": {"X": "aws-sm://does/not-exist"}}},
    {"keyway": {"templates": {"t": "X={{ aws-sm://does/not-exist }}"}}},
], ids=["env", "template"])
def test_a_missing_secret_fails_the_setup_naming_it(cluster, spec):
    with pytest.raises(Exception) as failure:
        ray.get(inspect.options(runtime_env=spec).remote(), timeout=120)
    text = str(failure.value)
    assert "RuntimeEnvSetupError" in type(failure.value).__name__ or "runtime_env" in text.lower(), text
    assert "does/not-exist" in text and "keyway" in text, text


def test_an_unsafe_files_directory_fails_the_setup_instead_of_hanging(cluster, tmp_path):
    """The launcher refuses such a directory, and Ray retries a worker that fails to start without end: the
    plugin checks the directory at setup, so the task fails, naming it."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    spec = {"keyway": {"files": {"db-password": "aws-sm://db/password"}, "dir": str(shared)}}
    with pytest.raises(Exception) as failure:
        ray.get(inspect.options(runtime_env=spec).remote(), timeout=120)
    assert "not safe for secret files" in str(failure.value) and str(shared) in str(failure.value)
    assert list(shared.iterdir()) == []


def test_a_value_in_place_of_a_reference_is_refused_without_showing_it():
    from keyway.ray_plugin import KeywayPlugin

    with pytest.raises(ValueError) as refused:
        KeywayPlugin.validate({"keyway": {"env": {"TOKEN": "ghp_pasted value by mistake"}}})
    assert "not a Keyway reference" in str(refused.value)
    assert "ghp_" not in str(refused.value)
    with pytest.raises(ValueError, match="unknown keys"):
        KeywayPlugin.validate({"keyway": {"env_vars": {}}})
    # Templates: placeholders are checked where the job is submitted, errors name the line, not the text.
    for text, message in [
        ("A=ghp_pasted\nB={{ aws-sm://x", 'templates"]["t"]: template, line 2: `{{ aws-sm://x` is not closed'),
        ("A={{ aws-sm://x }}", None),
        (7, "must be the template's text"),
        ("A=\0", "holds a NUL byte"),
    ]:
        spec = {"keyway": {"templates": {"t": text}}}
        if message is None:
            KeywayPlugin.validate(spec)
            continue
        with pytest.raises(ValueError) as refused:
            KeywayPlugin.validate(spec)
        assert message in str(refused.value) and "ghp_" not in str(refused.value)
    with pytest.raises(ValueError, match="name one file"):
        KeywayPlugin.validate({"keyway": {"files": {"t": "aws-sm://x"}, "templates": {"t": "{{ aws-sm://y }}"}}})


def test_no_value_in_any_ray_log_or_exception(cluster):
    """The canary: after everything above (and a proxy read whose RaySecret is printed and raised), no file under
    the session directory holds either value; the agent's log shows the context with references."""
    import keyway.ray as kr

    client, session = cluster
    seen = ray.get(inspect.options(runtime_env=SPEC).remote())
    assert seen["env"] == digest(CANARY)

    endpoint = client.meta.endpoint_url
    proxy = kr.RaySecretProxy.remote(kr.AWSRaySecretOperator(endpoint_url=endpoint, region_name="us-east-1"))
    secret = ray.get(proxy.get_secret.remote("ci/github"))
    assert CANARY not in repr(secret) and CANARY not in str(secret)

    @ray.remote
    def fails(proxy):
        secret = ray.get(proxy.get_secret.remote("ci/github"))
        raise RuntimeError(f"task failed holding {secret!r} / {secret}")

    with pytest.raises(ray.exceptions.RayTaskError) as failure:
        ray.get(fails.remote(proxy))
    assert CANARY not in str(failure.value)
    ray.kill(proxy)

    agent_logs = list(session.glob("logs/runtime_env_agent*.log"))
    assert agent_logs, sorted(p.name for p in (session / "logs").iterdir())
    assert any(b"keyway._launch" in p.read_bytes() for p in agent_logs), "the agent logged the wrapped context"
    leaks = []
    for path in session.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if CANARY.encode() in data or FILE_CANARY.encode() in data:
                leaks.append(str(path.relative_to(session)))
    assert leaks == [], leaks


def local_store_env(tmp_path: pathlib.Path) -> dict:
    """The environment of a launcher whose `local://x` holds FILE_CANARY (a local store under tmp_path)."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "x").write_text(FILE_CANARY)
    config = tmp_path / "keyway.toml"
    config.write_text(f'[providers.local]\ntype = "local"\ndir = "{store}"\n')
    return dict(os.environ, KEYWAY_CONFIG=str(config), KEYWAY_DAEMON="never")


def test_the_launcher_refuses_a_directory_others_can_write(tmp_path):
    """A directory prepared by someone else (here: mode 0777) could have its files swapped: the launcher
    refuses it before fetching anything, and exits non-zero."""
    env = local_store_env(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    command = [sys.executable, "-m", "keyway._launch", "--file", "f=local://x", "--dir", str(shared), "--",
               sys.executable, "-c", "pass"]
    refused = subprocess.run(command, env=env, capture_output=True, text=True)
    assert refused.returncode == 1, refused.stderr
    assert "not safe for secret files" in refused.stderr and FILE_CANARY not in refused.stderr
    assert not (shared / "f").exists()

    private = tmp_path / "private"
    command[command.index(str(shared))] = str(private)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (private / "f").read_text() == FILE_CANARY
    assert oct((private / "f").stat().st_mode & 0o777) == "0o400"
    assert oct(private.stat().st_mode & 0o777) == "0o700"


def test_the_launcher_gives_each_process_a_directory_and_sweeps_the_dead_ones(tmp_path):
    """With --root, the command's files are in ROOT/w-PID-START ($KEYWAY_SECRETS_DIR); each launch removes the
    directories of processes that are gone, or whose PID a later process now holds, and leaves the rest."""
    from keyway._launch import process_dir

    env = local_store_env(tmp_path)
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    mine = pathlib.Path(process_dir(str(root), os.getpid()))  # this test's own process: alive
    reused = root / f"w-{os.getpid()}-1"                        # this PID, an earlier process
    dead = root / "w-999999999-5"                               # above any pid_max
    other = root / "not-a-worker"
    for d in (mine, reused, dead, other):
        d.mkdir()
        (d / "f").write_text(FILE_CANARY)
    show = "import os; print(os.environ['KEYWAY_SECRETS_DIR']); print(os.getpid())"
    command = [sys.executable, "-m", "keyway._launch", "--file", "f=local://x", "--root", str(root), "--",
               sys.executable, "-c", show]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    directory, pid = done.stdout.split()
    assert os.path.basename(directory).startswith(f"w-{pid}-")
    assert (pathlib.Path(directory) / "f").read_text() == FILE_CANARY
    assert mine.exists() and other.exists()
    assert not reused.exists() and not dead.exists()

    again = subprocess.run(command, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert not os.path.exists(directory), "the exited launch's files survived the next launch"

    both = subprocess.run(command[:5] + ["--dir", str(tmp_path / "d")] + command[5:], env=env,
                          capture_output=True, text=True)
    assert both.returncode == 2 and "not both" in both.stderr, both.stderr

    missing = [sys.executable, "-m", "keyway._launch", "--file", "f=local://nope", "--root", str(root), "--",
               sys.executable, "-c", "pass"]
    failed = subprocess.run(missing, env=env, capture_output=True, text=True)
    assert failed.returncode == 3, failed.stderr
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("w-")) == [mine.name], \
        "a failed launch left its directory"


def test_the_tested_ray_is_the_pinned_one_and_another_is_warned_about():
    """The plugin's TESTED_RAY, the test environment's pin and the `ray` extra of the package name one Ray;
    on any other the plugin warns (its interface is a Ray DeveloperAPI)."""
    import tomllib

    from keyway.ray_plugin import TESTED_RAY, untested_ray

    root = pathlib.Path(__file__).resolve().parents[2]
    pins = re.findall(r"^ray==(\d+\.\d+)\.\d+$", (root / "scripts" / "requirements-test.txt").read_text(), re.M)
    extra = tomllib.loads((root / "crates" / "python" / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["ray"]
    assert pins == [TESTED_RAY] and extra == [f"ray=={TESTED_RAY}.*"]
    assert untested_ray(ray.__version__) is None
    warning = untested_ray("2.61.0")
    assert "2.61.0" in warning and TESTED_RAY in warning
    assert untested_ray(TESTED_RAY + "0.1") is not None, "2.600 is not 2.60"


def test_the_launcher_writes_templates_with_the_files_all_or_nothing(tmp_path):
    """`python -m keyway._launch` (what the plugin puts in front of a worker), without Ray: a template becomes a
    0400 file beside the others; a template that fails leaves no file and the command does not run."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "db").write_text("pw")
    shared = tmp_path / "shared"
    env = dict(os.environ, KEYWAY_DAEMON="never", KEYWAY_LOCAL_DIR=str(store))
    env.pop("KEYWAY_CONFIG", None)

    def launch(template):
        return subprocess.run([sys.executable, "-m", "keyway._launch", "--dir", str(shared), "--file", "db=local://db",
                               "--template", f"app.env={template}", "--", "sh", "-c",
                               'cat "$KEYWAY_SECRETS_DIR/app.env"'], env=env, capture_output=True, text=True)

    ran = launch("DB={{ local://db }}\n# {{ .Values.x }}\n")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "DB=pw\n# {{ .Values.x }}\n"
    assert oct(os.stat(shared / "app.env").st_mode & 0o777) == "0o400"
    shutil.rmtree(shared)
    failed = launch("DB={{ local://db }} {{ local://missing }}")
    assert failed.returncode == 3 and "local://missing" in failed.stderr and failed.stdout == ""
    assert not (shared / "db").exists() and not (shared / "app.env").exists()
    unclosed = launch("x\n{{ local://db")
    assert unclosed.returncode == 2
    assert unclosed.stderr.strip() == "keyway: error: template, line 2: `{{ local://db` is not closed; write " \
                                      "`{{ local://db }}`"


def test_the_launcher_writes_a_file_whose_name_is_as_long_as_the_file_system_allows(tmp_path):
    """The temporary file beside each target cuts the name short: a 255-byte name still fits."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "k").write_text("v")
    shared = tmp_path / "shared"
    name = "n" * 255
    env = dict(os.environ, KEYWAY_DAEMON="never", KEYWAY_LOCAL_DIR=str(store))
    env.pop("KEYWAY_CONFIG", None)
    ran = subprocess.run([sys.executable, "-m", "keyway._launch", "--dir", str(shared), "--file", f"{name}=local://k",
                          "--", "true"], env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert (shared / name).read_text() == "v"
    assert sorted(p.name for p in shared.iterdir()) == [name], "a temporary file was left behind"


def test_the_launcher_leaves_no_temporary_file_when_a_target_cannot_be_replaced(tmp_path):
    """`b` is a directory, so renaming its file over it fails after `a` was replaced: neither `b`'s staged file
    nor `c`'s, which hold values, may stay behind, and the command does not run."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "k").write_text("v")
    shared = tmp_path / "shared"
    (shared / "b" / "inside").mkdir(parents=True)
    shared.chmod(0o700)
    env = dict(os.environ, KEYWAY_DAEMON="never", KEYWAY_LOCAL_DIR=str(store))
    env.pop("KEYWAY_CONFIG", None)
    ran = subprocess.run([sys.executable, "-m", "keyway._launch", "--dir", str(shared), "--file", "a=local://k",
                          "--file", "b=local://k", "--file", "c=local://k", "--", "echo", "ran"],
                         env=env, capture_output=True, text=True)
    assert ran.returncode == 1 and ran.stdout == "", ran.stderr
    assert "cannot write the secret files" in ran.stderr
    assert sorted(p.name for p in shared.iterdir()) == ["a", "b"], "a temporary file was left behind"
