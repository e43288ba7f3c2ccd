//! The Parameter Store provider against moto's SSM: names with and without their leading `/`, versions and
//! labels, `SecureString` decrypted, JSON fields, the parameter's own fields kept for the Lambda extension route,
//! not-found codes, listings by prefix across pages.

use std::sync::Arc;
use std::time::Duration;

use keyway_core::{CachePolicy, ErrorKind, ListFilter, Provider};
use keyway_providers::aws::{AwsSettings, SsmProvider, StaticKeys};
use keyway_testkit::Moto;

use super::{get, resolver, text};

fn provider(moto: &Moto) -> SsmProvider {
    SsmProvider::new(AwsSettings {
        region: Some("us-east-1".into()),
        endpoint: Some(moto.endpoint.clone()),
        timeout: Duration::from_secs(5),
        static_keys: Some(StaticKeys::new("testing", "testing")),
        ..AwsSettings::default()
    })
}

#[tokio::test]
async fn parameters_read_by_name_version_and_label_decrypted() {
    let moto = Moto::start();
    moto.put_parameter("/app/db/password", "pw-1", "SecureString");
    moto.put_parameter("/app/db/password", "pw-2", "SecureString");
    moto.label_parameter("/app/db/password", 1, "previous");
    moto.put_parameter(
        "/app/config",
        r#"{"host":"db.internal","port":5432}"#,
        "String",
    );
    moto.put_parameter("token", "plain", "String");
    let r = resolver("aws-ps", Arc::new(provider(&moto)), CachePolicy::default());
    let latest = get(&r, "aws-ps://app/db/password").await.unwrap();
    assert_eq!(text(&latest), "pw-2", "SecureString values come decrypted");
    assert_eq!(latest.secret.meta.version_id, "2");
    assert_eq!(latest.secret.meta.attributes["Type"], "SecureString");
    assert_eq!(latest.secret.meta.attributes["Name"], "/app/db/password");
    assert!(latest.secret.meta.attributes["ARN"].ends_with(":parameter/app/db/password"));
    assert!(latest.secret.meta.created.is_some());
    assert_eq!(
        text(
            &get(&r, "aws-ps:///app/db/password?version=1")
                .await
                .unwrap()
        ),
        "pw-1"
    );
    assert_eq!(
        text(
            &get(&r, "aws-ps://app/db/password?label=previous")
                .await
                .unwrap()
        ),
        "pw-1"
    );
    assert_eq!(
        text(&get(&r, "aws-ps://app/config#host").await.unwrap()),
        "db.internal"
    );
    assert_eq!(text(&get(&r, "aws-ps://token").await.unwrap()), "plain");
    for missing in [
        "aws-ps://app/nope",
        "aws-ps://app/db/password?version=9",
        "aws-ps://app/db/password?label=nope",
    ] {
        let error = get(&r, missing).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound, "{missing}: {error}");
        assert!(error.to_string().contains("AWS parameter `"), "{error}");
    }
}

#[tokio::test]
async fn listings_page_through_every_name_under_a_prefix() {
    let moto = Moto::start();
    for i in 0..23 {
        moto.put_parameter(&format!("/team/p{i:02}"), "v", "String");
    }
    moto.put_parameter("/other/x", "v", "String");
    moto.put_parameter("top", "v", "String");
    let p = provider(&moto);
    let team = p
        .list(Some(&ListFilter::Prefix("team/".into())))
        .await
        .unwrap();
    assert_eq!(team.len(), 23, "every page: {team:?}");
    assert_eq!(team[0], "team/p00");
    let every = p.list(None).await.unwrap();
    assert_eq!(every.len(), 25);
    assert!(every.contains(&"top".to_owned()) && every.contains(&"other/x".to_owned()));
}
