use crate::support::{Ground, run, stderr, stdout, unread_pipe};

#[test]
fn get_prints_aws_and_gcp_fields_exactly() {
    let g = Ground::start();
    g.moto
        .create_secret("ci/github", r#"{"github_token":"ghp_aws"}"#);
    g.gcp
        .add_version("proj", "github", br#"{"github_token":"ghp_gcp"}"#);

    let out = run(g.keyway().args(["get", "aws-sm://ci/github#github_token"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ghp_aws");

    let out = run(g
        .keyway()
        .args(["get", "gcp-sm://proj/github#github_token"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ghp_gcp");
}

#[test]
fn get_json_carries_metadata() {
    let g = Ground::start();
    g.moto.create_secret("db", "pw1");
    let v2 = g.moto.put_secret_value("db", "pw2");
    let out = run(g.keyway().args(["get", "--json", "aws-sm://db"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["value"], "pw2");
    assert_eq!(doc["version"], v2.as_str());
    assert_eq!(doc["encoding"], "text");
    assert_eq!(doc["ref"], "aws-sm://db?version-stage=AWSCURRENT");
    assert!(
        doc["stages"]
            .as_array()
            .unwrap()
            .contains(&"AWSCURRENT".into())
    );

    g.moto.create_binary_secret("bin", &[0, 159, 146, 150]);
    let out = run(g.keyway().args(["get", "--json", "aws-sm://bin"]));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (doc["encoding"].as_str(), doc["value"].as_str()),
        (Some("base64"), Some("AJ+Slg=="))
    );
    let raw = run(g.keyway().args(["get", "aws-sm://bin"]));
    assert_eq!(raw.stdout, vec![0, 159, 146, 150]);
}

#[test]
fn failures_have_documented_exit_codes_and_one_line_messages() {
    let g = Ground::start();
    g.moto.create_secret("json", r#"{"a":"1","b":"2"}"#);
    g.gcp.add_version("proj", "locked", b"x");
    g.gcp.deny("proj", "locked", false);

    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["get", "aws-sm://missing"],
            3,
            "`missing` (or the requested version) was not found",
        ),
        (&["get", "aws-sm://json#c"], 3, "fields present: a, b"),
        (
            &["get", "gcp-sm://proj/locked"],
            4,
            "roles/secretmanager.secretAccessor",
        ),
        (&["get", "nonsense"], 2, "expected INSTANCE://PATH"),
        (&["get", "s3://x"], 2, "no provider instance named `s3`"),
        (&["get", "local://absent"], 3, "`absent` not found"),
        (&["get", "--ttl", "soon", "local://x"], 2, "is not a TTL"),
    ];
    for (args, code, needle) in cases {
        let out = run(g.keyway().args(*args));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: `{err}` lacks `{needle}`");
        assert_eq!(
            err.lines()
                .filter(|l| l.starts_with("keyway: error:"))
                .count(),
            1,
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    }
}

#[test]
fn unreachable_upstream_exits_5() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("k.toml");
    let port = keyway_testkit::free_port();
    std::fs::write(
        &config,
        format!("[providers.aws-sm]\ntype = \"aws\"\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:{port}\"\ntimeout = \"2s\"\n"),
    )
    .unwrap();
    let out = run(crate::support::keyway(&config).args(["get", "aws-sm://x"]));
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("could not reach AWS Secrets Manager"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("k.toml");
    std::fs::write(&config, "[providers.x]\ntype = \"aws\"\nproject = \"p\"\n").unwrap();
    let out = run(crate::support::keyway(&config).args(["get", "local://x"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("[providers.x] of type aws: unknown field `project`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn list_prints_every_name() {
    let g = Ground::start();
    for i in 0..105 {
        g.moto.create_secret(&format!("app/s{i:03}"), "v");
    }
    let out = run(g.keyway().args(["list", "aws-sm"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 105);
    let out = run(g.keyway().args(["list", "aws-sm", "--filter", "app/s10"]));
    // AWS's Name filter matches prefixes: app/s100 to app/s104.
    assert_eq!(stdout(&out).lines().count(), 5);
}

/// Off GCE and GKE, with no Application Default Credentials, the Google client falls back to a metadata server
/// that is not there: the error says so and what to do (exit 4), not only the client's "transient errors".
#[test]
fn gcp_without_credentials_says_how_to_get_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keyway.toml");
    std::fs::write(
        &config,
        "[providers.gcp-sm]\ntype = \"gcp\"\nendpoint = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let out = run(crate::support::keyway(&config)
        .args(["get", "gcp-sm://proj/db"])
        .env("HOME", dir.path())
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env("GCE_METADATA_HOST", "127.0.0.1:9"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("from the metadata server")
            && err.contains("no Application Default Credentials file; run `gcloud auth application-default login`"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// With no region anywhere, a secret named by its ARN is read in the ARN's region (the ARN says where it lives);
/// a name alone, and a listing, say where to set one (exit 2).
#[test]
fn an_arn_needs_no_configured_region() {
    let g = Ground::start();
    let arn = g
        .moto
        .create_secret_in("eu-west-1", "app/token", "eu-token");
    let config = g.dir.path().join("no-region.toml");
    std::fs::write(
        &config,
        format!(
            "[providers.aws-sm]\ntype = \"aws\"\nendpoint = \"{}\"\n",
            g.moto.endpoint
        ),
    )
    .unwrap();
    let keyway = || {
        let mut cmd = crate::support::keyway(&config);
        cmd.env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env("AWS_CONFIG_FILE", g.dir.path().join("absent"))
            .env("AWS_SHARED_CREDENTIALS_FILE", g.dir.path().join("absent"));
        cmd
    };
    let out = run(keyway().args(["get", &format!("aws-sm://{arn}")]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "eu-token");
    for args in [&["get", "aws-sm://app/token"][..], &["list", "aws-sm"]] {
        let out = run(keyway().args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("no AWS region configured; set AWS_REGION"),
            "{}",
            stderr(&out)
        );
    }
}

/// `cmd` run by a shell that closes its stdout first (`CMD >&-`), as a careless init script or a supervisor
/// would. Rust's runtime reopens a closed stdout on `/dev/null`, so without a check the output goes nowhere.
fn with_stdout_closed(cmd: &std::process::Command) -> std::process::Command {
    crate::support::wrapped("sh", &["-c", r#"exec "$@" >&-"#, "sh"], cmd)
}

#[test]
fn a_closed_stdout_is_refused_before_anything_is_fetched() {
    let g = Ground::start();
    let template = g.dir.path().join("template");
    std::fs::write(g.dir.path().join("local/token"), "s3cr3t").unwrap();
    std::fs::write(&template, "token={{ local://token }}\n").unwrap();
    let template = template.to_str().unwrap();
    let refused: &[&[&str]] = &[
        &["get", "local://token"],
        // Not found upstream would be exit 3: the 2 shows nothing was fetched.
        &["get", "aws-sm://absent"],
        &["inject", "-i", template],
    ];
    for args in refused {
        let out = run(&mut with_stdout_closed(g.keyway().args(*args)));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("keyway: error: stdout was closed when keyway started")
                && err.lines().count() == 1
                && !err.contains("s3cr3t"),
            "{args:?}: {err}"
        );
    }

    // Commands that deliver no value to stdout run (a listing into nothing is its reader's business), and so
    // does a `get` into a chosen `> /dev/null`.
    for args in [&["list", "local"][..], &["completion", "bash"]] {
        let out = run(&mut with_stdout_closed(g.keyway().args(args)));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let out_file = g.dir.path().join("filled");
    let render_dir = g.dir.path().join("out");
    let out = run(&mut with_stdout_closed(
        g.keyway()
            .args(["inject", "-i", template, "-o"])
            .arg(&out_file),
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        "token=s3cr3t\n"
    );
    let out = run(&mut with_stdout_closed(
        g.keyway()
            .arg("render")
            .arg("--dir")
            .arg(&render_dir)
            .arg("t=local://token"),
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(render_dir.join("t")).unwrap(),
        "s3cr3t"
    );
    let out = run(g
        .keyway()
        .args(["get", "local://token"])
        .stdout(std::fs::File::create("/dev/null").unwrap()));
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A stderr nobody reads (a log shipper gone) loses keyway's warnings and errors, not its work or its exit code:
/// `eprintln!` would panic (exit 101) at the first warning.
#[test]
fn a_stderr_nobody_reads_changes_no_outcome() {
    let g = Ground::start();
    let template = g.dir.path().join("template");
    let filled = g.dir.path().join("filled");
    std::fs::write(g.dir.path().join("local/token"), "s3cr3t").unwrap();
    std::fs::write(&template, "token={{ local://token }}\n").unwrap();
    // --mode 0644 is applied with a warning on stderr.
    let out = g
        .keyway()
        .args(["inject", "--mode", "0644", "-i"])
        .arg(&template)
        .arg("-o")
        .arg(&filled)
        .stderr(unread_pipe())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&filled).unwrap(), "token=s3cr3t\n");
    let out = g
        .keyway()
        .args(["get", "local://absent"])
        .stderr(unread_pipe())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}

/// A reader that goes away early (`keyway list aws-sm | head -3`): `list` stops quietly with 0, while `get`,
/// whose value was not delivered, fails.
#[test]
fn a_reader_gone_ends_a_listing_quietly_and_fails_a_get() {
    let g = Ground::start();
    std::fs::write(g.dir.path().join("local/token"), "s3cr3t").unwrap();
    let out = g
        .keyway()
        .args(["list", "local"])
        .stdout(unread_pipe())
        .output()
        .unwrap();
    assert_eq!((out.status.code(), stderr(&out)), (Some(0), String::new()));
    let out = g
        .keyway()
        .args(["get", "local://token"])
        .stdout(unread_pipe())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write to stdout") && !err.contains("s3cr3t"),
        "{err}"
    );
}
