"""The `keyway` Python package: in-process against moto and the local store, and through a real daemon."""

import asyncio
import logging
import os
import pathlib
import pickle
import subprocess
import sys
import time
import traceback
import urllib.request

import boto3
import pytest

import keyway
from conftest import ROOT, binary, free_port, seed_gcp

CANARY = "py-pkg-canary-5521"


@pytest.fixture()
def direct(tmp_path, moto_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_secret(Name="ci/github", SecretString='{"github_token": "%s"}' % CANARY)
    for i in range(3):
        client.create_secret(Name=f"batch/{i}", SecretString=f"value-{i}")
    client.create_secret(Name="bin", SecretBinary=b"\x00\xffbin")
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "team").mkdir()
    (tmp_path / "local" / "team" / "db").write_text("local-db")
    config = tmp_path / "keyway.toml"
    config.write_text(f'[providers.aws-sm]\ntype = "aws"\nregion = "us-east-1"\nendpoint = "{moto_endpoint}"\n')
    assert keyway.configure(config=str(config), daemon="never", local_dir=str(tmp_path / "local")) == "direct"
    return client


def test_values_stay_hidden_until_asked_for(direct):
    secret = keyway.get_secret("aws-sm://ci/github#github_token")
    assert secret.value.value() == CANARY
    assert secret.reference == "aws-sm://ci/github?version-stage=AWSCURRENT#github_token"
    assert secret.stages == ["AWSCURRENT"] and secret.stale is False
    for shown in (str(secret.value), repr(secret.value), repr(secret), f"{secret.value}", "%s" % secret.value):
        assert CANARY not in shown
    assert secret.value == CANARY and secret.value == CANARY.encode() and secret.value != "other"
    with pytest.raises(TypeError):
        hash(secret.value)
    with pytest.raises(TypeError):
        pickle.dumps(secret.value)
    assert keyway.get_secret("aws-sm://bin").value.raw_value() == b"\x00\xffbin"
    with pytest.raises(ValueError, match="raw_value"):
        keyway.get_secret("aws-sm://bin").value.value()
    assert keyway.get_secret("local://team/db").value.value() == "local-db"


def test_errors_are_typed_picklable_and_clean(direct, caplog, tmp_path):
    with pytest.raises(keyway.NotFound) as err:
        keyway.get_secret("aws-sm://ci/missing")
    assert isinstance(err.value, keyway.KeywayError)
    assert "ci/missing" in str(err.value)
    again = pickle.loads(pickle.dumps(err.value))
    assert type(again) is keyway.NotFound and str(again) == str(err.value)
    # AWS's own code rides along (and survives pickling); the field error below is Keyway's, with none.
    assert (again.upstream_code, again.failure) == ("ResourceNotFoundException", None)
    with pytest.raises(keyway.NotFound) as err:
        keyway.get_secret("aws-sm://ci/github#nope")
    assert (err.value.upstream_code, err.value.failure) == (None, None)
    assert "github_token" in str(err.value) and CANARY not in str(err.value)
    with pytest.raises(keyway.InvalidReference):
        keyway.get_secret("nope://x")
    # The value itself passed where its reference belongs: refused, never repeated (nor in get_secrets').
    for call in (keyway.get_secret, lambda text: keyway.get_secrets(["local://x", text])):
        with pytest.raises(keyway.InvalidReference, match="not a secret reference") as pasted:
            call(CANARY)
        assert CANARY not in str(pasted.value) and CANARY not in repr(pasted.value)
    # Encrypted, and no age identity configured: Keyway's configuration is what to fix, not the reference.
    (tmp_path / "local" / "enc.age").write_bytes(b"age")
    with pytest.raises(keyway.ConfigurationError, match="no `age_identity` is configured") as misconfigured:
        keyway.get_secret("local://enc")
    assert type(pickle.loads(pickle.dumps(misconfigured.value))) is keyway.ConfigurationError
    (tmp_path / "bad.toml").write_text("[providers.x]\ntype = \"aws\"\nregoin = \"us-east-1\"\n")
    with pytest.raises(keyway.ConfigurationError, match="unknown field `regoin`"):
        keyway.configure(config=str(tmp_path / "bad.toml"), daemon="never")
    assert keyway.get_secret("local://team/db").value == "local-db", "a refused configure() keeps the running one"
    # A traceback of a failure and logged secrets show no value.
    secret = keyway.get_secret("aws-sm://ci/github#github_token")
    logging.getLogger("app").warning("token is %s", secret.value)
    text = "".join(traceback.format_exception(err.value)) + caplog.text
    assert CANARY not in text


def test_batches_and_listing(direct):
    secrets = keyway.get_secrets([f"aws-sm://batch/{i}" for i in range(3)])
    assert [s.value.value() for s in secrets] == ["value-0", "value-1", "value-2"]
    with pytest.raises(keyway.NotFound):
        keyway.get_secrets(["aws-sm://batch/0", "aws-sm://batch/9"])
    assert sorted(keyway.list_secrets("aws-sm", "batch/")) == ["batch/0", "batch/1", "batch/2"]
    # Any iterable of references; one string is refused, not taken character by character.
    generated = keyway.get_secrets(f"aws-sm://batch/{i}" for i in range(2))
    assert [s.value.value() for s in generated] == ["value-0", "value-1"]
    for batch in (keyway.get_secrets, lambda refs: asyncio.run(keyway.aget_secrets(refs))):
        with pytest.raises(TypeError, match="not one string; for one reference use get_secret"):
            batch("aws-sm://batch/0")
        with pytest.raises(TypeError, match="each a str"):
            batch(["aws-sm://batch/0", 7])


def test_templates_take_the_values_where_their_references_stand(direct):
    text = "TOKEN={{ aws-sm://ci/github#github_token }}\nDB={{local://team/db}}\nkept: {{ .Values.x }}\n"
    rendered = keyway.render_template(text)
    assert rendered.value() == f"TOKEN={CANARY}\nDB=local-db\nkept: {{{{ .Values.x }}}}\n"
    assert CANARY not in repr(rendered) and CANARY not in str(rendered)
    assert keyway.render_template("no placeholders").value() == "no placeholders"
    with pytest.raises(keyway.InvalidReference, match=r"template, line 2: `\{\{ local://x` is not closed"):
        keyway.render_template("a\n{{ local://x")
    with pytest.raises(keyway.NotFound):
        keyway.render_template("{{ local://team/db }} {{ aws-sm://ci/missing }}")


def test_awaitables_leave_the_event_loop_running(tmp_path, gcp_emulator):
    """aget_secret & co. resolve on the extension's runtime while asyncio goes on: with every GCP access taking
    0.5 s, ten secrets come in about 0.5 s (concurrently), a ticker keeps ticking meanwhile, errors keep their
    kinds, and a cancelled await leaves the package working."""
    seed_gcp(gcp_emulator, {f"s{i}": f"v{i}".encode() for i in range(10)})
    config = tmp_path / "keyway.toml"
    config.write_text(f'[providers.gcp-sm]\ntype = "gcp"\nendpoint = "{gcp_emulator}"\n'
                      f'credentials = "anonymous"\nproject = "proj"\n')
    assert keyway.configure(config=str(config), daemon="never") == "direct"
    urllib.request.urlopen(urllib.request.Request(f"{gcp_emulator}/emulator/latency?ms=500", method="POST"))

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        started = time.perf_counter()
        one, rest = await asyncio.gather(keyway.aget_secret("gcp-sm://proj/s0"),
                                         keyway.aget_secrets([f"gcp-sm://proj/s{i}" for i in range(1, 10)]))
        elapsed = time.perf_counter() - started
        during = ticks
        with pytest.raises(keyway.NotFound):
            await keyway.aget_secret("gcp-sm://proj/missing")
        cancelled = asyncio.create_task(keyway.aget_secret("gcp-sm://proj/s0", ttl=0))
        await asyncio.sleep(0.05)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        again = await keyway.aget_secret("gcp-sm://proj/s1")
        # A cached answer comes back without a trip through the runtime; ttl=0 always takes one.
        from keyway import _keyway
        assert _keyway.aget_secret("gcp-sm://proj/s1", None, False)[0] is True
        done, pending = _keyway.aget_secret("gcp-sm://proj/s1", 0, False)
        assert done is False and (await pending).value == "v1"
        ticking.cancel()
        return one, rest, elapsed, during, again

    one, rest, elapsed, ticks, again = asyncio.run(main())
    assert one.value == "v0" and [s.value.value() for s in rest] == [f"v{i}" for i in range(1, 10)]
    assert again.value == "v1"
    assert 0.5 <= elapsed < 2.0, f"ten secrets of 0.5 s each took {elapsed:.2f} s"
    assert ticks >= 20, f"the event loop ticked {ticks} times in {elapsed:.2f} s: it was held up"


def _in_forked_child(_):
    """Runs in a child forked from a parent that has used keyway: sync and async reads, upstream and cached."""
    token = keyway.get_secret("aws-sm://ci/github#github_token").value == CANARY
    batch = keyway.get_secret("aws-sm://batch/0").value.value()
    local = asyncio.run(keyway.aget_secret("local://team/db", ttl=0)).value.value()
    return token, batch, local, os.getpid()


def test_a_forked_child_reads_with_the_parents_settings(direct):
    """multiprocessing's fork (PyTorch's DataLoader workers): the child gets the parent's runtime without its
    threads; it builds its own on first use, with what the parent passed to configure(), instead of waiting for
    ever."""
    import multiprocessing

    assert keyway.get_secret("aws-sm://ci/github#github_token").value == CANARY
    assert asyncio.run(keyway.aget_secret("local://team/db")).value == "local-db"
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map_async(_in_forked_child, range(2), chunksize=1).get(timeout=60)
    assert [r[:3] for r in results] == [(True, "value-0", "local-db")] * 2
    assert all(pid != os.getpid() for *_, pid in results)
    # The parent goes on with its own.
    assert keyway.get_secret("aws-sm://batch/1").value == "value-1"


_FORKED_BACKEND = []


def _backend_in_forked_child(_):
    """Runs in a forked child with the Backend the parent built and used: a cached read, then upstream ones."""
    backend, prefix = _FORKED_BACKEND
    started = time.monotonic()
    cached = backend.get(f"{prefix}0")[0]
    fetched = backend.get(f"{prefix}1")[0], backend.get(f"{prefix}2", ttl=0)[0]
    return cached, fetched, time.monotonic() - started


@pytest.mark.parametrize("kind", ["aws", "gcp"])
def test_a_backend_built_before_a_fork_serves_the_child(kind, direct, moto_endpoint, gcp_emulator):
    """A keyway.ray operator's Backend (its SDK client with pooled connections whose tasks ran on the parent's
    runtime) used in a forked child: answered at once from the child's own client, not after a stall."""
    import multiprocessing

    from keyway._keyway import Backend

    if kind == "aws":
        backend = Backend("aws", region="us-east-1", endpoint=moto_endpoint, access_key="testing",
                          secret_key="testing")
    else:
        seed_gcp(gcp_emulator, {f"batch-{i}": f"value-{i}".encode() for i in range(3)})
        backend = Backend("gcp", project="proj", endpoint=gcp_emulator, anonymous=True)
    prefix = "batch/" if kind == "aws" else "batch-"
    assert backend.get(f"{prefix}0")[0] == b"value-0"
    _FORKED_BACKEND[:] = [backend, prefix]  # inherited by the fork, not pickled (a Backend does not pickle)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        cached, fetched, took = pool.apply_async(_backend_in_forked_child, (0,)).get(timeout=60)
    assert cached == b"value-0" and fetched == (b"value-1", b"value-2")
    assert took < 5.0, f"the child's reads took {took:.1f} s (a connection of the parent's runtime waits 10 s)"
    assert backend.get(f"{prefix}1")[0] == b"value-1"


def test_the_daemon_passes_the_backends_code_and_failure_along(direct, tmp_path):
    """Through a daemon, errors keep AWS's code and the transport failure as well as the kind."""
    closed = free_port()  # bound, then released: nothing listens
    config = tmp_path / "keyway.toml"
    config.write_text(config.read_text() + f'[providers.down]\ntype = "aws"\nregion = "us-east-1"\n'
                                           f'endpoint = "http://127.0.0.1:{closed}"\n')
    socket_path = tmp_path / "k.sock"
    proc = subprocess.Popen([binary("keyway"), "--config", config, "--socket", socket_path, "serve"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().startswith("listening on unix:")
        assert keyway.configure(socket=str(socket_path), daemon="always") == "daemon"
        with pytest.raises(keyway.NotFound) as missing:
            keyway.get_secret("aws-sm://ci/missing")
        assert (missing.value.upstream_code, missing.value.failure) == ("ResourceNotFoundException", None)
        with pytest.raises(keyway.Unavailable) as down:
            keyway.get_secret("down://ci/github")
        assert (down.value.upstream_code, down.value.failure) == (None, "unreachable")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_through_the_node_daemon(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "token").write_text("from-the-daemon")
    socket_path = tmp_path / "k.sock"
    proc = subprocess.Popen([binary("keyway"), "--local-dir", store, "--socket", socket_path, "serve"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().startswith("listening on unix:")
        assert keyway.configure(socket=str(socket_path)) == "daemon"
        secret = keyway.get_secret("local://token")
        assert secret.value.value() == "from-the-daemon"
        assert keyway.list_secrets("local") == ["token"]
        assert asyncio.run(keyway.aget_secret("local://token")).value == "from-the-daemon"
        assert asyncio.run(keyway.alist_secrets("local")) == ["token"]
        assert keyway.render_template("T={{ local://token }}").value() == "T=from-the-daemon"
        with pytest.raises(keyway.NotFound):
            keyway.get_secret("local://absent")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    with pytest.raises(keyway.Unavailable):
        keyway.configure(socket=str(socket_path), daemon="always")
        keyway.get_secret("local://token")


def pip_install_into_a_new_venv(crate: str, tmp_path: pathlib.Path) -> pathlib.Path:
    """`pip install ./crates/CRATE`, as a user runs it: maturin as pip's build backend (the debug profile, to reuse
    scripts/test.sh's build), the wheel into a new venv; returns the venv."""
    bin_dir = pathlib.Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", MATURIN_PEP517_ARGS="--profile dev")
    dist = tmp_path / f"dist-{crate}"
    subprocess.run([bin_dir / "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", dist,
                    ROOT / "crates" / crate], env=env, check=True)
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / f"venv-{crate}"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([venv / "bin" / "pip", "install", "--quiet", "--no-index", wheel], check=True)
    return venv


def test_pip_installs_the_command_onto_the_venvs_path(tmp_path):
    """`pip install ./crates/cli` (the wheel `keyway-cli`, as ruff and uv ship their binaries): `keyway` lands in
    the venv's bin directory and runs with nothing else installed."""
    venv = pip_install_into_a_new_venv("cli", tmp_path)
    store = tmp_path / "store"
    store.mkdir()
    (store / "db").write_text("s3cret")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    where = subprocess.run(["sh", "-c", "command -v keyway"], env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip() == str(venv / "bin" / "keyway")
    read = subprocess.run(["keyway", "--daemon", "never", "--local-dir", store, "get", "local://db"], env=env,
                          capture_output=True, text=True, check=False)
    assert (read.returncode, read.stdout, read.stderr) == (0, "s3cret", "")
    missing = subprocess.run(["keyway", "--daemon", "never", "--local-dir", store, "get", "local://nope"], env=env,
                             capture_output=True, text=True, check=False)
    assert missing.returncode == 3 and "not found" in missing.stderr


def test_pip_installs_the_package_into_a_fresh_venv_and_it_works_without_ray(tmp_path):
    """`pip install ./crates/python` into a new venv that has neither Ray, boto3 nor the Google client."""
    venv = pip_install_into_a_new_venv("python", tmp_path)

    store = tmp_path / "store"
    store.mkdir()
    (store / "db").write_text("s3cret")
    work = tmp_path / "elsewhere"  # not the repository, so `import keyway` finds only the installed one
    work.mkdir()

    def run(code):
        return subprocess.run([venv / "bin" / "python", "-c", code], cwd=work, capture_output=True, text=True,
                              check=False, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})

    read = run(f"import keyway; keyway.configure(daemon='never', local_dir={str(store)!r}); "
               "s = keyway.get_secret('local://db'); print(keyway.__file__, repr(s.value), s.value.value(), sep='|')")
    assert read.returncode == 0, read.stderr
    installed, shown, value = read.stdout.strip().split("|")
    assert installed.startswith(str(venv)) and shown == "SecretValue([redacted 6 bytes])" and value == "s3cret"
    assert run("import keyway, pathlib; assert (pathlib.Path(keyway.__file__).parent / 'py.typed').exists() and "
               "(pathlib.Path(keyway.__file__).parent / '_keyway.pyi').exists()").returncode == 0

    without_ray = run("import keyway.ray")
    assert without_ray.returncode == 1
    assert without_ray.stderr.strip().splitlines()[-1] == (
        "ModuleNotFoundError: keyway.ray needs Ray: pip install 'keyway[ray]' (the Ray Keyway is tested with)")
