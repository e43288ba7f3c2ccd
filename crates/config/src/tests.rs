use std::path::Path;
use std::time::Duration;

use keyway_core::Ttl;

use super::*;

fn invalid(text: &str, needle: &str) {
    let err = Config::from_toml(text).unwrap_err().to_string();
    assert!(err.contains(needle), "`{err}` lacks `{needle}`");
}

#[test]
fn errors_name_the_place_never_the_value() {
    for (text, expected) in [
        (
            "[[git.credentials]]\nhost = \"github.com\"\npassword = ghp_s3cret\n",
            "line 3, column 12: string values must be quoted, expected literal string",
        ),
        (
            "[[git.credentials]]\nhost = \"github.com\"\npassword = 918273645\n",
            "line 3, column 12: invalid type: integer, expected a string",
        ),
        (
            "[cache]\nmax_bytes = \"s3cret\"\n",
            "line 2, column 13: invalid type: string, expected u64",
        ),
        (
            "[[git.credentials]]\nhost = \"github.com\"\npassword = \"ghp_s3cret\"\n",
            "[[git.credentials]] entry 1 (host github.com): password must be a reference to the token: not a secret reference (10 characters, not shown",
        ),
    ] {
        let err = Config::from_toml(text).unwrap_err().to_string();
        assert!(err.contains(expected), "`{err}` lacks `{expected}`");
        assert!(
            !err.contains("s3cret") && !err.contains("918273645"),
            "{err}"
        );
    }
    invalid(
        "[[git.credentials]]\nhost = \"h\"\npassword = \"doppler://x\"\n",
        "no provider instance named `doppler`",
    );
}

#[test]
fn reads_instances_ttls_and_git_mappings() {
    let config = Config::from_toml(
        r#"
        [providers.aws-sm]
        type = "aws"
        region = "eu-west-1"
        ttl = "90s"
        max_stale = "10m"
        [providers.forever]
        type = "local"
        dir = "/srv/secrets"
        ttl = -1
        [providers.bypass]
        type = "gcp"
        project = "p"
        ttl = 0
        [[git.credentials]]
        host = "github.com"
        password = "aws-sm://ci/github#github_token"
        "#,
    )
    .unwrap();
    let ttl = |name: &str| config.providers.providers[name].policy.ttl;
    assert_eq!(ttl("aws-sm"), Some(Ttl::For(Duration::from_secs(90))));
    assert_eq!(ttl("forever"), Some(Ttl::Forever));
    assert_eq!(ttl("bypass"), Some(Ttl::Bypass));
    assert_eq!(config.git.credentials[0].username, "x-access-token");
    let resolver = config.providers.resolver(PathBuf::from("secrets")).unwrap();
    assert_eq!(
        resolver.instances().names(),
        "aws-ps, aws-sm, azure-kv, bypass, forever, gcp-sm, k8s, local, vault"
    );
}

#[test]
fn rejects_what_does_not_fit() {
    invalid(
        "[providers.x]\ntype = \"doppler\"",
        "unknown variant `doppler`",
    );
    // A key of another backend is named, with the keys this one takes.
    invalid(
        "[providers.x]\ntype = \"aws\"\nproject = \"p\"",
        "[providers.x] of type aws: unknown field `project`, expected one of `region`, `profile`, `endpoint`, `credentials` (it takes these, and ttl, max_stale, stale_wait, timeout, rate_limit)",
    );
    invalid("[providers.x]\ntype = \"local\"", "needs `dir` or `file`");
    invalid(
        "[providers.x]\ntype = \"aws\"\nlocation = \"europe-west1\"",
        "[providers.x] of type aws: unknown field `location`",
    );
    invalid(
        "[providers.x]\ntype = \"local\"\nregion = \"us-east-1\"\ndir = \"d\"",
        "[providers.x] of type local: unknown field `region`",
    );
    invalid(
        "[providers.x]\ntype = \"gcp\"\nlocation = \"Europe West\"",
        "is not a GCP location; write e.g. \"europe-west1\"",
    );
    invalid(
        "[providers.x]\ntype = \"aws\"\ncredentials = \"static\"",
        "unknown variant `static`, expected `default` or `anonymous`",
    );
    invalid(
        "[providers.x]\ntype = \"aws\"\nttl = \"soon\"",
        "is not a TTL",
    );
    invalid("[providers.Bad]\ntype = \"aws\"", "instance name `Bad`");
    invalid("[cache]\nmax_byte = 1", "unknown field `max_byte`");
    invalid("[providers.x]\ntype = \"aws\"\nregion = ", "line 3");
}

#[test]
fn relative_paths_are_taken_from_the_config_files_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyway.toml");
    std::fs::write(
        &path,
        r#"
        [providers.local]
        type = "local"
        dir = "secrets"
        file = "../shared/secrets.yaml"
        age_identity = "/etc/keyway/age.key"
        [iam]
        spec = "cloud-config.yaml"
        [server]
        socket = "run/keyway.sock"
        audit_log = "audit.jsonl"
        [[server.tokens]]
        name = "app"
        file = "app.token"
        "#,
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    let base = dir.path();
    let keyway_providers::config::Backend::Local(local) =
        &config.providers.providers["local"].backend
    else {
        panic!("a local instance");
    };
    assert_eq!(local.dir.as_deref(), Some(base.join("secrets").as_path()));
    assert_eq!(
        local.file.as_deref(),
        Some(base.join("../shared/secrets.yaml").as_path())
    );
    assert_eq!(
        local.age_identity.as_deref(),
        Some(Path::new("/etc/keyway/age.key"))
    );
    assert_eq!(
        config.iam.spec.as_deref(),
        Some(base.join("cloud-config.yaml").as_path())
    );
    assert_eq!(
        config.server.socket.as_deref(),
        Some(base.join("run/keyway.sock").as_path())
    );
    assert_eq!(
        config.server.tokens[0].file.as_deref(),
        Some(base.join("app.token").as_path())
    );
    assert_eq!(
        Path::new(&config.server.audit_log),
        base.join("audit.jsonl")
    );

    std::fs::write(&path, "[server]\naudit_log = \"stderr\"\n").unwrap();
    assert_eq!(Config::load(&path).unwrap().server.audit_log, "stderr");
}
