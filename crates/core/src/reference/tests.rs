use super::*;

fn ok(input: &str) -> SecretRef {
    SecretRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"))
}

fn err(input: &str, needle: &str) {
    match SecretRef::parse(input) {
        Ok(r) => panic!("{input} parsed as {r:?}"),
        Err(e) => assert!(
            e.to_string().contains(needle),
            "{input}: `{e}` lacks `{needle}`"
        ),
    }
}

fn check(input: &str, canonical: &str) {
    let parsed = ok(input);
    assert_eq!(parsed.to_string(), canonical, "{input}");
    assert_eq!(
        ok(canonical),
        parsed,
        "canonical form of {input} reparses differently"
    );
}

#[test]
fn aws_names_arns_versions_and_fields() {
    check(
        "aws-sm://ci/github",
        "aws-sm://ci/github?version-stage=AWSCURRENT",
    );
    check(
        "aws-sm://ci/github#github_token",
        "aws-sm://ci/github?version-stage=AWSCURRENT#github_token",
    );
    check(
        "aws-sm://db?version-stage=AWSPREVIOUS",
        "aws-sm://db?version-stage=AWSPREVIOUS",
    );
    check(
        "aws-sm://db?version-id=0123-abcd#/db/password",
        "aws-sm://db?version-id=0123-abcd#/db/password",
    );
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ci/github-AbCdEf";
    let r = ok(&format!("aws-sm://{arn}#github_token"));
    assert_eq!(
        r.target(),
        &Target::Aws {
            secret_id: arn.to_owned(),
            version: AwsVersion::Stage("AWSCURRENT".into())
        }
    );
    assert_eq!(r.field(), Some(&Field::Key("github_token".into())));
    assert_eq!(r.kind(), BackendKind::Aws);
}

#[test]
fn aws_rejections() {
    err("aws-sm://", "empty");
    assert_eq!(
        SecretRef::parse("aws-sm://x?version-stage=b&version-id=a")
            .unwrap()
            .to_string(),
        "aws-sm://x?version-id=a&version-stage=b"
    );
    err("aws-sm://x?stage=b", "unknown parameter `stage`");
    err("aws-sm://x?version-id", "no `=VALUE`");
    err("aws-sm://x?version-id=", "is empty");
    err("aws-sm://arn:aws:s3:::bucket", "ARN must look like");
    err(
        "aws-sm://arn:aws:secretsmanager:evil.example.com/x:1:secret:s",
        "is not an AWS region",
    );
    err(
        "aws-sm://arn:aws:secretsmanager::123456789012:secret:s",
        "is not an AWS region",
    );
    err("aws-sm://a b", "no spaces");
    err("aws-sm://a%b", "letters, digits");
    err("aws-sm://x#", "field after `#` is empty");
    err("aws-sm://x#/a~2", "~0 for ~");
}

#[test]
fn gcp_forms() {
    check("gcp-sm://proj/token", "gcp-sm://proj/token?version=latest");
    check(
        "gcp-sm://proj/token?version=3#k",
        "gcp-sm://proj/token?version=3#k",
    );
    check(
        "gcp-sm://projects/p-1/secrets/s_2/versions/7",
        "gcp-sm://p-1/s_2?version=7",
    );
    check(
        "gcp-sm://projects/p/secrets/s",
        "gcp-sm://p/s?version=latest",
    );
    check(
        "gcp-sm://only-secret",
        "gcp-sm://only-secret?version=latest",
    );
    check(
        "gcp-sm://projects/p/secrets/s/versions/latest",
        "gcp-sm://p/s?version=latest",
    );
}

#[test]
fn gcp_version_aliases() {
    check("gcp-sm://p/s?version=prod", "gcp-sm://p/s?version=prod");
    check(
        "gcp-sm://projects/p/secrets/s/versions/blue_green-2#k",
        "gcp-sm://p/s?version=blue_green-2#k",
    );
    assert_eq!(
        ok("gcp-sm://p/s?version=prod").target(),
        &Target::Gcp {
            project: Some("p".into()),
            location: None,
            secret: "s".into(),
            version: GcpVersion::Alias("prod".into()),
        }
    );
}

#[test]
fn gcp_regional_forms() {
    check(
        "gcp-sm://projects/p/locations/europe-west1/secrets/s/versions/4#k",
        "gcp-sm://p/s?location=europe-west1&version=4#k",
    );
    check(
        "gcp-sm://projects/p/locations/us-east4/secrets/s",
        "gcp-sm://p/s?location=us-east4&version=latest",
    );
    check(
        "gcp-sm://s?version=2&location=me-central2",
        "gcp-sm://s?location=me-central2&version=2",
    );
    let r = ok("gcp-sm://p/s?location=europe-west1");
    assert_eq!(
        r.target(),
        &Target::Gcp {
            project: Some("p".into()),
            location: Some("europe-west1".into()),
            secret: "s".into(),
            version: GcpVersion::Latest,
        }
    );
    assert_eq!(
        r.secret_path(),
        "gcp-sm://projects/p/locations/europe-west1/secrets/s"
    );
    assert_ne!(
        r.target(),
        ok("gcp-sm://p/s").target(),
        "a regional secret is not the global one of the same name"
    );
    assert_eq!(
        ok("gcp-sm://s?location=europe-west1").secret_path(),
        "gcp-sm://locations/europe-west1/secrets/s"
    );
    err(
        "gcp-sm://projects/p/locations/europe-west1/secrets/s?location=us-east1",
        "given both in the path and as ?location=",
    );
    err("gcp-sm://p/s?location=Europe", "not a GCP location");
    err("gcp-sm://p/s?location=eu_west", "not a GCP location");
    err(
        "gcp-sm://projects/p/locations/secrets/s",
        "expected PROJECT/SECRET",
    );
}

#[test]
fn gcp_rejections() {
    err("gcp-sm://p/s?version=0", "positive number");
    err("gcp-sm://p/s?version=-1", "positive number");
    err("gcp-sm://p/s?version=3x", "positive number");
    err("gcp-sm://p/s?version=Latest", "version alias (a letter");
    err("gcp-sm://p/s?version=new", "version alias (a letter");
    err("gcp-sm://p/s?version=_x", "version alias (a letter");
    err("gcp-sm://p/s?ver=1", "unknown parameter");
    err(
        "gcp-sm://projects/p/secrets/s/versions/2?version=3",
        "give it once",
    );
    err("gcp-sm://a/b/c", "expected PROJECT/SECRET");
    err("gcp-sm://p/s.x", "not a GCP secret id");
    err("gcp-sm://p!/s", "not a GCP project id");
}

#[test]
fn local_forms() {
    check("local://github", "local://github");
    check("local://team/db#password", "local://team/db#password");
    err("local://../etc/passwd", "`..`");
    err("local://a//b", "empty");
    err("local:///abs", "empty");
    err("local://x?version=1", "no versions");
}

#[test]
fn vault_forms() {
    check("vault://secret/ci/github", "vault://secret/ci/github");
    check(
        "vault://secret/ci/github/#token",
        "vault://secret/ci/github#token",
    );
    check(
        "vault://kv/team/db?version=3#password",
        "vault://kv/team/db?version=3#password",
    );
    check("vault://team/kv/app", "vault://team/kv/app");
    let r = ok("vault://secret/ci/github?version=2");
    assert_eq!(
        r.target(),
        &Target::Vault {
            path: "secret/ci/github".into(),
            version: Some(2)
        }
    );
    assert_eq!(r.secret_path(), "vault://secret/ci/github");
    err("vault://github", "MOUNT/PATH");
    err("vault://secret/../sys", "`..`");
    err("vault://secret//x", "empty");
    err("vault://secret/x?version=0", "positive number");
    err("vault://secret/x?version=latest", "positive number");
    err(
        "vault://secret/x?stage=a",
        "unknown parameter `stage` for Vault",
    );
}

#[test]
fn parameter_store_forms() {
    check("aws-ps://app/db/password", "aws-ps://app/db/password");
    check("aws-ps:///app/db/password", "aws-ps://app/db/password");
    check("aws-ps://token?version=3", "aws-ps://token?version=3");
    check(
        "aws-ps://app/db?label=prod#user",
        "aws-ps://app/db?label=prod#user",
    );
    check(
        "aws-ps://arn:aws:ssm:eu-west-1:123456789012:parameter/app/db",
        "aws-ps://arn:aws:ssm:eu-west-1:123456789012:parameter/app/db",
    );
    // AWS's own public parameters read like any other.
    check(
        "aws-ps:///aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
        "aws-ps://aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
    );
    assert_eq!(
        ok("aws-ps://x?label=prod").target(),
        &Target::Ssm {
            name: "x".into(),
            selector: Some(SsmSelector::Label("prod".into()))
        }
    );
    err("aws-ps://a:b", "not ':'");
    err("aws-ps://a//b", "empty level");
    err("aws-ps://x?version=1&label=a", "not both");
    err("aws-ps://x?label=1st", "not starting with a digit");
    err("aws-ps://x?label=aws-x", "aws or ssm");
    err("aws-ps://arn:aws:ssm:us-east-1:1:secret/x", "parameter ARN");
    err(&format!("aws-ps://{}", ["a"; 16].join("/")), "15 levels");
}

#[test]
fn azure_key_vault_forms() {
    check(
        "azure-kv://my-vault/db-password",
        "azure-kv://my-vault/db-password",
    );
    check(
        "azure-kv://My-Vault/db-password",
        "azure-kv://my-vault/db-password",
    );
    check(
        "azure-kv://kv1/api?version=0123456789ABCDEF0123456789abcdef#token",
        "azure-kv://kv1/api?version=0123456789abcdef0123456789abcdef#token",
    );
    err("azure-kv://db-password", "VAULT/NAME");
    err("azure-kv://kv1/a_b", "not a Key Vault secret name");
    err("azure-kv://1kv/a", "not a Key Vault name");
    err("azure-kv://kv-/a", "not a Key Vault name");
    err("azure-kv://kv1/a?version=3", "not a version id");
}

#[test]
fn kubernetes_secret_forms() {
    check("k8s://ml/github#token", "k8s://ml/github#token");
    check("k8s://github#token", "k8s://github#token");
    check(
        "k8s://ml/tls.example.com#tls.crt",
        "k8s://ml/tls.example.com#tls.crt",
    );
    assert_eq!(
        ok("k8s://ml/github#token").target(),
        &Target::K8s {
            namespace: Some("ml".into()),
            name: "github".into()
        }
    );
    err("k8s://ML/github", "namespace `ML`");
    err("k8s://ml/Github", "Secret name `Github`");
    err("k8s://ml/a/b", "Secret name `a/b`");
    err("k8s://ml/github?version=1", "no versions");
}

#[test]
fn typos_of_instance_names_are_recognised_and_other_schemes_are_not() {
    let instances = Instances::default();
    for (name, meant) in [
        ("aws-ms", "aws-sm"),
        ("awssm", "aws-sm"),
        ("aws_sm", "aws-sm"),
        ("gcp-s", "gcp-sm"),
        ("gpc-sm", "gcp-sm"),
        ("locl", "local"),
        ("loacl", "local"),
        ("lokal", "local"),
    ] {
        assert_eq!(instances.typo_of(name), Some(meant), "{name}");
    }
    for name in [
        "aws-sm", "local", "s3", "gs", "aws", "gcp", "https", "http", "file", "postgres", "redis",
        "mysql", "ldap", "ssh", "git", "amqp", "smtp", "sftp", "kafka", "nats", "ws", "wss",
    ] {
        assert_eq!(instances.typo_of(name), None, "{name}");
    }
    assert_eq!(instances.typo_in("aws-ms://ci/github"), Some("aws-sm"));
    assert_eq!(instances.typo_in("https://example.com"), None);
    assert_eq!(instances.typo_in("locl"), None, "no `://`: no reference");
}

#[test]
fn schemes_and_instances() {
    err("github", "expected INSTANCE://PATH");
    // Text that is not a reference may be a value pasted in its place: not echoed.
    let e = SecretRef::parse("ghp_s3cretToken").unwrap_err();
    assert_eq!(
        e.to_string(),
        "not a secret reference (15 characters, not shown: it may be a value): expected INSTANCE://PATH, for example aws-sm://NAME or local://NAME"
    );
    assert_eq!(e.kind(), crate::ErrorKind::Invalid);
    err("s3://bucket/key", "no provider instance named `s3`;");
    err(
        "awssm://x",
        "no provider instance named `awssm` (did you mean `aws-sm`?);",
    );
    let mut instances = Instances::default();
    instances.insert("prod-aws", BackendKind::Aws).unwrap();
    let r = SecretRef::parse_with("prod-aws://db#pw", &instances).unwrap();
    assert_eq!(r.instance(), "prod-aws");
    assert_eq!(r.to_string(), "prod-aws://db?version-stage=AWSCURRENT#pw");
    assert!(instances.insert("Bad", BackendKind::Aws).is_err());
    assert!(instances.looks_like_reference("prod-aws://x"));
    assert!(!instances.looks_like_reference("https://example.com"));
}

#[test]
fn fields_are_percent_decoded_and_pointers_kept() {
    assert_eq!(
        ok("local://x#a%23b").field(),
        Some(&Field::Key("a#b".into()))
    );
    assert_eq!(
        ok("local://x#/a~1b/0").field(),
        Some(&Field::Pointer("/a~1b/0".into()))
    );
    assert_eq!(ok("local://x#k").without_field().field(), None);
}

/// Found by the fuzz run below (50,000 cases): `%23` in a version id decoded to `#`, which the canonical
/// form printed raw, so it parsed back as a field separator. Query values and fields are escaped now.
#[test]
fn escaped_query_values_and_fields_print_escaped_and_parse_back() {
    for input in [
        "aws-sm://0?version-id=%23",
        "aws-sm://s?version-stage=a%26b",
        "local://x#a%25b",
        "local://x#k%20%3F",
    ] {
        let parsed = SecretRef::parse(input).unwrap();
        let printed = parsed.to_string();
        assert_eq!(
            SecretRef::parse(&printed).unwrap(),
            parsed,
            "{input} -> {printed}"
        );
    }
    assert_eq!(
        SecretRef::parse("aws-sm://0?version-id=%23")
            .unwrap()
            .to_string(),
        "aws-sm://0?version-id=%23"
    );
}

/// Hostile input (`docs/security.md`): `KEYWAY_FUZZ_CASES` cases of each strategy (default 2,000).
mod fuzz {
    use proptest::prelude::*;

    use super::super::*;

    fn cases() -> u32 {
        crate::fuzz_cases(2000)
    }

    fn reference_shaped() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,80}",
            "(aws-sm|gcp-sm|local|prod-aws|AWS-SM)://[ -~]{0,60}",
            (
                "(aws-sm|gcp-sm|local)",
                "[a-zA-Z0-9/_+=.@:%-]{0,40}",
                "(\\?(version-id|version-stage|version)=[a-zA-Z0-9%]{0,12})?",
                "(#[a-z0-9/~._-]{0,12})?",
            )
                .prop_map(|(s, n, q, f)| format!("{s}://{n}{q}{f}")),
            // GCP's forms: regional paths, `location=`, aliases, in either order.
            (
                "(projects/[a-z0-9-]{0,8}/(locations/[a-zA-Z0-9_-]{0,10}/)?secrets/)?[a-z0-9_-]{0,10}",
                "(/versions/[a-zA-Z0-9_-]{0,8})?",
                "(\\?(location|version)=[a-zA-Z0-9_-]{0,10}(&(location|version)=[a-zA-Z0-9_-]{0,10})?)?",
            )
                .prop_map(|(p, v, q)| format!("gcp-sm://{p}{v}{q}")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

        /// No input panics; whatever parses prints a canonical form that parses to the same reference.
        #[test]
        fn references_never_panic_and_round_trip(input in reference_shaped()) {
            if let Ok(reference) = SecretRef::parse(&input) {
                let printed = reference.to_string();
                let again = SecretRef::parse(&printed).ok();
                prop_assert_eq!(again.as_ref(), Some(&reference), "{} -> {}", input, printed);
            }
        }
    }
}
