//! Hostile input (`docs/security.md`): Flyte's base32 text-proto annotations and whole AdmissionReviews built
//! from the webhook's own vocabulary and junk. The mutation never panics; an allowed Pod's patch applies and
//! parses back as a Pod, and mutating that Pod again changes nothing. A review with a value of any type put
//! anywhere, or cut short, is refused without the value in the error. `KEYWAY_FUZZ_CASES` cases per strategy
//! (default 2,000).

use k8s_openapi::api::core::v1::Pod;
use keyway_inject::{InjectConfig, flyte, mutate};
use proptest::prelude::*;
use serde_json::{Value, json};

fn cases() -> u32 {
    std::env::var("KEYWAY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn text_proto() -> impl Strategy<Value = String> {
    let field = prop::sample::select(vec![
        "group",
        "group_version",
        "key",
        "mount_requirement",
        "env_var",
        "bogus",
        "",
    ]);
    let value = prop::sample::select(vec![
        "\"arn:aws:secretsmanager:us-east-1:1:secret\"",
        "\"db\"",
        "\"\"",
        "ENV_VAR",
        "FILE",
        "ANY",
        "7",
        "\"a\\\"b\"",
        "\"\\x41\\101\"",
        "'x'",
        "\"unterminated",
        "{",
        "}",
        "\"../..\"",
        "-1",
    ]);
    prop_oneof![
        prop::collection::vec(
            (field, prop::sample::select(vec![":", " : ", ""]), value),
            0..6
        )
        .prop_map(|parts| parts
            .into_iter()
            .map(|(f, c, v)| format!("{f}{c}{v}"))
            .collect::<Vec<_>>()
            .join(" ")),
        "[ -~]{0,60}",
    ]
}

fn annotation_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "true",
            "false",
            "TRUE",
            "aws-sm://ci/github#github_token",
            "gcp-sm://p/s?version=3",
            "local://team/db",
            "nope://x",
            "aws-sm://",
            "0400",
            "0777",
            "0000",
            "1000:1000",
            "x:y",
            "/keyway/s",
            "relative",
            "/a/../b",
            "30s",
            "5m",
            "1s",
            "100m",
            "64Mi",
            "0.5",
            "",
            "\u{0}",
            "A={{ local://team/db }}\nB={{ .Values.b }}",
            "{{ aws-sm://x",
            "{{ nope://x }}",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,40}",
    ]
}

fn annotations() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "keyway.dev/inject",
            "keyway.dev/mode",
            "keyway.dev/owner",
            "keyway.dev/dir",
            "keyway.dev/refresh",
            "keyway.dev/env-restart",
            "keyway.dev/requests-cpu",
            "keyway.dev/limits-memory",
            "keyway.dev/unknown",
            "other.io/keep",
        ])
        .prop_map(str::to_owned),
        "keyway\\.dev/secret\\.[a-z0-9._/-]{0,12}",
        "keyway\\.dev/env\\.[A-Za-z0-9_]{0,8}",
        "keyway\\.dev/template\\.[a-z0-9._/-]{0,12}",
    ];
    prop::collection::btree_map(key, annotation_value(), 0..8).prop_map(|m| json!(m))
}

fn pod() -> impl Strategy<Value = Value> {
    let container = (any::<bool>(), any::<bool>()).prop_map(|(command, args)| {
        let mut c = json!({"name": "main", "image": "python:3.11"});
        if command {
            c["command"] = json!(["python", "train.py"]);
        }
        if args {
            c["args"] = json!(["pyflyte-execute", "--inputs", "x"]);
        }
        c
    });
    let flyte = prop::collection::vec(text_proto(), 0..3);
    (annotations(), container, any::<bool>(), flyte, any::<bool>()).prop_map(
        |(mut annotations, container, flyte_label, flyte, run_as)| {
            for (i, text) in flyte.into_iter().enumerate() {
                let encoded = data_encoding::BASE32_NOPAD.encode(text.as_bytes());
                annotations[format!("flyte.secrets/s{i}")] = json!(encoded);
            }
            let mut pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "annotations": annotations,
                             "labels": if flyte_label { json!({"inject-flyte-secrets": "true"}) } else { json!({}) }},
                "spec": {"containers": [container]}
            });
            if run_as {
                pod["spec"]["securityContext"] = json!({"runAsUser": 1000, "fsGroup": 1000});
            }
            pod
        },
    )
}

fn review_json(pod: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE", "userInfo": {}, "object": pod
        }
    })
}

fn review(pod: &Value) -> kube_core::admission::AdmissionRequest<Pod> {
    let review: kube_core::admission::AdmissionReview<Pod> =
        serde_json::from_value(review_json(pod)).unwrap();
    review.try_into().unwrap()
}

/// Every JSON pointer in `value`, the root's included.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                pointers(
                    child,
                    format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// A value that holds `canary` (in values only: keys are named in errors by design).
fn planted(canary: &str, shape: u8) -> Value {
    let number: u64 = canary
        .bytes()
        .fold(7, |n, b| n.wrapping_mul(31).wrapping_add(u64::from(b)));
    match shape % 6 {
        0 => json!(canary),
        1 => json!(number % 1_000_000_000_000 + 1_000_000_000_000),
        2 => json!([canary]),
        3 => json!({"name": canary, "value": canary}),
        4 => json!([{"name": "X", "value": number}]),
        _ => json!(-(i64::try_from(number % 1_000_000_000).unwrap() + 1_000_000_000)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// `read_review` (the webhook and `--review`) names where a body is wrong, never what it held there.
    #[test]
    fn review_errors_never_hold_the_value_that_broke_them(
        pod in pod(),
        canary in "CANARY[a-z]{8}",
        place in any::<prop::sample::Index>(),
        shape in any::<u8>(),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut review = review_json(&pod);
        let mut all = Vec::new();
        pointers(&review, String::new(), &mut all);
        let target = place.get(&all).clone();
        let value = planted(&canary, shape);
        let shown: Vec<String> = match &value {
            Value::Number(n) => vec![n.to_string()],
            _ => vec![canary.clone()],
        };
        match review.pointer_mut(&target) {
            Some(slot) => *slot = value,
            None => prop_assume!(false),
        }
        let mut body = serde_json::to_vec(&review).unwrap();
        if truncate {
            body.truncate(cut.index(body.len()));
        }
        if let Err(error) = keyway_inject::read_review(&body) {
            prop_assert!(error.starts_with("not an AdmissionReview for a Pod: "), "{}", error);
            for text in &shown {
                prop_assert!(!error.contains(text.as_str()), "{} at {}: {}", text, target, error);
            }
        }
    }

    #[test]
    fn flyte_annotations_never_panic(text in text_proto(), raw in "[A-Z2-7=a-z!]{0,40}") {
        // flyteplugins' alphabet: RFC 4648's with a-z for A-Z and 1-6 for 2-7, so the text reader sees the text.
        let encoded: String = data_encoding::BASE32_NOPAD
            .encode(text.as_bytes())
            .chars()
            .map(|c| if c.is_ascii_digit() { char::from(c as u8 - 1) } else { c.to_ascii_lowercase() })
            .collect();
        let _ = flyte::decode("flyte.secrets/s0", &encoded);
        let _ = flyte::decode("flyte.secrets/s0", &raw);
    }

    /// Allowed Pods get a patch that applies and yields a valid Pod, and a second mutation is empty.
    #[test]
    fn admission_reviews_never_panic_and_patches_are_idempotent(pod in pod()) {
        let config = InjectConfig {
            flyte: Some(flyte::FlyteBackend::Aws { instance: "aws-sm".into() }),
            ..InjectConfig::default()
        };
        let response = mutate(&review(&pod), &config);
        if let (true, Some(patch)) = (response.allowed, response.patch.as_ref()) {
            let patch: json_patch::Patch = serde_json::from_slice(patch).unwrap();
            let mut patched = pod.clone();
            json_patch::patch(&mut patched, &patch).unwrap();
            let typed: Pod = serde_json::from_value(patched.clone()).unwrap();
            prop_assert!(typed.spec.is_some());
            let again = mutate(&review(&patched), &config);
            prop_assert!(again.allowed, "{:?}", again.result);
            let empty: Value = serde_json::from_slice(again.patch.as_deref().unwrap_or(b"[]")).unwrap();
            prop_assert_eq!(empty, json!([]));
        } else if !response.allowed {
            prop_assert!(!response.result.message.is_empty());
        }
    }
}
