//! The Key Vault provider against the testkit's emulator (proven with Microsoft's Python client): the challenge
//! dance, the latest version and a given one, JSON fields, Key Vault's errors as kinds, listings.

use std::sync::Arc;
use std::time::Duration;

use keyway_core::{CachePolicy, ErrorKind, ListFilter, Provider, Ttl};
use keyway_providers::azure::{AzureConfig, AzureCredentials, AzureProvider};
use keyway_testkit::AzureKv;

use super::{get, resolver, text};

fn provider(vault: &AzureKv, dir: &tempfile::TempDir, token: &str) -> AzureProvider {
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    AzureProvider::new(
        AzureConfig {
            endpoint: Some(vault.endpoint.clone()),
            credentials: AzureCredentials::TokenFile,
            token_file: Some(token_file),
            ca_file: Some(vault.ca_file.clone()),
            verify_challenge_resource: Some(false),
            vault: Some("kv1".into()),
            ..AzureConfig::default()
        }
        .settings(Duration::from_secs(5)),
    )
}

#[tokio::test]
async fn secrets_read_at_the_latest_version_or_a_given_one() {
    let vault = AzureKv::start();
    let dir = tempfile::tempdir().unwrap();
    let first = vault.put_secret("db-password", "one");
    let second = vault.put_secret("db-password", r#"{"user":"app","password":"two"}"#);
    let r = resolver(
        "azure-kv",
        Arc::new(provider(&vault, &dir, "token")),
        CachePolicy::default(),
    );
    let latest = get(&r, "azure-kv://kv1/db-password#password")
        .await
        .unwrap();
    assert_eq!(text(&latest), "two");
    assert_eq!(latest.secret.meta.version_id, second);
    assert_eq!(
        latest.secret.meta.name,
        format!("{}/secrets/db-password", vault.endpoint)
    );
    assert!(latest.secret.meta.created.is_some());
    assert_eq!(
        text(
            &get(&r, &format!("azure-kv://kv1/db-password?version={first}"))
                .await
                .unwrap()
        ),
        "one"
    );
    let missing = get(&r, "azure-kv://kv1/nope").await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert!(
        missing.to_string().contains("A secret with (name/id) nope"),
        "{missing}"
    );
}

#[tokio::test]
async fn key_vaults_refusals_are_kinds_with_its_own_words() {
    let vault = AzureKv::start();
    let dir = tempfile::tempdir().unwrap();
    vault.put_secret("api", "v");
    vault.deny("keyway", "api");
    let p = provider(&vault, &dir, "token");
    let r = resolver(
        "azure-kv",
        Arc::new(p),
        CachePolicy {
            ttl: Ttl::Bypass,
            ..CachePolicy::default()
        },
    );
    let denied = get(&r, "azure-kv://kv1/api").await.unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::PermissionDenied);
    assert!(
        denied
            .to_string()
            .contains("does not have secrets get permission"),
        "{denied}"
    );
    assert!(
        denied.to_string().contains("Key Vault Secrets User"),
        "{denied}"
    );
    vault.put_secret("other", "v");
    vault.fail_next(1, 429);
    let throttled = get(&r, "azure-kv://kv1/other").await.unwrap_err();
    assert_eq!(throttled.kind(), ErrorKind::Throttled, "{throttled}");
    assert_eq!(text(&get(&r, "azure-kv://kv1/other").await.unwrap()), "v");
    let stranger = resolver(
        "azure-kv",
        Arc::new(provider(&vault, &dir, "unknown-token")),
        CachePolicy::default(),
    );
    let refused = get(&stranger, "azure-kv://kv1/other").await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::PermissionDenied, "{refused}");
}

#[tokio::test]
async fn listings_follow_every_page() {
    let vault = AzureKv::start();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..30 {
        vault.put_secret(&format!("s{i:02}"), "v");
    }
    let p = provider(&vault, &dir, "token");
    let every = p.list(None).await.unwrap();
    assert_eq!(every.len(), 30);
    assert_eq!(every[0], "kv1/s00");
    assert_eq!(
        p.list(Some(&ListFilter::Prefix("kv1/s1".into())))
            .await
            .unwrap()
            .len(),
        10
    );
}
