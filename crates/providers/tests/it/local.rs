use keyway_core::ListFilter;
use std::sync::Arc;

use keyway_core::reference::Target;
use keyway_core::{CachePolicy, ErrorKind, Provider};
use keyway_providers::local::{LocalProvider, LocalSettings};

use super::{get, resolver, text};

fn target(name: &str) -> Target {
    Target::Local { name: name.into() }
}

#[tokio::test]
async fn directory_files_nested_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("team")).unwrap();
    std::fs::write(dir.path().join("github"), r#"{"github_token":"ghp_local"}"#).unwrap();
    std::fs::write(dir.path().join("team/db"), "pw").unwrap();
    let p = LocalProvider::new(LocalSettings {
        dir: Some(dir.path().into()),
        ..LocalSettings::default()
    });
    assert!(
        p.fetch(&target("team/db"))
            .await
            .unwrap()
            .value
            .ct_eq(b"pw")
    );
    assert_eq!(
        p.list(None).await.unwrap(),
        vec!["github".to_owned(), "team/db".to_owned()]
    );
    assert_eq!(
        p.list(Some(&ListFilter::Prefix("team".into())))
            .await
            .unwrap(),
        vec!["team/db".to_owned()]
    );
    let err = p.fetch(&target("nope")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.to_string().contains("`nope` not found in directory"),
        "{err}"
    );
    let r = resolver("local", Arc::new(p), CachePolicy::default());
    assert_eq!(
        text(&get(&r, "local://github#github_token").await.unwrap()),
        "ghp_local"
    );
}

#[tokio::test]
async fn symlinks_out_of_the_store_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(outside.path(), "outside").unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).unwrap();
    let p = LocalProvider::new(LocalSettings {
        dir: Some(dir.path().into()),
        ..LocalSettings::default()
    });
    let err = p.fetch(&target("escape")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("resolves outside"), "{err}");
}

#[tokio::test]
async fn json_and_yaml_files() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("secrets.yaml");
    std::fs::write(
        &yaml,
        "github:\n  github_token: ghp_yaml\ndb_password: s3cret\n",
    )
    .unwrap();
    let json = dir.path().join("secrets.json");
    std::fs::write(&json, r#"{"api": "k-json"}"#).unwrap();
    let y = LocalProvider::new(LocalSettings {
        file: Some(yaml.clone()),
        ..LocalSettings::default()
    });
    assert!(
        y.fetch(&target("db_password"))
            .await
            .unwrap()
            .value
            .ct_eq(b"s3cret")
    );
    assert_eq!(
        y.list(None).await.unwrap(),
        vec!["db_password".to_owned(), "github".to_owned()]
    );
    let r = resolver("local", Arc::new(y), CachePolicy::default());
    assert_eq!(
        text(&get(&r, "local://github#github_token").await.unwrap()),
        "ghp_yaml"
    );
    let j = LocalProvider::new(LocalSettings {
        file: Some(json),
        ..LocalSettings::default()
    });
    assert!(
        j.fetch(&target("api"))
            .await
            .unwrap()
            .value
            .ct_eq(b"k-json")
    );

    std::fs::write(&yaml, "db_password: [unclosed s3cret\n").unwrap();
    let broken = LocalProvider::new(LocalSettings {
        file: Some(yaml),
        ..LocalSettings::default()
    });
    let err = broken.fetch(&target("db_password")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Misconfigured);
    assert!(
        !err.to_string().contains("s3cret"),
        "the parse error leaked content: {err}"
    );
}

#[tokio::test]
async fn age_encrypted_files_are_decrypted_with_the_identity() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    let key_file = dir.path().join("key.txt");
    {
        use secrecy::ExposeSecret as _;
        std::fs::write(
            &key_file,
            format!("{}\n", identity.to_string().expose_secret()),
        )
        .unwrap();
    }
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .unwrap();
    let mut ciphertext = Vec::new();
    let mut writer = encryptor.wrap_output(&mut ciphertext).unwrap();
    writer.write_all(b"age-protected").unwrap();
    writer.finish().unwrap();
    std::fs::write(dir.path().join("token.age"), &ciphertext).unwrap();

    let p = LocalProvider::new(LocalSettings {
        dir: Some(dir.path().into()),
        age_identity: Some(key_file),
        ..LocalSettings::default()
    });
    assert!(
        p.fetch(&target("token"))
            .await
            .unwrap()
            .value
            .ct_eq(b"age-protected")
    );
    assert!(p.list(None).await.unwrap().contains(&"token".to_owned()));

    let without_key = LocalProvider::new(LocalSettings {
        dir: Some(dir.path().into()),
        ..LocalSettings::default()
    });
    let err = without_key.fetch(&target("token")).await.unwrap_err();
    assert!(err.to_string().contains("no `age_identity`"), "{err}");
}

#[test]
fn check_names_a_missing_store_or_a_bad_identity_and_warns_of_a_readable_one() {
    use secrecy::ExposeSecret as _;
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    // Private, so that only the identity's own mode is judged here (a store other users may read is below).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let at = |name: &str| dir.path().join(name);
    let settings = |dir: &str, file: Option<&str>, key: Option<&str>| LocalSettings {
        dir: Some(at(dir)),
        file: file.map(at),
        age_identity: key.map(at),
    };
    let err = settings("store", None, None).check().unwrap_err();
    assert!(
        err.contains("`dir`") && err.contains("is not a directory; create it"),
        "{err}"
    );
    std::fs::create_dir(at("store")).unwrap();
    assert_eq!(settings("store", None, None).check(), Ok(Vec::new()));

    let err = settings("store", Some("entries.yaml"), None)
        .check()
        .unwrap_err();
    assert!(
        err.contains("`file`") && err.contains("No such file"),
        "{err}"
    );
    std::fs::write(at("entries.yaml"), "a: b\n").unwrap();

    let err = settings("store", Some("entries.yaml"), Some("key.txt"))
        .check()
        .unwrap_err();
    assert!(
        err.contains("`age_identity`") && err.contains("cannot be read"),
        "{err}"
    );
    std::fs::write(at("key.txt"), "not-a-key s3cret\n").unwrap();
    let err = settings("store", Some("entries.yaml"), Some("key.txt"))
        .check()
        .unwrap_err();
    assert!(
        err.contains("is not an age identity file") && !err.contains("s3cret"),
        "{err}"
    );

    let identity = age::x25519::Identity::generate();
    std::fs::write(at("key.txt"), identity.to_string().expose_secret()).unwrap();
    std::fs::set_permissions(at("key.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let warnings = settings("store", Some("entries.yaml"), Some("key.txt"))
        .check()
        .unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("mode 0644") && warnings[0].contains("chmod 600"),
        "{warnings:?}"
    );
    std::fs::set_permissions(at("key.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        settings("store", Some("entries.yaml"), Some("key.txt")).check(),
        Ok(Vec::new())
    );
}

#[test]
fn check_warns_of_plaintext_files_other_users_may_read() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);
    let chmod = |name: &str, mode: u32| {
        std::fs::set_permissions(at(name), std::fs::Permissions::from_mode(mode)).unwrap();
    };
    for sub in ["store", "store/closed", "store/open"] {
        std::fs::create_dir(at(sub)).unwrap();
    }
    for (name, mode) in [
        ("store/a", 0o644),        // read by others: counted
        ("store/b.age", 0o644),    // encrypted: not counted
        ("store/c", 0o600),        // private
        ("store/closed/d", 0o644), // in a directory others cannot enter
        ("store/open/e", 0o604),   // counted
        ("entries.yaml", 0o644),
    ] {
        std::fs::write(at(name), "v").unwrap();
        chmod(name, mode);
    }
    chmod("store/closed", 0o700);
    let settings = LocalSettings {
        dir: Some(at("store")),
        file: Some(at("entries.yaml")),
        age_identity: None,
    };
    // Inside a directory only its owner may enter, nobody else reaches anything.
    chmod("", 0o700);
    assert_eq!(settings.check(), Ok(Vec::new()));
    chmod("", 0o755);
    let warnings = settings.check().unwrap();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("2 plaintext file(s) under `dir`")
            && warnings[0].contains("chmod -R go-rwx"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("entries.yaml may be read by other users (mode 0644); chmod 600 it"),
        "{warnings:?}"
    );
    chmod("store", 0o700);
    chmod("entries.yaml", 0o600);
    assert_eq!(settings.check(), Ok(Vec::new()));
}
