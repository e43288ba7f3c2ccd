//! The Kubernetes Secrets provider against the testkit's API server stand-in (proven with the official Python
//! client): a key's decoded value, binary keys, a missing key listing the keys there are, the RBAC message when the
//! identity may not read, a token file re-read, listings.

use std::sync::Arc;
use std::time::Duration;

use keyway_core::{CachePolicy, Encoding, ErrorKind, ListFilter, Provider};
use keyway_providers::k8s::{K8sProvider, K8sSettings};
use keyway_testkit::K8sApi;

use super::{get, resolver, text};

fn provider(api: &K8sApi, token_file: &std::path::Path, namespace: &str) -> K8sProvider {
    K8sProvider::new(K8sSettings {
        namespace: Some(namespace.into()),
        api_server: Some(api.endpoint.clone()),
        token_file: Some(token_file.to_owned()),
        timeout: Duration::from_secs(5),
        ..K8sSettings::default()
    })
}

fn token(dir: &tempfile::TempDir, value: &str) -> std::path::PathBuf {
    let file = dir.path().join("token");
    std::fs::write(&file, value).unwrap();
    file
}

#[tokio::test]
async fn a_key_of_a_secret_is_its_decoded_value() {
    let api = K8sApi::start();
    let dir = tempfile::tempdir().unwrap();
    api.put_secret(
        "ml",
        "github",
        &[
            ("token", b"ghp_1"),
            ("keystore", &[0, 255, 7]),
            ("config", br#"{"user":"ci"}"#),
        ],
    );
    api.put_secret("other", "db", &[("password", b"pw")]);
    let r = resolver(
        "k8s",
        Arc::new(provider(&api, &token(&dir, "admin"), "ml")),
        CachePolicy::default(),
    );
    let value = get(&r, "k8s://ml/github#token").await.unwrap();
    assert_eq!(text(&value), "ghp_1");
    assert_eq!(value.secret.meta.name, "ml/github");
    assert!(!value.secret.meta.version_id.is_empty(), "resourceVersion");
    let binary = get(&r, "k8s://ml/github#keystore").await.unwrap();
    assert_eq!(
        (binary.secret.value.expose(), binary.secret.encoding),
        (&[0u8, 255, 7][..], Encoding::Binary)
    );
    assert_eq!(
        text(&get(&r, "k8s://ml/github#/config/user").await.unwrap()),
        "ci"
    );
    assert_eq!(api.gets(), 1, "every key of one Secret is one read");
    // Without a namespace: the instance's.
    assert_eq!(text(&get(&r, "k8s://github#token").await.unwrap()), "ghp_1");
    assert_eq!(
        text(&get(&r, "k8s://other/db#password").await.unwrap()),
        "pw"
    );
    let missing_key = get(&r, "k8s://ml/github#tokn").await.unwrap_err();
    assert_eq!(missing_key.kind(), ErrorKind::NotFound);
    assert!(
        missing_key
            .to_string()
            .contains("fields present: config, keystore, token"),
        "{missing_key}"
    );
    let whole = get(&r, "k8s://ml/github").await.unwrap_err();
    assert_eq!(whole.kind(), ErrorKind::Invalid);
    assert!(
        whole
            .to_string()
            .contains("holds several keys (config, keystore, token); name one"),
        "{whole}"
    );
    let missing = get(&r, "k8s://ml/nope#token").await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert!(
        missing.to_string().contains(r#"secrets "nope" not found"#),
        "{missing}"
    );
}

#[tokio::test]
async fn a_forbidden_read_names_the_rbac_rule_and_a_new_token_file_is_used() {
    let api = K8sApi::start();
    let dir = tempfile::tempdir().unwrap();
    api.put_secret("ml", "github", &[("token", b"ghp_1")]);
    api.add_token("sa-token", "system:serviceaccount:ml:trainer");
    let file = token(&dir, "sa-token");
    let p = provider(&api, &file, "ml");
    let r = resolver(
        "k8s",
        Arc::new(p),
        CachePolicy {
            ttl: keyway_core::Ttl::Bypass,
            ..CachePolicy::default()
        },
    );
    let denied = get(&r, "k8s://ml/github#token").await.unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::PermissionDenied);
    let message = denied.to_string();
    assert!(
        message
            .contains(r#"User "system:serviceaccount:ml:trainer" cannot get resource "secrets""#),
        "{message}"
    );
    assert!(
        message.contains("grant the identity `get` on `secrets` in namespace ml"),
        "{message}"
    );
    api.grant("system:serviceaccount:ml:trainer", "get", "ml");
    assert_eq!(
        text(&get(&r, "k8s://ml/github#token").await.unwrap()),
        "ghp_1"
    );
}

#[tokio::test]
async fn listings_name_the_secrets_of_a_namespace_across_pages() {
    let api = K8sApi::start();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..7 {
        api.put_secret("ml", &format!("s{i}"), &[("k", b"v")]);
    }
    api.put_secret("other", "elsewhere", &[("k", b"v")]);
    let p = provider(&api, &token(&dir, "admin"), "ml");
    assert_eq!(
        p.list(None).await.unwrap(),
        ["s0", "s1", "s2", "s3", "s4", "s5", "s6"]
    );
    assert_eq!(
        p.list(Some(&ListFilter::Prefix("other/".into())))
            .await
            .unwrap(),
        ["other/elsewhere"]
    );
    assert_eq!(
        p.list(Some(&ListFilter::Prefix("s1".into())))
            .await
            .unwrap(),
        ["s1"]
    );
}
