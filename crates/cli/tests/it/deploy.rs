//! `deploy/keyway.yaml` parses, document by document, with the Kubernetes types, and nothing in it is a field
//! those types do not know (a typo would otherwise be dropped silently); its keyway.toml is a valid config, and
//! the binary takes the arguments its containers run it with.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use serde::Deserialize as _;
use serde_json::Value;

/// Removes nulls and empty objects the typed round trip may add or drop.
fn normalized(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, normalized(v)))
                .filter(|(_, v)| !v.is_null() && v != &Value::Object(serde_json::Map::new()))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalized).collect()),
        other => other,
    }
}

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> Value {
    let typed: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}: {doc}"));
    serde_json::to_value(typed).unwrap()
}

/// The keyway container's arguments, and its exec probes' commands, are ones the binary takes: with `--help`
/// after them it prints the subcommand's help and exits 0, where an unknown flag would exit 2.
fn binary_accepts_the_arguments(workload: &Value) {
    let container = &workload["spec"]["template"]["spec"]["containers"][0];
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    };
    let mut invocations = vec![strings(&container["args"])];
    for probe in ["readinessProbe", "livenessProbe"] {
        let command = &container[probe]["exec"]["command"];
        if !command.is_null() {
            let command = strings(command);
            assert_eq!(command[0], "/usr/local/bin/keyway", "the image's binary");
            invocations.push(command[1..].to_vec());
        }
    }
    for args in invocations {
        crate::support::assert_takes_arguments(&args, &format!("{args:?}"));
    }
}

#[test]
fn every_manifest_parses_with_the_kubernetes_types_and_loses_nothing() {
    let path = keyway_testkit::repo_root().join("deploy/keyway.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut kinds = Vec::new();
    for document in serde_norway::Deserializer::from_str(&text) {
        let doc = Value::deserialize(document).unwrap();
        let kind = doc["kind"].as_str().unwrap().to_owned();
        let back = match kind.as_str() {
            "Namespace" => round_trip::<Namespace>(&doc),
            "ServiceAccount" => round_trip::<ServiceAccount>(&doc),
            "ConfigMap" => {
                let config = doc["data"]["keyway.toml"].as_str().unwrap();
                keyway_config::Config::from_toml(config).unwrap();
                round_trip::<ConfigMap>(&doc)
            }
            "DaemonSet" => {
                binary_accepts_the_arguments(&doc);
                round_trip::<DaemonSet>(&doc)
            }
            "Deployment" => {
                binary_accepts_the_arguments(&doc);
                // The webhook itself runs as a restricted namespace would require.
                assert_eq!(
                    keyway_testkit::pod_security::restricted_violations(
                        &doc["spec"]["template"]["spec"]
                    ),
                    Vec::<String>::new()
                );
                round_trip::<Deployment>(&doc)
            }
            "Service" => round_trip::<Service>(&doc),
            "MutatingWebhookConfiguration" => round_trip::<MutatingWebhookConfiguration>(&doc),
            other => panic!("unexpected kind {other}"),
        };
        assert_eq!(
            normalized(back),
            normalized(doc),
            "{kind} lost or changed fields"
        );
        kinds.push(kind);
    }
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "ServiceAccount",
            "ConfigMap",
            "DaemonSet",
            "Deployment",
            "Service",
            "MutatingWebhookConfiguration"
        ]
    );
}

/// `deploy/systemd/keyway.service` and `keyway.socket` pass `systemd-analyze verify` (unit syntax, every key
/// known, the commands executable) with this build's binary in place of `/usr/local/bin/keyway`, and the binary
/// takes the arguments of the service's `ExecStart`.
#[test]
fn the_systemd_unit_verifies_and_the_binary_takes_its_arguments() {
    let root = keyway_testkit::repo_root();
    let unit = std::fs::read_to_string(root.join("deploy/systemd/keyway.service")).unwrap();
    let exec_start = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let words: Vec<&str> = exec_start.split_whitespace().collect();
    assert_eq!(words[0], "/usr/local/bin/keyway");
    crate::support::assert_takes_arguments(&words[1..], exec_start);
    assert!(unit.contains("\nType=notify\n"), "keyway sends READY=1");

    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("keyway.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/keyway", env!("CARGO_BIN_EXE_keyway")),
    )
    .unwrap();
    // The optional socket unit beside it, verified together (it activates keyway.service).
    let socket = dir.path().join("keyway.socket");
    std::fs::copy(root.join("deploy/systemd/keyway.socket"), &socket).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .arg(&socket)
        .output()
        .expect("systemd-analyze (Debian package systemd; scripts/test.sh installs it)");
    let said = String::from_utf8_lossy(&out.stderr);
    // Unknown keys are only warned about: any line about these units fails the test.
    assert!(
        out.status.success() && !said.contains("keyway.service") && !said.contains("keyway.socket"),
        "{said}"
    );
}

/// The image has one name: the chart's `image.repository` at the chart's `appVersion`, which is Keyway's version
/// (`tag` left empty); the plain manifests pull exactly that (every `image:` and the webhook's `--image=`), and
/// so does the webhook's default `--image`, so a Pod mutated by the default webhook runs the image
/// `scripts/image.sh` tags.
#[test]
fn the_image_is_named_once_by_the_chart_and_everything_pulls_that_name() {
    let chart = keyway_testkit::repo_root().join("deploy/chart/keyway");
    let read = |path: std::path::PathBuf| -> Value {
        serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let values = read(chart.join("values.yaml"));
    let meta = read(chart.join("Chart.yaml"));
    assert_eq!(values["image"]["tag"], "", "the tag follows appVersion");
    assert_eq!(meta["appVersion"], env!("CARGO_PKG_VERSION"));
    let image = format!(
        "{}:{}",
        values["image"]["repository"].as_str().unwrap(),
        meta["appVersion"].as_str().unwrap()
    );
    assert_eq!(keyway_inject::DEFAULT_IMAGE, image);

    let text =
        std::fs::read_to_string(keyway_testkit::repo_root().join("deploy/keyway.yaml")).unwrap();
    let pulled: Vec<&str> = text
        .lines()
        .filter_map(|line| {
            let line = line.trim_start().trim_start_matches("- ");
            line.strip_prefix("image: ")
                .or_else(|| line.strip_prefix("--image="))
        })
        .collect();
    assert_eq!(pulled.len(), 3, "{pulled:?}");
    assert!(pulled.iter().all(|name| *name == image), "{pulled:?}");
}
