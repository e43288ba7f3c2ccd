//! The Pod mutation: AdmissionReview JSON in, JSON patch out, the patched Pod parsed back with the Kubernetes
//! types, and a second mutation proving idempotence.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

mod fuzz;
mod resources;

use k8s_openapi::api::core::v1::Pod;
use keyway_inject::{INIT_CONTAINER, InjectConfig, VOLUME, mutate};
use keyway_testkit::pod_security::restricted_violations;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use serde_json::{Value, json};

fn review(pod: &Value) -> AdmissionRequest<Pod> {
    let review: AdmissionReview<Pod> = serde_json::from_value(review_json(pod)).unwrap();
    review.try_into().unwrap()
}

fn review_json(pod: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "ml",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "dryRun": false
        }
    })
}

fn pod(annotations: &Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "trainer", "namespace": "ml", "annotations": annotations, "labels": {"app": "trainer"}},
        "spec": {
            "priorityClassName": "high",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
            "containers": [
                {"name": "main", "image": "python:3.11", "command": ["python", "train.py"], "ports": [{"containerPort": 8265}]},
                {"name": "sidecar", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
            ],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    })
}

fn apply(pod: &Value, response: &AdmissionResponse) -> Value {
    let patch: json_patch::Patch =
        serde_json::from_slice(response.patch.as_ref().unwrap()).unwrap();
    let mut out = pod.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    out
}

fn native() -> Value {
    json!({
        "keyway.dev/inject": "true",
        "keyway.dev/secret.github-token": "aws-sm://ci/github#github_token",
        "keyway.dev/secret.db-password": "gcp-sm://my-project/db-password?version=3",
        "keyway.dev/secret.api-key": "local://team/api",
        "other.io/keep": "me"
    })
}

#[test]
fn pods_that_do_not_ask_are_allowed_untouched() {
    for annotations in [json!({}), json!({"keyway.dev/inject": "false"})] {
        let response = mutate(&review(&pod(&annotations)), &InjectConfig::default());
        assert!(response.allowed);
        assert!(response.patch.is_none());
    }
}

#[test]
fn one_init_container_one_memory_volume_read_only_mounts_everywhere() {
    let original = pod(&native());
    let response = mutate(&review(&original), &InjectConfig::default());
    assert!(response.allowed, "{:?}", response.result);
    let patched_json = apply(&original, &response);
    let patched: Pod = serde_json::from_value(patched_json.clone()).unwrap();
    let spec = patched.spec.as_ref().unwrap();

    let volumes = spec.volumes.as_ref().unwrap();
    assert_eq!(volumes.iter().filter(|v| v.name == VOLUME).count(), 1);
    let ours = volumes.iter().find(|v| v.name == VOLUME).unwrap();
    assert_eq!(
        ours.empty_dir.as_ref().unwrap().medium.as_deref(),
        Some("Memory")
    );
    assert!(
        volumes.iter().any(|v| v.name == "data"),
        "the Pod's own volume is kept"
    );

    let inits = spec.init_containers.as_ref().unwrap();
    assert_eq!(inits.len(), 1);
    assert_eq!(inits[0].name, INIT_CONTAINER);
    assert_eq!(
        inits[0].command.as_ref().unwrap(),
        &[
            "keyway",
            "--daemon",
            "never",
            "render",
            "--dir",
            "/keyway/secrets",
            "--mode",
            "0400",
            "api-key=local://team/api",
            "db-password=gcp-sm://my-project/db-password?version=3",
            "github-token=aws-sm://ci/github?version-stage=AWSCURRENT#github_token",
        ]
    );
    let context = inits[0].security_context.as_ref().unwrap();
    assert_eq!(
        (context.run_as_user, context.run_as_non_root),
        (None, None),
        "runs as the Pod's user, so files are the user's"
    );

    for container in &spec.containers {
        let mounts = container.volume_mounts.as_ref().unwrap();
        let mount = mounts.iter().find(|m| m.name == VOLUME).unwrap();
        assert_eq!(mount.read_only, Some(true));
        assert_eq!(mount.mount_path, "/keyway/secrets");
    }
    // Fields the webhook does not touch are preserved.
    assert_eq!(patched_json["spec"]["priorityClassName"], "high");
    assert_eq!(
        patched_json["spec"]["containers"][0]["ports"][0]["containerPort"],
        8265
    );
    assert_eq!(
        patched_json["metadata"]["annotations"]["other.io/keep"],
        "me"
    );
    assert_eq!(
        patched_json["spec"]["containers"][1]["volumeMounts"][0]["name"],
        "data"
    );

    // Idempotent: a second mutation changes nothing.
    let again = mutate(&review(&patched_json), &InjectConfig::default());
    let patch: Value = serde_json::from_slice(again.patch.as_ref().unwrap()).unwrap();
    assert_eq!(patch, json!([]));
}

#[test]
fn owner_mode_and_dir_annotations_shape_the_render_call() {
    let mut annotations = native();
    annotations["keyway.dev/owner"] = json!("2000:3000");
    annotations["keyway.dev/mode"] = json!("0440");
    annotations["keyway.dev/dir"] = json!("/etc/app/secrets");
    let original = pod(&annotations);
    let patched: Pod = serde_json::from_value(apply(
        &original,
        &mutate(&review(&original), &InjectConfig::default()),
    ))
    .unwrap();
    let init = &patched
        .spec
        .as_ref()
        .unwrap()
        .init_containers
        .as_ref()
        .unwrap()[0];
    let command = init.command.as_ref().unwrap().join(" ");
    assert!(
        command.contains("--dir /etc/app/secrets --mode 0440 --uid 2000 --gid 3000"),
        "{command}"
    );
    let context = init.security_context.as_ref().unwrap();
    assert_eq!(context.run_as_user, Some(0));
    let capabilities = context.capabilities.as_ref().unwrap();
    assert_eq!(
        (capabilities.drop.as_deref(), capabilities.add.as_deref()),
        (
            Some(&["ALL".to_owned()][..]),
            Some(&["CHOWN", "DAC_OVERRIDE"].map(str::to_owned)[..])
        ),
        "root, but only with what giving files away and replacing them takes"
    );
    assert_eq!(
        mutate(&review(&original), &InjectConfig::default()).warnings,
        None
    );
}

#[test]
fn a_mode_others_can_read_is_applied_with_a_warning() {
    let mut annotations = native();
    annotations["keyway.dev/mode"] = json!("0644");
    let original = pod(&annotations);
    let response = mutate(&review(&original), &InjectConfig::default());
    assert!(response.allowed, "{:?}", response.result);
    assert_eq!(
        response.warnings.clone().unwrap(),
        [
            "keyway.dev/mode 0644 lets every user in the Pod's containers read the secrets; set keyway.dev/owner \
          to the app's uid:gid and use 0400 (or 0440 for its group)"
        ]
    );
    let patched = apply(&original, &response);
    let init_command = &patched["spec"]["initContainers"][0]["command"];
    assert!(
        init_command.to_string().contains(r#""--mode","0644""#),
        "{init_command}"
    );
}

#[test]
fn bad_annotations_are_denied_with_the_annotation_named() {
    for (key, value, fragment) in [
        (
            "keyway.dev/secret.token",
            "nope://x",
            "annotation keyway.dev/secret.token: ",
        ),
        (
            "keyway.dev/secret.token",
            "aws-sm://",
            "annotation keyway.dev/secret.token: invalid secret reference",
        ),
        (
            "keyway.dev/secret.../x",
            "local://a",
            "annotation keyway.dev/secret.../x: the file name",
        ),
        (
            "keyway.dev/secret.-x",
            "local://a",
            "annotation keyway.dev/secret.-x: the file name must be letters, digits, `-`, `_` or `.`, not starting with `-`",
        ),
        (
            "keyway.dev/template.app.env",
            "A={{ local://a }}\nB={{ local://b",
            "annotation keyway.dev/template.app.env: line 2: `{{ local://b` is not closed; write `{{ local://b }}`",
        ),
        (
            "keyway.dev/template.app.env",
            "\n\nB={{ nope://b }}",
            "annotation keyway.dev/template.app.env: line 3: ",
        ),
        (
            "keyway.dev/template.app.env",
            "A=\0",
            "annotation keyway.dev/template.app.env: a template cannot hold a NUL byte",
        ),
        (
            "keyway.dev/template.api-key",
            "{{ local://a }}",
            "annotations keyway.dev/secret.api-key and keyway.dev/template.api-key name one file",
        ),
        ("keyway.dev/mode", "0200", "annotation keyway.dev/mode"),
        ("keyway.dev/owner", "root", "annotation keyway.dev/owner"),
        ("keyway.dev/dir", "relative", "annotation keyway.dev/dir"),
        (
            "keyway.dev/sekret.x",
            "local://a",
            "unknown annotation keyway.dev/sekret.x",
        ),
        ("keyway.dev/inject", "yes", "annotation keyway.dev/inject"),
        (
            "keyway.dev/limits-memory",
            "lots",
            "annotation keyway.dev/limits-memory: `lots` is not a Kubernetes quantity",
        ),
        (
            "keyway.dev/requests-cpu",
            "1.2.3",
            "is not a Kubernetes quantity",
        ),
        // Kubernetes reads "m" as 0 (apimachinery's parser); "0.1mi" it refuses.
        (
            "keyway.dev/requests-cpu",
            "0.1mi",
            "is not a Kubernetes quantity",
        ),
        (
            "keyway.dev/requests-cpu",
            "-100m",
            "annotation keyway.dev/requests-cpu: `-100m` is negative",
        ),
        (
            "keyway.dev/limits-cpu",
            "2 cores",
            "is not a Kubernetes quantity",
        ),
        (
            "keyway.dev/limits-gpu",
            "1",
            "unknown annotation keyway.dev/limits-gpu",
        ),
    ] {
        let mut annotations = native();
        annotations[key] = json!(value);
        let response = mutate(&review(&pod(&annotations)), &InjectConfig::default());
        assert!(!response.allowed, "{key}={value} was allowed");
        assert!(
            response.result.message.contains(fragment),
            "{key}={value}: {}",
            response.result.message
        );
        assert!(response.patch.is_none());
    }
    let response = mutate(
        &review(&pod(&json!({"keyway.dev/inject": "true"}))),
        &InjectConfig::default(),
    );
    assert!(!response.allowed && response.result.message.contains("no keyway.dev/secret"));
}

#[test]
fn env_requests_wrap_known_commands_in_keyway_exec_and_warn_for_the_rest() {
    let mut annotations = native();
    annotations["keyway.dev/env.GITHUB_TOKEN"] = json!("aws-sm://ci/github#github_token");
    let original = pod(&annotations);
    let response = mutate(&review(&original), &InjectConfig::default());
    assert!(response.allowed, "{:?}", response.result);
    // The sidecar runs its image's ENTRYPOINT: it cannot be wrapped, and the response says so.
    let warnings = response.warnings.clone().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("container `sidecar` has no command")),
        "{warnings:?}"
    );
    let patched_json = apply(&original, &response);
    let patched: Pod = serde_json::from_value(patched_json.clone()).unwrap();
    let spec = patched.spec.unwrap();
    let main = &spec.containers[0];
    assert_eq!(
        main.command.as_ref().unwrap(),
        &[
            "/keyway/bin/keyway",
            "exec",
            "--env",
            "GITHUB_TOKEN=aws-sm://ci/github?version-stage=AWSCURRENT#github_token",
            "--",
            "python",
            "train.py",
        ]
    );
    assert!(
        main.volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.name == "keyway-bin" && m.read_only == Some(true))
    );
    assert!(
        main.env.is_none(),
        "no value and no reference lands in the Pod's env"
    );
    let init = &spec.init_containers.unwrap()[0];
    let command = init.command.as_ref().unwrap().join(" ");
    assert!(command.contains("--install-self /keyway/bin"), "{command}");
    // Idempotent: the wrapped command is not wrapped again.
    let again = mutate(&review(&patched_json), &InjectConfig::default());
    let patch: Value = serde_json::from_slice(again.patch.as_ref().unwrap()).unwrap();
    assert_eq!(patch, json!([]));

    let mut bad = native();
    bad["keyway.dev/env.1BAD"] = json!("local://x");
    assert!(!mutate(&review(&pod(&bad)), &InjectConfig::default()).allowed);
}

#[test]
fn env_restart_wraps_commands_in_keyway_exec_watch_and_needs_an_env_secret() {
    let mut annotations = native();
    annotations["keyway.dev/env.GITHUB_TOKEN"] = json!("aws-sm://ci/github#github_token");
    annotations["keyway.dev/env-restart"] = json!("5m");
    let original = pod(&annotations);
    let response = mutate(&review(&original), &InjectConfig::default());
    assert!(response.allowed, "{:?}", response.result);
    let patched_json = apply(&original, &response);
    let patched: Pod = serde_json::from_value(patched_json.clone()).unwrap();
    let main = &patched.spec.unwrap().containers[0];
    assert_eq!(
        main.command.as_ref().unwrap()[..4],
        ["/keyway/bin/keyway", "exec", "--watch", "5m"]
    );
    let again = mutate(&review(&patched_json), &InjectConfig::default());
    let patch: Value = serde_json::from_slice(again.patch.as_ref().unwrap()).unwrap();
    assert_eq!(patch, json!([]));

    for bad in ["5", "1s", "9s", "soon"] {
        annotations["keyway.dev/env-restart"] = json!(bad);
        assert!(
            !mutate(&review(&pod(&annotations)), &InjectConfig::default()).allowed,
            "{bad}"
        );
    }
    // Files only: nothing to restart for.
    let mut files_only = native();
    files_only["keyway.dev/env-restart"] = json!("5m");
    let denied = mutate(&review(&pod(&files_only)), &InjectConfig::default());
    assert!(!denied.allowed);
    assert!(
        denied
            .result
            .message
            .contains("no keyway.dev/env.<VAR> annotation"),
        "{}",
        denied.result.message
    );
}

/// flyteplugins' `Base32Encoder` (RFC 4648's alphabet with a-z for A-Z and 1-6 for 2-7, no padding); the
/// Python test proves the same encoding against Flyte's own vectors.
fn flyte_annotation(text: &str) -> String {
    data_encoding::BASE32_NOPAD
        .encode(text.as_bytes())
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                char::from(c as u8 - 1)
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

#[test]
fn flyte_pods_get_files_where_flytekit_looks_and_its_variables() {
    let original = json!({
        "metadata": {
            "name": "flyte-task",
            "labels": {"inject-flyte-secrets": "true"},
            "annotations": {
                "flyte.secrets/s0": flyte_annotation(r#"group:"arn:aws:secretsmanager:us-east-1:123456789012:secret" key:"user_secret" mount_requirement:FILE"#),
                "flyte.secrets/s1": flyte_annotation(r#"group:"arn:aws:secretsmanager:us-east-1:123456789012:secret" key:"db_token""#),
                "flyte.secrets/s2": flyte_annotation(r#"group:"arn:aws:secretsmanager:us-east-1:123456789012:secret" key:"api_key" mount_requirement:ENV_VAR"#)
            }
        },
        "spec": {"containers": [{"name": "task", "image": "flytekit", "args": ["pyflyte-execute", "--inputs", "s3://bucket/inputs.pb"],
                                 "env": [{"name": "FLYTE_SECRETS_DEFAULT_DIR", "value": "/etc/secrets"}]}]}
    });
    let config = InjectConfig {
        flyte: Some(keyway_inject::flyte::FlyteBackend::Aws {
            instance: "aws-sm".into(),
        }),
        ..InjectConfig::default()
    };
    // Without Flyte compatibility the Pod is not Keyway's business.
    assert!(
        mutate(&review(&original), &InjectConfig::default())
            .patch
            .is_none()
    );

    let response = mutate(&review(&original), &config);
    assert!(response.allowed, "{:?}", response.result);
    assert_eq!(response.warnings, None);
    let patched_json = apply(&original, &response);
    let patched: Pod = serde_json::from_value(patched_json.clone()).unwrap();
    let spec = patched.spec.unwrap();
    let init = &spec.init_containers.unwrap()[0];
    let command = init.command.as_ref().unwrap();
    assert_eq!(command[5], "/etc/flyte/secrets");
    assert!(command.contains(&"arn:aws:secretsmanager:us-east-1:123456789012:secret/user_secret=aws-sm://arn:aws:secretsmanager:us-east-1:123456789012:secret:user_secret?version-stage=AWSCURRENT".to_owned()), "{command:?}");
    assert!(
        command.contains(&"--install-self".to_owned()),
        "{command:?}"
    );
    let task = &spec.containers[0];
    // The ENV_VAR secret: flytepropeller sets `args` only, so the wrapper becomes `command` and `args` stay.
    assert_eq!(
        task.command.as_ref().unwrap(),
        &[
            "/keyway/bin/keyway",
            "exec",
            "--env",
            "_FSEC_ARN:AWS:SECRETSMANAGER:US-EAST-1:123456789012:SECRET_API_KEY=aws-sm://arn:aws:secretsmanager:us-east-1:123456789012:secret:api_key?version-stage=AWSCURRENT",
            "--"
        ]
    );
    assert_eq!(
        task.args.as_ref().unwrap(),
        &["pyflyte-execute", "--inputs", "s3://bucket/inputs.pb"]
    );
    let env: Vec<(String, String)> = task
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        env,
        [
            (
                "FLYTE_SECRETS_DEFAULT_DIR".to_owned(),
                "/etc/flyte/secrets".to_owned()
            ),
            ("FLYTE_SECRETS_ENV_PREFIX".to_owned(), "_FSEC_".to_owned()),
            ("FLYTE_SECRETS_FILE_PREFIX".to_owned(), String::new()),
        ]
    );
    let again = mutate(&review(&patched_json), &config);
    let patch: Value = serde_json::from_slice(again.patch.as_ref().unwrap()).unwrap();
    assert_eq!(patch, json!([]), "idempotent");

    // A container Keyway cannot wrap (the image's ENTRYPOINT runs) is named in a warning.
    let mut opaque = original.clone();
    opaque["spec"]["containers"][0]["args"] = json!(["--inputs", "s3://bucket/inputs.pb"]);
    let response = mutate(&review(&opaque), &config);
    assert!(response.allowed);
    assert!(
        response.warnings.as_ref().unwrap()[0].contains("container `task` has no command"),
        "{:?}",
        response.warnings
    );

    let mut broken = original.clone();
    broken["metadata"]["annotations"]["flyte.secrets/s0"] = json!("not-base32!");
    let response = mutate(&review(&broken), &config);
    assert!(!response.allowed && response.result.message.contains("flyte.secrets/s0"));
}

fn k8s_mapping(fallback: keyway_core::mapping::Fallback) -> keyway_core::mapping::Mapping {
    use keyway_core::mapping::{Cloud, Mapping, MappingRule, Stack};
    use keyway_core::selector::{Mode, Selector};
    let rule = |s: &str, v: &str| MappingRule {
        text: s.to_owned(),
        selector: Selector::parse_with(s, Mode::Anyscale).unwrap(),
        value: v.to_owned(),
    };
    Mapping {
        cloud: Cloud::Aws,
        stack: Stack::K8s,
        rules: vec![
            rule("workload-type in (service)", "anyscale-services"),
            rule(
                "workload-type in (job, workspace),project=analytics",
                "analytics-jobs",
            ),
        ],
        fallback,
    }
}

fn labelled(labels: &Value, service_account: Option<&str>) -> Value {
    let mut pod = pod(&json!({}));
    pod["metadata"]["labels"] = labels.clone();
    if let Some(sa) = service_account {
        pod["spec"]["serviceAccountName"] = json!(sa);
    }
    pod
}

#[test]
fn the_k8s_mapping_chooses_the_service_account() {
    use keyway_core::mapping::Fallback;
    let mut label_names = std::collections::BTreeMap::new();
    label_names.insert(
        "workload-type".to_owned(),
        "anyscale.com/workload-type".to_owned(),
    );
    let config = InjectConfig {
        mapping: Some(k8s_mapping(Fallback::Fail)),
        label_names,
        ..InjectConfig::default()
    };
    let original = labelled(
        &json!({"anyscale.com/workload-type": "job", "project": "analytics"}),
        None,
    );
    let response = mutate(&review(&original), &config);
    assert!(response.allowed, "{:?}", response.result);
    let patched = apply(&original, &response);
    assert_eq!(patched["spec"]["serviceAccountName"], "analytics-jobs");
    assert!(
        patched["spec"].get("initContainers").is_none(),
        "no secrets were asked for"
    );

    // An explicit account that agrees is fine; one that disagrees is denied.
    let agreeing = labelled(
        &json!({"anyscale.com/workload-type": "service"}),
        Some("anyscale-services"),
    );
    assert!(mutate(&review(&agreeing), &config).allowed);
    let disagreeing = labelled(
        &json!({"anyscale.com/workload-type": "service"}),
        Some("admin"),
    );
    let response = mutate(&review(&disagreeing), &config);
    assert!(!response.allowed);
    assert!(
        response.result.message.contains("`admin` disagrees")
            && response.result.message.contains("rule 1")
    );

    // FAIL with no match names the labels and the rules tried.
    let unmatched = labelled(
        &json!({"anyscale.com/workload-type": "job", "project": "web"}),
        None,
    );
    let response = mutate(&review(&unmatched), &config);
    assert!(!response.allowed);
    assert!(
        response
            .result
            .message
            .contains("project=web,workload-type=job"),
        "{}",
        response.result.message
    );
    assert!(
        response
            .result
            .message
            .contains("1. workload-type in (service)")
    );

    // CLOUD_DEFAULT leaves the Pod alone.
    let config = InjectConfig {
        mapping: Some(k8s_mapping(Fallback::CloudDefault)),
        ..InjectConfig::default()
    };
    assert!(mutate(&review(&unmatched), &config).patch.is_none());
}

#[test]
fn templates_go_to_the_init_container_and_the_refresh_sidecar_as_text() {
    let template = "USER={{ local://db#user }}\nreplicas: {{ .Values.replicas }}\n";
    let annotations = json!({
        "keyway.dev/inject": "true",
        "keyway.dev/template.app.env": template,
        "keyway.dev/refresh": "1m"
    });
    let original = pod(&annotations);
    let response = mutate(&review(&original), &InjectConfig::default());
    assert!(response.allowed, "{:?}", response.result);
    let patched = apply(&original, &response);
    for init in [0, 1] {
        let command: Vec<String> =
            serde_json::from_value(patched["spec"]["initContainers"][init]["command"].clone())
                .unwrap();
        assert!(
            command.contains(&format!("--template-text=app.env={template}")),
            "{command:?}"
        );
    }
}

#[test]
fn refresh_adds_a_native_sidecar_after_the_first_render() {
    let mut annotations = native();
    annotations["keyway.dev/refresh"] = json!("5m");
    let original = pod(&annotations);
    let response = mutate(&review(&original), &InjectConfig::default());
    assert!(response.allowed, "{:?}", response.result);
    let patched_json = apply(&original, &response);
    let patched: Pod = serde_json::from_value(patched_json.clone()).unwrap();
    let inits = patched.spec.unwrap().init_containers.unwrap();
    let names: Vec<&str> = inits.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["keyway-render", "keyway-refresh"]);
    assert_eq!(inits[1].restart_policy.as_deref(), Some("Always"));
    assert!(
        inits[0].restart_policy.is_none(),
        "the first render gates the app and exits"
    );
    let command = inits[1].command.as_ref().unwrap().join(" ");
    assert!(command.ends_with("--watch 5m"), "{command}");
    let again = mutate(&review(&patched_json), &InjectConfig::default());
    let patch: Value = serde_json::from_slice(again.patch.as_ref().unwrap()).unwrap();
    assert_eq!(patch, json!([]));
    for bad in ["5", "1s", "9s", "soon"] {
        annotations["keyway.dev/refresh"] = json!(bad);
        assert!(
            !mutate(&review(&pod(&annotations)), &InjectConfig::default()).allowed,
            "{bad}"
        );
    }
    // Intervals read as `keyway render --watch` reads them (humantime), so `1h30m` is admitted too.
    annotations["keyway.dev/refresh"] = json!("1h30m");
    let original = pod(&annotations);
    let patched = apply(
        &original,
        &mutate(&review(&original), &InjectConfig::default()),
    );
    let command = patched["spec"]["initContainers"][1]["command"].clone();
    let command: Vec<String> = serde_json::from_value(command).unwrap();
    assert_eq!(command[command.len() - 2..], ["--watch", "1h 30m"]);
}

/// docs/webhook.md's example Pod is admitted as the page says: one init container renders both files into
/// `/keyway/secrets`, which the app container mounts read-only (its comment: "reads /keyway/secrets/github-token").
#[test]
fn the_docs_example_pod_is_admitted_with_its_files_where_the_docs_say() {
    let page =
        std::fs::read_to_string(keyway_testkit::repo_root().join("docs/webhook.md")).unwrap();
    let example = page
        .split("## Example\n\n```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/webhook.md's example Pod");
    let original: Value = serde_norway::from_str(example).unwrap();
    let response = mutate(&review(&original), &InjectConfig::default());
    assert!(response.allowed, "{:?}", response.result);
    let patched: Pod = serde_json::from_value(apply(&original, &response)).unwrap();
    let spec = patched.spec.unwrap();
    let command = spec.init_containers.unwrap()[0].command.clone().unwrap();
    let dir = command
        .iter()
        .position(|a| a == "--dir")
        .map(|i| command[i + 1].as_str());
    assert_eq!(dir, Some("/keyway/secrets"), "{command:?}");
    assert!(
        command
            .iter()
            .any(|a| a.starts_with("github-token=aws-sm://ci/github")),
        "{command:?}"
    );
    assert!(
        command
            .iter()
            .any(|a| a.starts_with("db-password=gcp-sm://my-project/db-password")),
        "{command:?}"
    );
    let mount = spec.containers[0].volume_mounts.clone().unwrap();
    assert!(
        mount
            .iter()
            .any(|m| m.mount_path == "/keyway/secrets" && m.read_only == Some(true)),
        "{mount:?}"
    );
}

#[test]
fn a_body_that_is_not_a_review_is_named_by_place_never_by_value() {
    let mut review = review_json(&json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "main", "image": "python",
                                 "env": [{"name": "PIN", "value": "s3cret-pin"}]}]}
    }));
    assert!(keyway_inject::read_review(&serde_json::to_vec(&review).unwrap()).is_ok());

    let env = "/request/object/spec/containers/0/env/0/value";
    for (value, what) in [
        (json!(918_273_645), "a value of the wrong type or form"),
        (json!(["s3cret-pin"]), "a value of the wrong type or form"),
        (
            json!({"s3cret-pin": 1}),
            "a value of the wrong type or form",
        ),
    ] {
        *review.pointer_mut(env).unwrap() = value;
        let error = keyway_inject::read_review(&serde_json::to_vec(&review).unwrap()).unwrap_err();
        assert!(
            error.starts_with(&format!(
                "not an AdmissionReview for a Pod: {what} at `request.object.spec.containers[0].env[0].value` (line 1, column"
            )) && !error.contains("918273645")
                && !error.contains("s3cret"),
            "{error}"
        );
    }
    let error = keyway_inject::read_review(b"{\"request\": {\"uid\": \"s3cret\"").unwrap_err();
    assert!(
        error.contains("it ends early") && !error.contains("s3cret"),
        "{error}"
    );
    let error = keyway_inject::read_review(b"{\"request\": s3cret}").unwrap_err();
    assert!(
        error
            .starts_with("not an AdmissionReview for a Pod: not JSON at `request` (line 1, column"),
        "{error}"
    );
    let error = keyway_inject::read_review(br#"{"request": {"uid": "x"}}"#).unwrap_err();
    assert!(
        error.contains("missing field `kind` at `request`"),
        "{error}"
    );
}

#[test]
fn a_pod_that_meets_the_restricted_pod_security_standard_still_meets_it_once_mutated_and_fits_a_quota()
 {
    let mut annotations = native();
    annotations["keyway.dev/env.GITHUB_TOKEN"] = json!("aws-sm://ci/github#github_token");
    annotations["keyway.dev/refresh"] = json!("5m");
    let mut original = pod(&annotations);
    original["spec"]["securityContext"] = json!({
        "runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}
    });
    for container in original["spec"]["containers"].as_array_mut().unwrap() {
        container["securityContext"] =
            json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
    }
    assert_eq!(
        restricted_violations(&original["spec"]),
        Vec::<String>::new()
    );
    let mutated = apply(
        &original,
        &mutate(&review(&original), &InjectConfig::default()),
    );
    let inits: Vec<&str> = mutated["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        inits.len(),
        2,
        "the init container and the refresh sidecar: {inits:?}"
    );
    assert_eq!(
        restricted_violations(&mutated["spec"]),
        Vec::<String>::new()
    );
    // Each declares requests and limits, which a namespace's ResourceQuota on CPU and memory requires; the
    // Pod's annotations replace the defaults.
    for init in mutated["spec"]["initContainers"].as_array().unwrap() {
        assert_eq!(
            init["resources"],
            json!({"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}})
        );
    }
    let mut sized = original.clone();
    sized["metadata"]["annotations"]["keyway.dev/requests-cpu"] = json!("0.1");
    sized["metadata"]["annotations"]["keyway.dev/limits-memory"] = json!("64Mi");
    let mutated = apply(&sized, &mutate(&review(&sized), &InjectConfig::default()));
    for init in mutated["spec"]["initContainers"].as_array().unwrap() {
        assert_eq!(
            init["resources"],
            json!({"requests": {"cpu": "0.1", "memory": "32Mi"}, "limits": {"cpu": "500m", "memory": "64Mi"}})
        );
    }

    // `keyway.dev/owner` needs root and capabilities, which only `baseline` allows: the checker sees it.
    annotations["keyway.dev/owner"] = json!("2000:3000");
    let owned = pod(&annotations);
    let mut owned_restricted = original.clone();
    owned_restricted["metadata"] = owned["metadata"].clone();
    let mutated = apply(
        &owned_restricted,
        &mutate(&review(&owned_restricted), &InjectConfig::default()),
    );
    let violations = restricted_violations(&mutated["spec"]);
    assert!(
        violations.iter().any(|v| v.contains("runAsUser = 0"))
            && violations
                .iter()
                .any(|v| v.contains("adds capability \"CHOWN\"")),
        "{violations:?}"
    );
}
