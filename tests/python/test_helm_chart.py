"""The Helm chart (deploy/chart/keyway), rendered and linted by Helm's own Go SDK (helm-python-sdk binds it).

With its default values the chart renders exactly the plain manifests of deploy/keyway.yaml (less the Namespace,
which `helm install --create-namespace` makes), and those are checked field by field against the Kubernetes types
by crates/cli/tests/it/deploy.rs; so the chart's default output is as valid as they are. The values a user sets
land where they should.
"""

import base64
import pathlib

import helm_python as helm
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "chart" / "keyway"


def render(values=None, namespace="keyway"):
    manifests = helm.Chart.load(CHART).render(values or {}, name="keyway", namespace=namespace, is_install=True)
    docs = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".tpl") or not text.strip():
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def by_key(docs):
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_chart_lints_clean():
    report = helm.lint(CHART, strict=True, namespace="keyway")
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_default_values_render_the_plain_manifests():
    plain = by_key(d for d in yaml.safe_load_all((ROOT / "deploy" / "keyway.yaml").read_text()) if d)
    del plain[("Namespace", "keyway")]
    rendered = render()
    daemon = rendered[("DaemonSet", "keyway-node")]["spec"]["template"]["metadata"]
    # A config change is reloaded in place (serve --watch-config), so nothing rolls the DaemonSet: no checksum.
    assert [a for a in daemon["annotations"] if "checksum" in a] == []
    assert daemon["annotations"]["prometheus.io/port"] == "9102"
    assert sorted(rendered) == sorted(plain)
    for key, doc in plain.items():
        assert rendered[key] == doc, key


def test_values_reach_the_objects():
    spec = (ROOT / "examples" / "iam" / "eks.yaml").read_text()
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()
    rendered = render({
        "image": {"repository": "registry.example.com/keyway", "tag": "9.9.9", "pullPolicy": "Always"},
        "webhook": {"replicas": 3, "flyte": "gcp:ml-prod", "iamSpec": spec,
                    "labelNames": {"workload-type": "anyscale.com/workload-type"},
                    "injectResources": {"limits.cpu": "200m"},
                    "tls": {"caBundle": ca}},
        "node": {"serviceAccountAnnotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/keyway"}},
    }, namespace="secrets")
    deployment = rendered[("Deployment", "keyway-webhook")]
    assert deployment["metadata"]["namespace"] == "secrets"
    assert deployment["spec"]["replicas"] == 3
    pod_annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert len(pod_annotations["keyway.dev/iam-spec-sha256"]) == 64  # a new spec rolls the webhook
    assert (pod_annotations["prometheus.io/scheme"], pod_annotations["prometheus.io/port"]) == ("https", "8443")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/keyway:9.9.9"
    assert container["imagePullPolicy"] == "Always"
    args = container["args"]
    assert "--image=registry.example.com/keyway:9.9.9" in args
    assert "--flyte=gcp:ml-prod" in args
    assert "--iam-spec=/etc/keyway/iam/cloud-config.yaml" in args
    assert "--watch-config" in args  # a ConfigMap edit outside Helm applies without a rollout
    assert "--label-name=workload-type=anyscale.com/workload-type" in args
    assert "--resource=limits.cpu=200m" in args
    assert rendered[("ConfigMap", "keyway-iam")]["data"]["cloud-config.yaml"] == spec
    assert {"name": "iam", "configMap": {"name": "keyway-iam"}} in deployment["spec"]["template"]["spec"]["volumes"]
    webhook = rendered[("MutatingWebhookConfiguration", "keyway")]["webhooks"][0]
    assert webhook["clientConfig"]["caBundle"] == ca
    assert webhook["clientConfig"]["service"]["namespace"] == "secrets"
    assert webhook["failurePolicy"] == "Fail"
    node_sa = rendered[("ServiceAccount", "keyway-node")]
    assert node_sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/keyway"}
    assert node_sa["automountServiceAccountToken"] is False


def test_the_daemons_metrics_port_is_announced_or_left_out():
    for port, scraped in [(9200, True), (0, False)]:
        template = render({"node": {"metricsPort": port}})[("DaemonSet", "keyway-node")]["spec"]["template"]
        [container] = template["spec"]["containers"]
        if scraped:
            assert container["args"][-2:] == ["--metrics", "0.0.0.0:9200"]
            assert container["ports"] == [{"name": "metrics", "containerPort": 9200}]
            assert template["metadata"]["annotations"]["prometheus.io/port"] == "9200"
        else:
            assert "--metrics" not in container["args"] and "ports" not in container
            assert "annotations" not in template["metadata"]


def test_cert_manager_issues_the_certificate_and_injects_the_ca():
    rendered = render({"webhook": {"tls": {"certManager": {"enabled": True}}}})
    certificate = rendered[("Certificate", "keyway-webhook")]
    assert certificate["spec"]["secretName"] == "keyway-webhook-tls"
    assert "keyway-webhook.keyway.svc" in certificate["spec"]["dnsNames"]
    assert certificate["spec"]["issuerRef"] == {"name": "keyway-selfsigned", "kind": "Issuer"}
    assert ("Issuer", "keyway-selfsigned") in rendered
    annotations = rendered[("MutatingWebhookConfiguration", "keyway")]["metadata"]["annotations"]
    assert annotations == {"cert-manager.io/inject-ca-from": "keyway/keyway-webhook"}

    own = render({"webhook": {"tls": {"certManager": {"enabled": True, "issuer": "corp-ca"}}}})
    assert ("Issuer", "keyway-selfsigned") not in own
    assert own[("Certificate", "keyway-webhook")]["spec"]["issuerRef"]["name"] == "corp-ca"


@pytest.mark.parametrize("component", ["node", "webhook"])
def test_components_can_be_left_out(component):
    rendered = render({component: {"enabled": False}})
    kinds = {kind for kind, _ in rendered}
    assert ("DaemonSet" in kinds) == (component != "node")
    assert ("MutatingWebhookConfiguration" in kinds) == (component != "webhook")
