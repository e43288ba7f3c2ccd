use keyway_core::ListFilter;
use std::sync::Arc;
use std::time::Duration;

use keyway_core::reference::{GcpVersion, Target};
use keyway_core::{CachePolicy, Encoding, ErrorKind, Provider, Source, Ttl, Upstream};
use keyway_providers::gcp::{GcpProvider, GcpSettings};
use keyway_testkit::GcpEmulator;

use super::{get, resolver, text};

fn provider_settings(emulator: &GcpEmulator) -> GcpSettings {
    GcpSettings {
        project: Some("proj".into()),
        endpoint: Some(emulator.endpoint.clone()),
        anonymous: true,
        timeout: Duration::from_secs(5),
        ..GcpSettings::default()
    }
}

fn provider(emulator: &GcpEmulator) -> GcpProvider {
    GcpProvider::new(provider_settings(emulator))
}

fn target(secret: &str, version: GcpVersion) -> Target {
    Target::Gcp {
        project: None,
        location: None,
        secret: secret.into(),
        version,
    }
}

#[tokio::test]
async fn regional_secrets_are_apart_from_global_ones_and_listed_by_the_instances_location() {
    let emu = GcpEmulator::start();
    emu.add_version("proj", "db", b"global-pw");
    emu.add_regional_version("proj", "europe-west1", "db", b"eu-pw");
    emu.add_regional_version("proj", "europe-west1", "eu-only", b"x");
    let r = resolver("gcp-sm", Arc::new(provider(&emu)), CachePolicy::default());
    assert_eq!(
        text(&get(&r, "gcp-sm://proj/db").await.unwrap()),
        "global-pw"
    );
    let regional = get(&r, "gcp-sm://proj/db?location=europe-west1")
        .await
        .unwrap();
    assert_eq!(text(&regional), "eu-pw");
    assert_eq!(
        regional.secret.meta.name,
        "projects/proj/locations/europe-west1/secrets/db"
    );
    assert_eq!(
        text(
            &get(
                &r,
                "gcp-sm://projects/proj/locations/europe-west1/secrets/db/versions/1"
            )
            .await
            .unwrap()
        ),
        "eu-pw"
    );
    let missing = get(&r, "gcp-sm://proj/eu-only").await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");

    // An instance with `location` reads and lists that location's secrets.
    let eu = GcpProvider::new(GcpSettings {
        location: Some("europe-west1".into()),
        ..provider_settings(&emu)
    });
    assert_eq!(eu.list(None).await.unwrap(), ["db", "eu-only"]);
    let r = resolver("eu-gcp", Arc::new(eu), CachePolicy::default());
    assert_eq!(text(&get(&r, "eu-gcp://proj/db").await.unwrap()), "eu-pw");
    assert_eq!(provider(&emu).list(None).await.unwrap(), ["db"]);
}

#[tokio::test]
async fn fetches_latest_and_numbered_versions_with_fields() {
    let emu = GcpEmulator::start();
    emu.add_version("proj", "github", br#"{"github_token":"ghp_1"}"#);
    emu.add_version("proj", "github", br#"{"github_token":"ghp_2"}"#);
    let p = provider(&emu);
    let latest = p
        .fetch(&target("github", GcpVersion::Latest))
        .await
        .unwrap();
    assert!(latest.value.ct_eq(br#"{"github_token":"ghp_2"}"#));
    assert_eq!(latest.meta.version_id, "2");
    assert_eq!(latest.meta.name, "projects/proj/secrets/github");
    let first = p
        .fetch(&target("github", GcpVersion::Number(1)))
        .await
        .unwrap();
    assert_eq!(first.meta.version_id, "1");

    let r = resolver("gcp-sm", Arc::new(p), CachePolicy::default());
    assert_eq!(
        text(&get(&r, "gcp-sm://proj/github#github_token").await.unwrap()),
        "ghp_2"
    );
    assert_eq!(
        text(
            &get(
                &r,
                "gcp-sm://projects/proj/secrets/github/versions/1#github_token"
            )
            .await
            .unwrap()
        ),
        "ghp_1"
    );
    assert_eq!(
        text(
            &get(&r, "gcp-sm://github?version=1#/github_token")
                .await
                .unwrap()
        ),
        "ghp_1"
    );
}

#[tokio::test]
async fn binary_payloads_are_binary() {
    let emu = GcpEmulator::start();
    emu.add_version("proj", "blob", &[0xff, 0x00, 0xfe]);
    let s = provider(&emu)
        .fetch(&target("blob", GcpVersion::Latest))
        .await
        .unwrap();
    assert_eq!(s.encoding, Encoding::Binary);
    assert!(s.value.ct_eq(&[0xff, 0x00, 0xfe]));
}

#[tokio::test]
async fn errors_are_classified_and_say_what_to_do() {
    let emu = GcpEmulator::start();
    emu.add_version("proj", "locked", b"x");
    emu.add_version("proj", "old", b"x");
    emu.version_action("proj", "old", 1, "disable");
    let p = provider(&emu);

    let err = p
        .fetch(&target("missing", GcpVersion::Latest))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.to_string()
            .contains("projects/proj/secrets/missing/versions/latest was not found"),
        "{err}"
    );

    emu.deny("proj", "locked", false);
    let err = p
        .fetch(&target("locked", GcpVersion::Number(1)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        err.upstream(),
        Some(&Upstream::Code("PERMISSION_DENIED".into()))
    );
    let msg = err.to_string();
    assert!(
        msg.contains("roles/secretmanager.secretAccessor")
            && msg.contains("projects/proj/secrets/locked/versions/1"),
        "{msg}"
    );

    let err = p
        .fetch(&target("old", GcpVersion::Number(1)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        err.upstream(),
        Some(&Upstream::Code("FAILED_PRECONDITION".into()))
    );
    assert!(err.to_string().contains("disabled or destroyed"), "{err}");

    let no_project = GcpProvider::new(GcpSettings {
        project: None,
        ..GcpSettings::default()
    });
    let err = no_project
        .fetch(&target("x", GcpVersion::Latest))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
}

#[tokio::test]
async fn a_bad_checksum_is_refused() {
    let emu = GcpEmulator::start();
    emu.add_version("proj", "crc", b"value");
    emu.corrupt_next(1);
    let err = provider(&emu)
        .fetch(&target("crc", GcpVersion::Latest))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("CRC32C"), "{err}");
    assert!(
        provider(&emu)
            .fetch(&target("crc", GcpVersion::Latest))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn list_follows_every_page_and_filters() {
    let emu = GcpEmulator::start();
    for i in 0..260 {
        emu.add_version("proj", &format!("s{i:03}"), b"v");
    }
    emu.add_version("proj", "other", b"v");
    emu.add_version("elsewhere", "hidden", b"v");
    let p = provider(&emu);
    let names = p.list(None).await.unwrap();
    assert_eq!(names.len(), 261);
    assert!(!names.contains(&"hidden".to_owned()));
    assert_eq!(
        p.list(Some(&ListFilter::Prefix("oth".into())))
            .await
            .unwrap(),
        vec!["other".to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_cold_reads_make_one_access() {
    let emu = GcpEmulator::start();
    emu.add_version("proj", "hot", b"v");
    emu.set_latency(Duration::from_millis(50));
    let r = Arc::new(resolver(
        "gcp-sm",
        Arc::new(provider(&emu)),
        CachePolicy::default(),
    ));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let r = Arc::clone(&r);
            tokio::spawn(async move { text(&get(&r, "gcp-sm://proj/hot").await.unwrap()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), "v");
    }
    assert_eq!(emu.access_count(), 1);
}

#[tokio::test]
async fn stale_value_served_while_the_emulator_fails() {
    let emu = GcpEmulator::start();
    emu.add_version("proj", "s", b"v1");
    let policy = CachePolicy {
        ttl: Ttl::For(Duration::from_millis(200)),
        max_stale: Duration::from_mins(1),
        ..CachePolicy::default()
    };
    let r = resolver("gcp-sm", Arc::new(provider(&emu)), policy);
    assert_eq!(
        get(&r, "gcp-sm://proj/s").await.unwrap().source,
        Source::Miss
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    emu.fail_next(100);
    let stale = get(&r, "gcp-sm://proj/s").await.unwrap();
    assert_eq!(
        (stale.source, text(&stale)),
        (Source::Stale, "v1".to_owned())
    );
    // An uncached secret fails with a clear, classified error.
    let err = get(&r, "gcp-sm://proj/other").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}
