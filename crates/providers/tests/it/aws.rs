use keyway_core::ListFilter;
use std::sync::Arc;
use std::time::Duration;

use keyway_core::reference::{AwsVersion, Target};
use keyway_core::{CachePolicy, Encoding, ErrorKind, Provider, Upstream};
use keyway_providers::aws::{AwsProvider, AwsSettings, StaticKeys};
use keyway_testkit::Moto;
use keyway_testkit::fault::{Fault, FaultProxy, Flavor};

use super::{get, resolver, text};

fn provider(endpoint: &str) -> AwsProvider {
    AwsProvider::new(AwsSettings {
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.to_owned()),
        timeout: Duration::from_secs(5),
        static_keys: Some(StaticKeys::new("testing", "testing")),
        ..AwsSettings::default()
    })
}

fn target(id: &str, version: AwsVersion) -> Target {
    Target::Aws {
        secret_id: id.into(),
        version,
    }
}

#[tokio::test]
async fn an_arn_of_another_region_is_read_in_that_region() {
    let moto = Moto::start();
    let home = moto.create_secret("db", "home-pw");
    let eu = moto.create_secret_in("eu-west-1", "db", "eu-pw");
    assert!(eu.contains(":eu-west-1:"), "{eu}");
    let r = resolver(
        "aws-sm",
        Arc::new(provider(&moto.endpoint)),
        CachePolicy::default(),
    );
    assert_eq!(text(&get(&r, "aws-sm://db").await.unwrap()), "home-pw");
    assert_eq!(
        text(&get(&r, &format!("aws-sm://{home}")).await.unwrap()),
        "home-pw"
    );
    let read = get(&r, &format!("aws-sm://{eu}")).await.unwrap();
    assert_eq!(text(&read), "eu-pw");
    assert_eq!(read.secret.meta.name, eu);
    // The name alone stays in the instance's region, where no such ARN exists.
    let elsewhere = eu.replace(":eu-west-1:", ":ap-south-1:");
    let missing = get(&r, &format!("aws-sm://{elsewhere}")).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
}

#[tokio::test]
async fn fetches_by_name_arn_version_id_and_stage() {
    let moto = Moto::start();
    let arn = moto.create_secret("ci/github", r#"{"github_token":"ghp_v1"}"#);
    let v2 = moto.put_secret_value("ci/github", r#"{"github_token":"ghp_v2"}"#);
    let p = provider(&moto.endpoint);

    let current = p
        .fetch(&target("ci/github", AwsVersion::Stage("AWSCURRENT".into())))
        .await
        .unwrap();
    assert!(current.value.ct_eq(br#"{"github_token":"ghp_v2"}"#));
    assert_eq!(current.meta.version_id, v2);
    assert!(current.meta.stages.contains(&"AWSCURRENT".to_owned()));
    assert_eq!(current.meta.name, arn);
    assert!(current.meta.created.is_some());

    let previous = p
        .fetch(&target(
            "ci/github",
            AwsVersion::Stage("AWSPREVIOUS".into()),
        ))
        .await
        .unwrap();
    assert!(previous.value.ct_eq(br#"{"github_token":"ghp_v1"}"#));

    let by_id = p
        .fetch(&target("ci/github", AwsVersion::Id(v2.clone())))
        .await
        .unwrap();
    assert!(by_id.value.ct_eq(br#"{"github_token":"ghp_v2"}"#));

    let by_arn = p
        .fetch(&target(&arn, AwsVersion::Stage("AWSCURRENT".into())))
        .await
        .unwrap();
    assert_eq!(by_arn.meta.version_id, v2);

    // Through the resolver: the reference syntax, the ARN's colons and the field.
    let r = resolver("aws-sm", Arc::new(p), CachePolicy::default());
    assert_eq!(
        text(
            &get(&r, &format!("aws-sm://{arn}#github_token"))
                .await
                .unwrap()
        ),
        "ghp_v2"
    );
    assert_eq!(
        text(
            &get(
                &r,
                "aws-sm://ci/github?version-stage=AWSPREVIOUS#github_token"
            )
            .await
            .unwrap()
        ),
        "ghp_v1"
    );
}

#[tokio::test]
async fn binary_secrets_keep_their_bytes() {
    let moto = Moto::start();
    let bytes: Vec<u8> = (0..=255).collect();
    moto.create_binary_secret("blob", &bytes);
    let secret = provider(&moto.endpoint)
        .fetch(&target("blob", AwsVersion::Stage("AWSCURRENT".into())))
        .await
        .unwrap();
    assert_eq!(secret.encoding, Encoding::Binary);
    assert!(secret.value.ct_eq(&bytes));
}

#[tokio::test]
async fn missing_secret_is_not_found_with_a_useful_message() {
    let moto = Moto::start();
    let err = provider(&moto.endpoint)
        .fetch(&target("nope", AwsVersion::Stage("AWSCURRENT".into())))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        err.upstream(),
        Some(&Upstream::Code("ResourceNotFoundException".into()))
    );
    assert!(
        err.to_string().contains("`nope`") && err.to_string().contains("check the name"),
        "{err}"
    );
}

#[tokio::test]
async fn unreachable_endpoint_is_unavailable() {
    let port = keyway_testkit::free_port();
    let p = AwsProvider::new(AwsSettings {
        region: Some("us-east-1".into()),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        timeout: Duration::from_secs(2),
        static_keys: Some(StaticKeys::new("testing", "testing")),
        ..AwsSettings::default()
    });
    let err = p
        .fetch(&target("x", AwsVersion::Stage("AWSCURRENT".into())))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(err.upstream(), Some(&Upstream::Unreachable), "{err}");
    assert!(err.to_string().contains("check the endpoint"), "{err}");
}

#[tokio::test]
async fn aws_codes_and_timeouts_ride_with_the_error() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint, Flavor::Aws);
    // Retries of a 500 back off for up to 3 s, inside the 5 s timeout; a black hole needs a short one.
    let with_timeout = |timeout| {
        AwsProvider::new(AwsSettings {
            region: Some("us-east-1".into()),
            endpoint: Some(proxy.endpoint.clone()),
            timeout,
            static_keys: Some(StaticKeys::new("testing", "testing")),
            ..AwsSettings::default()
        })
    };
    let t = target("x", AwsVersion::Stage("AWSCURRENT".into()));
    for (fault, timeout, kind, upstream) in [
        (
            Fault::Status {
                code: 500,
                every: 1,
            },
            Duration::from_secs(5),
            ErrorKind::Unavailable,
            Upstream::Code("InternalServiceError".into()),
        ),
        (
            Fault::Status {
                code: 429,
                every: 1,
            },
            Duration::from_secs(5),
            ErrorKind::Throttled,
            Upstream::Code("ThrottlingException".into()),
        ),
        (
            Fault::Blackhole,
            Duration::from_millis(300),
            ErrorKind::Unavailable,
            Upstream::ReadTimeout,
        ),
    ] {
        proxy.set(fault.clone());
        let err = with_timeout(timeout).fetch(&t).await.unwrap_err();
        assert_eq!(
            (err.kind(), err.upstream()),
            (kind, Some(&upstream)),
            "{fault:?}: {err}"
        );
    }
}

#[tokio::test]
async fn list_follows_every_page_and_filters() {
    let moto = Moto::start();
    for i in 0..130 {
        moto.create_secret(&format!("team/s{i:03}"), "v");
    }
    moto.create_secret("other/x", "v");
    let p = provider(&moto.endpoint);
    let mut names = p.list(None).await.unwrap();
    names.sort();
    assert_eq!(names.len(), 131);
    assert_eq!(names[0], "other/x");
    assert_eq!(
        p.list(Some(&ListFilter::Prefix("other".into())))
            .await
            .unwrap(),
        vec!["other/x".to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_cold_reads_make_one_get_secret_value() {
    let moto = Moto::start();
    moto.create_secret("hot", r#"{"k":"v"}"#);
    moto.start_recording();
    let r = Arc::new(resolver(
        "aws-sm",
        Arc::new(provider(&moto.endpoint)),
        CachePolicy::default(),
    ));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let r = Arc::clone(&r);
            tokio::spawn(async move { text(&get(&r, "aws-sm://hot#k").await.unwrap()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), "v");
    }
    assert_eq!(
        moto.count("GetSecretValue"),
        1,
        "moto saw more than one GetSecretValue"
    );
}
