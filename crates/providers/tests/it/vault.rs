//! The Vault provider against a real OpenBao dev server (Vault's API): KV v1 and v2, versions, deleted and
//! destroyed versions, nested mounts, listings, namespaces, and every way in: a token file (re-read when it
//! changes), AppRole (with renewal and a new login past the token's max TTL), JWT with a key the test makes,
//! Kubernetes auth (TokenReview answered by the testkit's API server stand-in).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyway_core::reference::Target;
use keyway_core::{CachePolicy, ErrorKind, ListFilter, Provider, Ttl};
use keyway_providers::vault::{VaultAuth, VaultProvider, VaultSettings};
use keyway_testkit::{Bao, K8sApi};
use serde_json::json;

use super::{get, resolver, text};

fn settings(bao: &Bao, auth: VaultAuth) -> VaultSettings {
    VaultSettings {
        address: Some(bao.address.clone()),
        namespace: None,
        ca_file: None,
        kv_version: None,
        auth,
        timeout: Duration::from_secs(5),
    }
}

fn token_file(dir: &Path, token: &str) -> VaultAuth {
    let file = dir.join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    VaultAuth::Token { file: Some(file) }
}

fn target(path: &str, version: Option<u64>) -> Target {
    Target::Vault {
        path: path.into(),
        version,
    }
}

/// A resolver that asks the server every time (TTL 0), so each read goes to Vault.
fn uncached(provider: VaultProvider) -> keyway_core::Resolver {
    resolver(
        "vault",
        Arc::new(provider),
        CachePolicy {
            ttl: Ttl::Bypass,
            ..CachePolicy::default()
        },
    )
}

/// `secret/app/db` (KV v2) holding `{"password": "p"}`, and the policy `app` that may read `secret/app/*`.
fn app_secret(bao: &Bao) {
    bao.put("secret", "app/db", json!({"password": "p"}));
    bao.policy(
        "app",
        r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
    );
}

#[tokio::test]
async fn kv2_versions_fields_and_metadata_read_as_written() {
    let bao = Bao::start();
    let dir = tempfile::tempdir().unwrap();
    bao.put(
        "secret",
        "ci/github",
        json!({"token": "ghp_1", "user": "ci"}),
    );
    bao.put(
        "secret",
        "ci/github",
        json!({"token": "ghp_2", "user": "ci"}),
    );
    let r = uncached(VaultProvider::new(settings(
        &bao,
        token_file(dir.path(), "root"),
    )));
    let latest = get(&r, "vault://secret/ci/github#token").await.unwrap();
    assert_eq!(text(&latest), "ghp_2");
    assert_eq!(latest.secret.meta.version_id, "2");
    assert_eq!(latest.secret.meta.name, "secret/ci/github");
    let created = latest.secret.meta.created.expect("created_time");
    assert!(created.elapsed().unwrap() < Duration::from_mins(1));
    assert_eq!(
        text(
            &get(&r, "vault://secret/ci/github?version=1#token")
                .await
                .unwrap()
        ),
        "ghp_1"
    );
    let whole = text(&get(&r, "vault://secret/ci/github").await.unwrap());
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&whole).unwrap(),
        json!({"token": "ghp_2", "user": "ci"})
    );
    let missing = get(&r, "vault://secret/ci/gitlab").await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert!(
        missing
            .to_string()
            .contains("vault://secret/ci/gitlab does not exist"),
        "{missing}"
    );
    let no_version = get(&r, "vault://secret/ci/github?version=9")
        .await
        .unwrap_err();
    assert_eq!(no_version.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn deleted_and_destroyed_versions_are_not_found_and_say_which() {
    let bao = Bao::start();
    let dir = tempfile::tempdir().unwrap();
    for value in ["a", "b", "c"] {
        bao.put("secret", "app/db", json!({"password": value}));
    }
    bao.ok("POST", "secret/delete/app/db", json!({"versions": [1]}));
    bao.ok("POST", "secret/destroy/app/db", json!({"versions": [2]}));
    let provider = VaultProvider::new(settings(&bao, token_file(dir.path(), "root")));
    let deleted = provider
        .fetch(&target("secret/app/db", Some(1)))
        .await
        .unwrap_err();
    assert_eq!(deleted.kind(), ErrorKind::NotFound);
    assert!(
        deleted.to_string().contains("version 1 was deleted at"),
        "{deleted}"
    );
    assert!(
        deleted
            .to_string()
            .contains("vault kv undelete -versions=1"),
        "{deleted}"
    );
    let destroyed = provider
        .fetch(&target("secret/app/db", Some(2)))
        .await
        .unwrap_err();
    assert!(
        destroyed.to_string().contains("version 2 was destroyed"),
        "{destroyed}"
    );
    let live = provider
        .fetch(&target("secret/app/db", Some(3)))
        .await
        .unwrap();
    assert_eq!(live.value.expose(), br#"{"password":"c"}"#);
    // The latest is deleted too: Vault does not fall back to an older version, and neither does Keyway.
    bao.ok("DELETE", "secret/data/app/db", serde_json::Value::Null);
    let latest = provider
        .fetch(&target("secret/app/db", None))
        .await
        .unwrap_err();
    assert!(
        latest.to_string().contains("version 3 was deleted"),
        "{latest}"
    );
}

#[tokio::test]
async fn kv1_and_nested_mounts_are_found_by_asking_the_server() {
    let bao = Bao::start();
    let dir = tempfile::tempdir().unwrap();
    bao.enable_kv("kv1", 1);
    bao.ok("POST", "kv1/app/db", json!({"password": "v1-pw"}));
    bao.enable_kv("team/kv", 2);
    bao.put("team/kv", "app/db", json!({"password": "nested-pw"}));
    let r = uncached(VaultProvider::new(settings(
        &bao,
        token_file(dir.path(), "root"),
    )));
    let v1 = get(&r, "vault://kv1/app/db#password").await.unwrap();
    assert_eq!(text(&v1), "v1-pw");
    assert_eq!(v1.secret.meta.version_id, "", "KV v1 keeps no versions");
    assert_eq!(
        text(&get(&r, "vault://team/kv/app/db#password").await.unwrap()),
        "nested-pw"
    );
    let versioned = get(&r, "vault://kv1/app/db?version=1").await.unwrap_err();
    assert_eq!(versioned.kind(), ErrorKind::Invalid);
    assert!(
        versioned
            .to_string()
            .contains("KV v1, which keeps no versions"),
        "{versioned}"
    );
    bao.ok("POST", "sys/mounts/transit", json!({"type": "transit"}));
    let not_kv = get(&r, "vault://transit/keys/x").await.unwrap_err();
    assert!(not_kv.to_string().contains("not a KV engine"), "{not_kv}");
}

#[tokio::test]
async fn listings_walk_folders_under_a_prefix_or_every_kv_mount() {
    let bao = Bao::start();
    let dir = tempfile::tempdir().unwrap();
    for path in ["ci/github", "ci/gitlab", "ci/deep/token", "prod/db"] {
        bao.put("secret", path, json!({"v": "x"}));
    }
    bao.enable_kv("kv1", 1);
    bao.ok("POST", "kv1/app/one", json!({"v": "x"}));
    let provider = VaultProvider::new(settings(&bao, token_file(dir.path(), "root")));
    let under = provider
        .list(Some(&ListFilter::Prefix("secret/ci/".into())))
        .await
        .unwrap();
    assert_eq!(
        under,
        [
            "secret/ci/deep/token",
            "secret/ci/github",
            "secret/ci/gitlab"
        ]
    );
    let started = provider
        .list(Some(&ListFilter::Prefix("secret/ci/git".into())))
        .await
        .unwrap();
    assert_eq!(started, ["secret/ci/github", "secret/ci/gitlab"]);
    let every = provider.list(None).await.unwrap();
    assert_eq!(
        every,
        [
            "kv1/app/one",
            "secret/ci/deep/token",
            "secret/ci/github",
            "secret/ci/gitlab",
            "secret/prod/db"
        ]
    );
}

#[tokio::test]
async fn a_token_policy_that_lacks_read_is_named_with_the_path_it_needs() {
    let bao = Bao::start();
    let dir = tempfile::tempdir().unwrap();
    bao.put("secret", "app/db", json!({"password": "p"}));
    bao.put("secret", "other/db", json!({"password": "q"}));
    bao.policy(
        "app",
        r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
    );
    let token = bao.token(&["app"], "1h");
    let r = uncached(VaultProvider::new(settings(
        &bao,
        token_file(dir.path(), &token),
    )));
    assert_eq!(
        text(&get(&r, "vault://secret/app/db#password").await.unwrap()),
        "p"
    );
    let denied = get(&r, "vault://secret/other/db").await.unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::PermissionDenied);
    assert!(
        denied
            .to_string()
            .contains("the token's policies need `read` on `secret/data/other/db`"),
        "{denied}"
    );
}

#[tokio::test]
async fn a_token_file_is_read_again_when_it_changes() {
    let bao = Bao::start();
    let dir = tempfile::tempdir().unwrap();
    app_secret(&bao);
    let first = bao.token(&["app"], "1h");
    let auth = token_file(dir.path(), &first);
    let r = uncached(VaultProvider::new(settings(&bao, auth)));
    assert_eq!(
        text(&get(&r, "vault://secret/app/db#password").await.unwrap()),
        "p"
    );
    // The first token is revoked and a new one written, as an agent rotating the file would.
    bao.ok("POST", "auth/token/revoke", json!({"token": first}));
    std::thread::sleep(Duration::from_millis(20));
    let second = bao.token(&["app"], "1h");
    std::fs::write(dir.path().join("token"), &second).unwrap();
    assert_eq!(
        text(&get(&r, "vault://secret/app/db#password").await.unwrap()),
        "p"
    );
}

#[tokio::test]
async fn approle_logs_in_renews_and_logs_in_again_past_the_max_ttl() {
    let bao = Bao::start();
    let dir = tempfile::tempdir().unwrap();
    app_secret(&bao);
    bao.ok("POST", "sys/auth/approle", json!({"type": "approle"}));
    bao.ok(
        "POST",
        "auth/approle/role/keyway",
        json!({"token_policies": ["app"], "token_ttl": "3s", "token_max_ttl": "6s"}),
    );
    let role_id = bao.ok(
        "GET",
        "auth/approle/role/keyway/role-id",
        serde_json::Value::Null,
    )["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_id =
        bao.ok("POST", "auth/approle/role/keyway/secret-id", json!({}))["data"]["secret_id"]
            .as_str()
            .unwrap()
            .to_owned();
    let secret_id_file = dir.path().join("secret-id");
    std::fs::write(&secret_id_file, secret_id).unwrap();
    let r = uncached(VaultProvider::new(settings(
        &bao,
        VaultAuth::AppRole {
            mount: "approle".into(),
            role_id,
            secret_id_file,
        },
    )));
    // Reads for 9 s, past two token lifetimes and the max TTL: each read is served.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(9) {
        assert_eq!(
            text(&get(&r, "vault://secret/app/db#password").await.unwrap()),
            "p"
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
}

/// A compact JWS signed with `key` (ES256).
fn es256_jwt(key: &rcgen::KeyPair, claims: &serde_json::Value) -> String {
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let b64 = |bytes: &[u8]| data_encoding::BASE64URL_NOPAD.encode(bytes);
    let signing_input = format!(
        "{}.{}",
        b64(br#"{"alg":"ES256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    let rng = ring::rand::SystemRandom::new();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der(), &rng)
            .unwrap();
    let signature = pair.sign(&rng, signing_input.as_bytes()).unwrap();
    format!("{signing_input}.{}", b64(signature.as_ref()))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn jwt_auth_logs_in_with_a_token_signed_by_the_configured_key() {
    let bao = Bao::start();
    let dir = tempfile::tempdir().unwrap();
    app_secret(&bao);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    bao.ok("POST", "sys/auth/jwt", json!({"type": "jwt"}));
    bao.ok(
        "POST",
        "auth/jwt/config",
        json!({"jwt_validation_pubkeys": [key.public_key_pem()], "bound_issuer": "https://ci.test"}),
    );
    bao.ok(
        "POST",
        "auth/jwt/role/ci",
        json!({"role_type": "jwt", "bound_audiences": ["keyway"], "user_claim": "sub", "token_policies": ["app"]}),
    );
    let now = now_secs();
    let jwt = es256_jwt(
        &key,
        &json!({"iss": "https://ci.test", "aud": "keyway", "sub": "repo:keyway", "iat": now, "nbf": now, "exp": now + 600}),
    );
    let jwt_file = dir.path().join("jwt");
    std::fs::write(&jwt_file, &jwt).unwrap();
    let r = uncached(VaultProvider::new(settings(
        &bao,
        VaultAuth::Jwt {
            mount: "jwt".into(),
            role: "ci".into(),
            jwt_file: jwt_file.clone(),
        },
    )));
    assert_eq!(
        text(&get(&r, "vault://secret/app/db#password").await.unwrap()),
        "p"
    );
    // A JWT for another audience is refused at login, and the error says so.
    let wrong = es256_jwt(
        &key,
        &json!({"iss": "https://ci.test", "aud": "other", "sub": "x", "exp": now + 600}),
    );
    std::fs::write(&jwt_file, wrong).unwrap();
    let refused = uncached(VaultProvider::new(settings(
        &bao,
        VaultAuth::Jwt {
            mount: "jwt".into(),
            role: "ci".into(),
            jwt_file,
        },
    )));
    let error = get(&refused, "vault://secret/app/db").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied);
    assert!(
        error
            .to_string()
            .contains("Vault refused the login at auth/jwt/login"),
        "{error}"
    );
}

#[tokio::test]
async fn kubernetes_auth_logs_in_with_the_service_account_token() {
    let bao = Bao::start();
    let api = K8sApi::start();
    let dir = tempfile::tempdir().unwrap();
    app_secret(&bao);
    // The service account's token: Vault reads its claims, and asks the API server (TokenReview) whether it holds.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let sa_jwt = es256_jwt(
        &key,
        &json!({"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:ml:trainer", "aud": ["vault"],
                "kubernetes.io": {"namespace": "ml", "serviceaccount": {"name": "trainer", "uid": "4b1d-uid"}},
                "iat": now_secs() - 5, "nbf": now_secs() - 5, "exp": now_secs() + 600}),
    );
    api.add_token(&sa_jwt, "system:serviceaccount:ml:trainer");
    let ca = rcgen::generate_simple_self_signed(vec!["kubernetes".into()])
        .unwrap()
        .cert
        .pem();
    bao.ok("POST", "sys/auth/kubernetes", json!({"type": "kubernetes"}));
    bao.ok(
        "POST",
        "auth/kubernetes/config",
        json!({"kubernetes_host": api.endpoint, "kubernetes_ca_cert": ca, "disable_local_ca_jwt": true}),
    );
    bao.ok(
        "POST",
        "auth/kubernetes/role/trainer",
        json!({"bound_service_account_names": ["trainer"], "bound_service_account_namespaces": ["ml"],
               "token_policies": ["app"], "audience": "vault"}),
    );
    let jwt_file = dir.path().join("token");
    std::fs::write(&jwt_file, &sa_jwt).unwrap();
    let r = uncached(VaultProvider::new(settings(
        &bao,
        VaultAuth::Kubernetes {
            mount: "kubernetes".into(),
            role: "trainer".into(),
            jwt_file,
        },
    )));
    assert_eq!(
        text(&get(&r, "vault://secret/app/db#password").await.unwrap()),
        "p"
    );
}

#[tokio::test]
async fn a_namespace_is_sent_with_every_request() {
    let bao = Bao::start();
    let dir = tempfile::tempdir().unwrap();
    bao.ok("POST", "sys/namespaces/team1", json!({}));
    let in_team = |method: &str, path: &str, body: serde_json::Value| {
        let reply = keyway_testkit::http(
            method,
            &format!("{}/v1/{path}", bao.address),
            &[("X-Vault-Token", "root"), ("X-Vault-Namespace", "team1")],
            &body.to_string(),
        );
        assert!(
            reply.status < 300,
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
    };
    in_team(
        "POST",
        "sys/mounts/secret",
        json!({"type": "kv", "options": {"version": "2"}}),
    );
    in_team(
        "POST",
        "secret/data/app/db",
        json!({"data": {"password": "team-pw"}}),
    );
    bao.put("secret", "app/db", json!({"password": "root-pw"}));
    let mut with_namespace = settings(&bao, token_file(dir.path(), "root"));
    with_namespace.namespace = Some("team1".into());
    let r = uncached(VaultProvider::new(with_namespace));
    assert_eq!(
        text(&get(&r, "vault://secret/app/db#password").await.unwrap()),
        "team-pw"
    );
}
