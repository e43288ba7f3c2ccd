//! The added containers' resources: quantities as Kubernetes' own parser reads them, proven on apimachinery's
//! test vectors, and the order in which a Pod's annotations, the webhook's flags and the defaults apply.

use keyway_inject::resources::{Resources, parse_quantity};
use keyway_inject::{InjectConfig, mutate};
use serde_json::{Value, json};

use crate::{apply, native, pod, review};

/// `tests/it/data/k8s_quantities.json`: every string apimachinery's `quantity_test.go` expects
/// `ParseQuantity` to accept or refuse (its source, commit and tests named in the file).
fn vectors() -> Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/data/k8s_quantities.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn strings<'a>(vectors: &'a Value, key: &str) -> Vec<&'a str> {
    vectors[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn quantities_parse_as_apimachinerys_own_tests_expect() {
    let vectors = vectors();
    let accepted = strings(&vectors, "accepted");
    let rejected = strings(&vectors, "rejected");
    assert!(
        accepted.len() > 300 && rejected.len() > 10,
        "the vectors file is whole"
    );
    let wrongly_refused: Vec<_> = accepted
        .iter()
        .filter(|q| parse_quantity(q).is_err())
        .collect();
    assert_eq!(wrongly_refused, Vec::<&&str>::new());
    let wrongly_taken: Vec<_> = rejected
        .iter()
        .filter(|q| parse_quantity(q).is_ok())
        .collect();
    assert_eq!(wrongly_taken, Vec::<&&str>::new());
}

#[test]
fn negative_amounts_are_refused_though_they_parse() {
    let mut resources = Resources::default();
    for ok in ["129e6", "+1", "1.5Gi", "-0", "0.", "1E"] {
        resources.set("limits", "memory", ok).unwrap();
    }
    for negative in ["-1", "-0.5", "-1Mi", "-.1"] {
        let error = resources.set("limits", "memory", negative).unwrap_err();
        assert!(error.contains("is negative"), "{negative}: {error}");
    }
    let error = resources.set("limits", "disk", "1").unwrap_err();
    assert!(error.contains("not one of requests.cpu"), "{error}");
    let error = resources.set("requests", "cpu", "1.2.3").unwrap_err();
    assert!(
        error.starts_with("`1.2.3` is not a Kubernetes quantity"),
        "{error}"
    );
}

#[test]
fn a_pods_annotation_wins_over_the_webhooks_flag_which_wins_over_the_default() {
    let mut config = InjectConfig::default();
    config.resources.set("limits", "cpu", "200m").unwrap();
    config.resources.set("requests", "memory", "48Mi").unwrap();
    let mut annotations = native();
    annotations["keyway.dev/requests-memory"] = json!("129e6");
    let original = pod(&annotations);
    let response = mutate(&review(&original), &config);
    assert!(response.allowed, "{:?}", response.result);
    let mutated = apply(&original, &response);
    assert_eq!(
        mutated["spec"]["initContainers"][0]["resources"],
        json!({"requests": {"cpu": "10m", "memory": "129e6"}, "limits": {"cpu": "200m", "memory": "128Mi"}})
    );
    annotations["keyway.dev/limits-cpu"] = json!("-1");
    let response = mutate(&review(&pod(&annotations)), &config);
    assert!(!response.allowed);
    assert!(
        response
            .result
            .message
            .contains("annotation keyway.dev/limits-cpu: `-1` is negative"),
        "{}",
        response.result.message
    );
}
