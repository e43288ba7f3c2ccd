"""The container image (scripts/image.sh), run as the manifests run it: the DaemonSet's `keyway serve` with its
probes, the webhook answering an AdmissionReview over HTTPS, and the init container the webhook adds rendering
secrets from moto and installing itself for the wrapped containers.

Each command is taken from deploy/keyway.yaml or from the webhook's own answer, not retyped here, and runs inside
the image with buildah (chroot isolation, the host's network): the image's entrypoint, environment, user and
files, nothing of the host's but the volumes a Pod would mount. scripts/test.sh builds the image and passes the
archive in KEYWAY_IMAGE_ARCHIVE; buildah's chroot isolation needs root.
"""

import base64
import contextlib
import datetime
import json
import os
import pathlib
import ssl
import subprocess
import tarfile
import time
import urllib.error
import urllib.request

import boto3
import pytest
import yaml

from conftest import ROOT

BUILDAH = ["buildah", "--storage-driver", "vfs"]
MAX_IMAGE_BYTES = 40_000_000  # 40 MB, as registries and `docker images` count


def manifests() -> dict:
    docs = yaml.safe_load_all((ROOT / "deploy/keyway.yaml").read_text())
    return {(d["kind"], d["metadata"]["name"]): d for d in docs if d}


@pytest.fixture(scope="module")
def archive() -> pathlib.Path:
    path = os.environ.get("KEYWAY_IMAGE_ARCHIVE")
    if not path:
        pytest.skip("KEYWAY_IMAGE_ARCHIVE is not set: scripts/test.sh builds the image (scripts/image.sh) and sets it")
    return pathlib.Path(path)


@pytest.fixture(scope="module")
def image(archive):
    """The archive's image pulled into buildah's store; yields its name and configuration."""
    out = subprocess.run(BUILDAH + ["pull", "--quiet", f"oci-archive:{archive}"], capture_output=True, text=True,
                         check=True)
    image_id = out.stdout.strip().splitlines()[-1]
    inspect = json.loads(subprocess.run(BUILDAH + ["inspect", "--type", "image", image_id], capture_output=True,
                                        text=True, check=True).stdout)
    yield image_id, inspect["OCIv1"]["config"]


@contextlib.contextmanager
def container(image_id: str):
    name = subprocess.run(BUILDAH + ["from", "--quiet", "--pull-never", image_id], capture_output=True, text=True,
                          check=True).stdout.strip()
    try:
        yield name
    finally:
        subprocess.run(BUILDAH + ["rm", name], capture_output=True)


def run_argv(name: str, argv: list, user: str, volumes: dict | None = None, env: dict | None = None) -> list:
    """`buildah run` of argv in container `name`, as a Pod would run it: user, volumes (host -> container), env."""
    cmd = BUILDAH + ["run", "--isolation", "chroot", "--network", "host", "--user", user]
    for host, inside in (volumes or {}).items():
        cmd += ["-v", f"{host}:{inside}"]
    for key, value in (env or {}).items():
        cmd += ["-e", f"{key}={value}"]
    return cmd + [name, "--"] + argv


def entrypoint_with(config: dict, args: list) -> list:
    """What a container without `command` runs: the image's ENTRYPOINT, then the container's args."""
    return list(config["Entrypoint"]) + list(args)


def descendants(pid: int) -> list:
    """Every process below `pid` (buildah run's re-executed self, then the container's process)."""
    children = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop(proc: subprocess.Popen) -> int:
    """Stops the container as the kubelet does: SIGTERM to its process (keyway), then waits; returns buildah's
    exit status, which is the container's."""
    import signal

    for pid in descendants(proc.pid):
        with contextlib.suppress(OSError):
            if pathlib.Path(f"/proc/{pid}/exe").resolve().name == "keyway":
                os.kill(pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
        raise AssertionError("the container did not stop on SIGTERM") from None


def test_the_image_is_small_non_root_and_has_no_shell(archive, image):
    image_id, config = image
    assert archive.stat().st_size <= MAX_IMAGE_BYTES, f"{archive.stat().st_size} bytes"
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["/usr/local/bin/keyway"]
    labels = config["Labels"]
    for key in ("title", "version", "revision", "created", "source", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    # Every file of every layer: the binary, glibc's shared objects, the CA bundle, passwd and group; no shell,
    # no package manager, nothing setuid.
    with tarfile.open(archive) as outer:
        index = json.load(outer.extractfile("index.json"))
        manifest = json.load(outer.extractfile("blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))
        names, unpacked = [], 0
        for layer in manifest["layers"]:
            blob = outer.extractfile("blobs/sha256/" + layer["digest"].split(":")[1])
            with tarfile.open(fileobj=blob, mode="r|*") as inner:
                for member in inner:
                    names.append("/" + member.name.lstrip("./"))
                    unpacked += member.size
                    assert not member.mode & 0o6000, f"{member.name} is setuid or setgid"
    assert unpacked <= MAX_IMAGE_BYTES, f"{unpacked} bytes unpacked"
    assert "/usr/local/bin/keyway" in names
    for forbidden in ("sh", "bash", "dash", "busybox", "apt", "apt-get", "dpkg", "pip"):
        assert not [n for n in names if pathlib.PurePosixPath(n).name == forbidden], forbidden
    executables = sorted(n for n in names if n.startswith(("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/",
                                                             "/usr/local/bin/")))
    assert executables == ["/usr/local/bin/keyway"], executables
    with container(image_id) as name:
        out = subprocess.run(run_argv(name, entrypoint_with(config, ["--version"]), config["User"]),
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split()[1] == config["Labels"]["org.opencontainers.image.version"]
        # The name the manifests and the chart pull is the image's own.
        assert manifests()[("DaemonSet", "keyway-node")]["spec"]["template"]["spec"]["containers"][0]["image"] \
            .endswith(":" + out.stdout.split()[1])
        no_shell = subprocess.run(run_argv(name, ["/bin/sh", "-c", "true"], config["User"]), capture_output=True)
        assert no_shell.returncode != 0


def test_the_daemonsets_serve_and_its_probes_run_in_the_image(image, tmp_path):
    image_id, config = image
    daemonset = manifests()[("DaemonSet", "keyway-node")]
    pod = daemonset["spec"]["template"]["spec"]
    spec = pod["containers"][0]
    user = f"{spec['securityContext']['runAsUser']}:0"
    configmap = manifests()[("ConfigMap", "keyway-config")]
    etc = tmp_path / "etc"
    etc.mkdir()
    for key, text in configmap["data"].items():
        (etc / key).write_text(text)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    mounts = {m["name"]: m["mountPath"] for m in spec["volumeMounts"]}
    volumes = {str(run_dir): mounts["socket"], str(etc): mounts["config"]}
    probes = [spec["readinessProbe"]["exec"]["command"], spec["livenessProbe"]["exec"]["command"]]
    metrics = next(p["containerPort"] for p in spec["ports"] if p["name"] == "metrics")

    with container(image_id) as daemon_ctr, container(image_id) as probe_ctr:
        # Before the daemon is up, the readiness probe fails (so Kubernetes does not route to it).
        before = subprocess.run(run_argv(probe_ctr, probes[0], user, volumes), capture_output=True, text=True)
        assert before.returncode != 0
        serve = subprocess.Popen(run_argv(daemon_ctr, entrypoint_with(config, spec["args"]), user, volumes),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while True:
                ready = subprocess.run(run_argv(probe_ctr, probes[0], user, volumes), capture_output=True, text=True)
                if ready.returncode == 0 or time.monotonic() > deadline or serve.poll() is not None:
                    break
                time.sleep(0.3)
            assert ready.returncode == 0, ready.stderr
            live = subprocess.run(run_argv(probe_ctr, probes[1], user, volumes), capture_output=True, text=True)
            assert live.returncode == 0, live.stderr
            # The socket is on the host path the DaemonSet mounts, with the configured mode; the metrics port
            # answers Prometheus' scrape from outside the container.
            sock = run_dir / "keyway.sock"
            assert sock.is_socket() and oct(sock.stat().st_mode & 0o777) == "0o666"
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
            assert "keyway_" in text
            assert urllib.request.urlopen(f"http://127.0.0.1:{metrics}/healthz", timeout=5).status == 200
        finally:
            status = stop(serve)
        # SIGTERM is a clean stop (exit 0), as the kubelet expects of a Pod being replaced.
        assert status == 0, serve.stderr.read()


def make_certificate(directory: pathlib.Path, host: str) -> bytes:
    """A CA and a server certificate for `host` signed by it, as tls.crt/tls.key (readable by the webhook's
    user, as a mounted Secret is); returns the CA's PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyway test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    for f in directory.iterdir():
        f.chmod(0o644)
    directory.chmod(0o755)
    return ca.public_bytes(serialization.Encoding.PEM)


def post_review(port: int, path: str, ca: bytes, review: dict) -> dict:
    """POSTs an AdmissionReview as the API server does: HTTPS to the Service's name, verified with caBundle."""
    import http.client
    import socket

    context = ssl.create_default_context(cadata=ca.decode())
    # Connect to loopback, check the certificate for the Service's name, as the API server asks for it.
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = http.client.HTTPConnection("keyway-webhook.keyway.svc", port, timeout=10)
    conn.sock = context.wrap_socket(raw, server_hostname="keyway-webhook.keyway.svc")
    conn.request("POST", path, body=json.dumps(review), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200, body
    return json.loads(body)


def apply_patch(pod: dict, patch: list) -> dict:
    """The JSON patch ops the webhook sends (add and replace at object paths), applied as the API server does."""
    pod = json.loads(json.dumps(pod))
    for op in patch:
        assert op["op"] in ("add", "replace"), op
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        node = pod
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            if last == "-":
                node.append(op["value"])
            else:
                node.insert(int(last), op["value"])
        else:
            node[last] = op["value"]
    return pod


def test_the_webhook_and_the_init_container_it_adds_run_in_the_image(image, tmp_path, moto_endpoint):
    image_id, config = image
    deployment = manifests()[("Deployment", "keyway-webhook")]
    pod_spec = deployment["spec"]["template"]["spec"]
    spec = pod_spec["containers"][0]
    user = f"{pod_spec['securityContext']['runAsUser']}:{pod_spec['securityContext']['runAsGroup']}"
    hook = manifests()[("MutatingWebhookConfiguration", "keyway")]["webhooks"][0]["clientConfig"]["service"]
    tls = tmp_path / "tls"
    tls.mkdir()
    ca = make_certificate(tls, f"{hook['name']}.{hook['namespace']}.svc")
    volumes = {str(tls): spec["volumeMounts"][0]["mountPath"]}
    port = next(p["containerPort"] for p in spec["ports"] if p["name"] == "https")
    probe = spec["readinessProbe"]["httpGet"]

    boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing").create_secret(
        Name="ci/github", SecretString=json.dumps({"github_token": "ghp_from_the_image"}))
    app = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "train", "namespace": "ml", "annotations": {
               "keyway.dev/inject": "true",
               "keyway.dev/secret.github-token": "aws-sm://ci/github#github_token",
               "keyway.dev/env.GITHUB_TOKEN": "aws-sm://ci/github#github_token"}},
           "spec": {"containers": [{"name": "main", "image": "python", "command": ["env"]}]}}
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "u-image", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                          "resource": {"group": "", "version": "v1", "resource": "pods"},
                          "namespace": "ml", "operation": "CREATE", "userInfo": {"username": "admin"},
                          "object": app}}

    with container(image_id) as webhook_ctr:
        server = subprocess.Popen(run_argv(webhook_ctr, entrypoint_with(config, spec["args"]), user, volumes),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)
        try:
            context = ssl.create_default_context(cadata=ca.decode())
            context.check_hostname = False  # the kubelet's HTTPS probe does not check names either
            deadline = time.monotonic() + 30
            while True:
                try:
                    health = urllib.request.urlopen(f"https://127.0.0.1:{port}{probe['path']}", context=context,
                                                    timeout=2)
                    break
                except (urllib.error.URLError, ConnectionError):
                    assert server.poll() is None, server.stderr.read()
                    assert time.monotonic() < deadline, "the webhook did not answer its readiness probe"
                    time.sleep(0.3)
            assert health.status == 200
            answer = post_review(port, hook["path"], ca, review)
        finally:
            assert stop(server) == 0, server.stderr.read()

    response = answer["response"]
    assert response["uid"] == "u-image" and response["allowed"] is True, response
    mutated = apply_patch(app, json.loads(base64.b64decode(response["patch"])))
    init = mutated["spec"]["initContainers"][0]
    # The init container runs the image the manifests name (the one just built, under the chart's name).
    assert init["image"] == spec["image"]
    main = mutated["spec"]["containers"][0]
    assert main["command"][0].startswith("/keyway/bin/"), main["command"]

    # The init container, as the kubelet runs it: its command, its volumes (emptyDirs here), its user (none set:
    # the image's), the cloud's endpoint and credentials in its environment as IRSA would give them.
    volumes = {}
    for mount in init["volumeMounts"]:
        host = tmp_path / mount["name"]
        host.mkdir(mode=0o777)
        host.chmod(0o777)  # an emptyDir is writable by the Pod's user
        volumes[str(host)] = mount["mountPath"]
    env = {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    with container(image_id) as init_ctr:
        out = subprocess.run(run_argv(init_ctr, init["command"] + init.get("args", []), config["User"], volumes,
                                      env), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    secret = tmp_path / "keyway-secrets" / "github-token"
    assert secret.read_text() == "ghp_from_the_image"
    assert oct(secret.stat().st_mode & 0o777) == "0o400" and secret.stat().st_uid == 65532
    # The binary it installed runs the app container's wrapped command (here on this host: an app image with
    # glibc), which finds the token in its environment.
    installed = tmp_path / "keyway-bin" / pathlib.PurePosixPath(main["command"][0]).name
    wrapped = subprocess.run([str(installed)] + main["command"][1:], capture_output=True, text=True,
                             env=dict(env, PATH=os.environ["PATH"]))
    assert wrapped.returncode == 0, wrapped.stderr
    assert "GITHUB_TOKEN=ghp_from_the_image" in wrapped.stdout.splitlines()


def test_the_readmes_push_line_puts_the_same_image_in_a_registry(image, tmp_path):
    """README's `buildah push IMAGE docker://REGISTRY/keyway:VERSION`, to a real registry (Debian's
    docker-registry, the CNCF distribution server, on loopback without TLS), and pulled back unchanged."""
    from conftest import free_port

    image_id, config = image
    version = config["Labels"]["org.opencontainers.image.version"]
    name = manifests()[("DaemonSet", "keyway-node")]["spec"]["template"]["spec"]["containers"][0]["image"]
    port = free_port()
    (tmp_path / "registry.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    registry = subprocess.Popen(["docker-registry", "serve", str(tmp_path / "registry.yml")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except OSError:
                assert registry.poll() is None, registry.stderr.read()
                assert time.monotonic() < deadline, "the registry did not start"
                time.sleep(0.2)
        target = f"127.0.0.1:{port}/keyway:{version}"
        subprocess.run(BUILDAH + ["push", "--quiet", "--tls-verify=false", name, f"docker://{target}"], check=True)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/keyway/manifests/{version}",
                                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        manifest = json.loads(urllib.request.urlopen(request, timeout=5).read())
        # The registry holds the very image: its configuration's digest is the image's ID.
        assert manifest["config"]["digest"] == f"sha256:{image_id}", manifest
        pulled = subprocess.run(BUILDAH + ["pull", "--quiet", "--tls-verify=false", f"docker://{target}"],
                                capture_output=True, text=True, check=True).stdout.split()[-1]
        assert pulled == image_id
    finally:
        registry.terminate()
        registry.wait(timeout=10)
