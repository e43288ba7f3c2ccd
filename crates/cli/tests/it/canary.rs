//! A recognisable value goes through every CLI path with the most verbose logging; it must appear only where
//! it is delivered (stdout of `get`, the rendered files, the exec'd process), never in stderr.

use crate::support::{Ground, run, stderr, stdout};

const CANARY: &str = "CANARY-7f3a9c-do-not-log";

fn assert_clean(what: &str, out: &std::process::Output) {
    let err = stderr(out);
    assert!(
        !err.contains(CANARY),
        "{what}: the canary leaked to stderr:\n{err}"
    );
    assert!(
        !err.is_empty() || what.contains("quiet"),
        "{what}: expected verbose logs on stderr"
    );
}

#[test]
fn canary_never_reaches_logs_or_errors() {
    let g = Ground::start();
    let json = format!(r#"{{"github_token":"{CANARY}","other":"{CANARY}-2"}}"#);
    g.moto.create_secret("canary", &json);
    g.gcp.add_version("proj", "canary", json.as_bytes());
    std::fs::write(g.dir.path().join("local/canary"), &json).unwrap();
    let out_dir = g.dir.path().join("out");

    for log in [None, Some("trace")] {
        let keyway = || {
            let mut cmd = g.keyway();
            cmd.arg("-vvv");
            if let Some(filter) = log {
                cmd.env("KEYWAY_LOG", filter);
            }
            cmd
        };
        for reference in [
            "aws-sm://canary#github_token",
            "gcp-sm://proj/canary#github_token",
            "local://canary#github_token",
        ] {
            let out = run(keyway().args(["get", reference]));
            assert!(out.status.success(), "{}", stderr(&out));
            assert_eq!(String::from_utf8_lossy(&out.stdout), CANARY);
            assert_clean(&format!("get {reference} (log {log:?})"), &out);

            let out = run(keyway().args(["get", "--json", reference]));
            assert_clean("get --json", &out);

            let out = run(keyway().args([
                "render",
                "--dir",
                out_dir.to_str().unwrap(),
                &format!("f={reference}"),
            ]));
            assert!(out.status.success(), "{}", stderr(&out));
            assert_eq!(std::fs::read_to_string(out_dir.join("f")).unwrap(), CANARY);
            assert_clean("render", &out);
            inject_is_clean(&keyway, reference, &out_dir.join("t.tpl"));

            let template = g.dir.path().join("canary.tpl");
            std::fs::write(&template, format!("token={{{{ {reference} }}}}\n")).unwrap();
            let out = run(keyway()
                .args(["render", "--dir", out_dir.to_str().unwrap()])
                .args(["--template", &format!("t={}", template.display())]));
            assert!(out.status.success(), "{}", stderr(&out));
            assert_eq!(
                std::fs::read_to_string(out_dir.join("t")).unwrap(),
                format!("token={CANARY}\n")
            );
            assert_clean("render --template", &out);

            let out = run(keyway()
                .args([
                    "exec",
                    "--env",
                    &format!("T={reference}"),
                    "--",
                    "sh",
                    "-c",
                    "test \"$T\" = \"$EXPECT\"",
                ])
                .env("EXPECT", CANARY));
            assert!(out.status.success(), "{}", stderr(&out));
            assert_clean("exec", &out);

            let env_file = g.dir.path().join("canary.env");
            std::fs::write(&env_file, format!("T={reference}\nPLAIN=1\n")).unwrap();
            let out = run(keyway()
                .args(["exec", "--env-file"])
                .arg(&env_file)
                .args(["--", "sh", "-c", "test \"$T\" = \"$EXPECT\""])
                .env("EXPECT", CANARY));
            assert!(out.status.success(), "{}", stderr(&out));
            assert_clean("exec --env-file", &out);

            git_credential_is_clean(&keyway, reference);

            // A command that prints its environment, under --mask and --watch (keyway stays its parent).
            let out = run(keyway().args([
                "exec",
                "--mask",
                "--watch",
                "1h",
                "--env",
                &format!("T={reference}"),
                "--",
                "sh",
                "-c",
                "env; echo \"$T\" >&2",
            ]));
            assert!(out.status.success(), "{}", stderr(&out));
            assert!(
                stdout(&out).contains("T=<concealed by keyway>"),
                "{}",
                stdout(&out)
            );
            assert!(!stdout(&out).contains(CANARY), "{}", stdout(&out));
            assert_clean("exec --mask --watch", &out);

            // Errors about the secret name its fields, never their values.
            let missing = reference.replace("#github_token", "#nope");
            let out = run(keyway().args(["get", &missing]));
            assert_eq!(out.status.code(), Some(3));
            assert!(stderr(&out).contains("fields present: github_token, other"));
            assert_clean("missing field", &out);
        }
    }
}

/// `keyway inject` of a template holding `reference`, to stdout.
fn inject_is_clean(
    keyway: &dyn Fn() -> std::process::Command,
    reference: &str,
    template: &std::path::Path,
) {
    std::fs::write(template, format!("token={{{{ {reference} }}}}\n")).unwrap();
    let out = run(keyway().args(["inject", "-i"]).arg(template));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("token={CANARY}\n"));
    assert_clean("inject", &out);
}

/// git's credential helper, answering with `reference` and then told the answer was refused.
fn git_credential_is_clean(keyway: &dyn Fn() -> std::process::Command, reference: &str) {
    for (action, input) in [
        ("get", "protocol=https\nhost=example.com\n\n".to_owned()),
        (
            "erase",
            format!(
                "protocol=https\nhost=example.com\nusername=x-access-token\npassword={CANARY}\n\n"
            ),
        ),
    ] {
        let out = crate::support::run_with_stdin(
            keyway().args([
                "git-credential",
                "--host",
                "example.com",
                "--password",
                reference,
                action,
            ]),
            input.as_bytes(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stdout(&out).contains(&format!("password={CANARY}\n")),
            action == "get",
            "{}",
            stdout(&out)
        );
        assert_clean(&format!("git-credential {action}"), &out);
    }
}

/// The daemon at trace level with an audit log and per-secret metrics: the canary goes out in the answers of
/// the native, batch and AWS-agent endpoints (the positive control), and appears in no log line, audit record,
/// metric or error answer.
#[test]
fn canary_never_reaches_the_daemons_logs_audit_records_or_metrics() {
    use keyway_testkit::raw;
    let g = Ground::with_extra("[server]\naudit_log = \"AUDIT\"\nmetrics_secret_names = true\n");
    let audit = g.dir.path().join("audit.jsonl");
    let config = std::fs::read_to_string(&g.config)
        .unwrap()
        .replace("AUDIT", audit.to_str().unwrap());
    std::fs::write(&g.config, config).unwrap();
    let json = format!(r#"{{"github_token":"{CANARY}","other":"{CANARY}-2"}}"#);
    g.moto.create_secret("canary", &json);
    g.gcp.add_version("proj", "canary", json.as_bytes());
    let served = crate::support::Served::start_with_env(&g, &[], &[("KEYWAY_LOG", "trace")]);
    let unix = served.unix();
    let mut delivered = 0;
    for path in [
        "/v1/secret?ref=aws-sm://canary%23github_token",
        "/v1/secret?ref=gcp-sm://proj/canary%23github_token",
        "/v1/secret?ref=aws-sm://canary%23github_token&refresh=true",
        "/secretsmanager/get?secretId=canary",
    ] {
        let reply = raw::get(&unix, path, &[]);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        delivered += usize::from(reply.text().contains(CANARY));
    }
    let batch = raw::post(
        &unix,
        "/v1/secrets",
        &[],
        br#"{"refs":["aws-sm://canary#github_token","gcp-sm://proj/canary#nope"]}"#,
    );
    assert!(batch.text().contains(CANARY), "{}", batch.text());
    assert!(
        !batch.text().contains(&format!("{CANARY}-2")),
        "errors name fields, not values"
    );
    assert_eq!(
        delivered, 4,
        "the canary was delivered (the scan below means something)"
    );
    let missing = raw::get(&unix, "/v1/secret?ref=aws-sm://canary%23nope", &[]);
    assert!(!missing.text().contains(CANARY), "{}", missing.text());
    let metrics = raw::get(&unix, "/metrics", &[]).text();
    assert!(
        metrics.contains("canary"),
        "names are labels when enabled: {metrics}"
    );
    assert!(!metrics.contains(CANARY), "{metrics}");
    let audit_text = std::fs::read_to_string(&audit).unwrap();
    assert!(audit_text.contains("aws-sm://canary"), "{audit_text}");
    assert!(!audit_text.contains(CANARY), "{audit_text}");
    let log = served.stderr();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "verbose: {log}"
    );
    assert!(!log.contains(CANARY), "{log}");
}

/// The webhook's patch carries references only; the init container's render writes the value to a file of
/// mode 0400 owned as configured (and into a template's file), and says nothing of it.
#[test]
fn canary_through_the_webhook_lands_only_in_its_file() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let g = Ground::start();
    g.moto
        .create_secret("canary", &format!(r#"{{"github_token":"{CANARY}"}}"#));
    let review = crate::webhook::admission_review(
        "c1",
        &serde_json::json!({
            "metadata": {"name": "p", "annotations": {
                "keyway.dev/inject": "true",
                "keyway.dev/owner": "1000:2000",
                "keyway.dev/secret.token": "aws-sm://canary#github_token",
                "keyway.dev/template.app.env": "TOKEN={{ aws-sm://canary#github_token }}\n# {{ .Values.kept }}\n"
            }},
            "spec": {"containers": [{"name": "app", "image": "app", "command": ["./app"]}]}
        }),
    );
    let review_file = g.dir.path().join("review.json");
    std::fs::write(&review_file, review.to_string()).unwrap();
    let answer = run(g
        .keyway()
        .args(["-vvv", "webhook", "--review"])
        .arg(&review_file));
    assert!(answer.status.success(), "{}", stderr(&answer));
    let answered = String::from_utf8_lossy(&answer.stdout).into_owned();
    let response: serde_json::Value = serde_json::from_str(&answered).unwrap();
    let patch = String::from_utf8(crate::webhook::patch_bytes(&response)).unwrap();
    assert!(
        patch.contains("aws-sm://canary") && !patch.contains(CANARY),
        "{patch}"
    );
    let command = init_command(&serde_json::from_str(&patch).unwrap()).expect("an init container");
    let volume = g.dir.path().join("volume");
    let mut args = command[1..].to_vec();
    let dir_at = args.iter().position(|a| a == "--dir").unwrap() + 1;
    args[dir_at] = volume.to_str().unwrap().to_owned();
    let out = run(g
        .keyway()
        .arg("-vvv")
        .args(&args)
        .env("KEYWAY_LOG", "trace"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_clean("webhook init render", &out);
    let file = volume.join("token");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), CANARY);
    assert_eq!(
        std::fs::read_to_string(volume.join("app.env")).unwrap(),
        format!("TOKEN={CANARY}\n# {{{{ .Values.kept }}}}\n")
    );
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o400);
    if rustix::process::geteuid().is_root() {
        assert_eq!(
            (meta.uid(), meta.gid()),
            (1000, 2000),
            "owned as the annotation says"
        );
    }
}

/// The command of the `keyway-render` init container, wherever the patch puts it.
fn init_command(value: &serde_json::Value) -> Option<Vec<String>> {
    match value {
        serde_json::Value::Object(map)
            if map.get("name").and_then(|n| n.as_str()) == Some("keyway-render") =>
        {
            let command = map.get("command")?.as_array()?;
            Some(
                command
                    .iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect(),
            )
        }
        serde_json::Value::Object(map) => map.values().find_map(init_command),
        serde_json::Value::Array(items) => items.iter().find_map(init_command),
        _ => None,
    }
}

/// A value pasted where a reference belongs (the commonest slip: the token itself instead of where it lives)
/// is refused with exit 2 by every entry point, and no error repeats it; each names the place instead.
#[test]
fn a_value_given_in_place_of_a_reference_is_never_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("keyway.toml");
    std::fs::write(&plain, "").unwrap();
    let out_dir = dir.path().join("out");
    let out_dir = out_dir.to_str().unwrap();
    let env = format!("TOKEN={CANARY}");
    let file = format!("token={CANARY}");
    let cases: [(&[&str], &str); 7] = [
        (
            &["get", CANARY],
            "not a secret reference (24 characters, not shown",
        ),
        (
            &["render", "--dir", out_dir, &file],
            "file token: not a secret reference",
        ),
        (
            &["render", "--dir", out_dir, CANARY],
            "an argument is not NAME=REF",
        ),
        (
            &["exec", "--env", &env, "--", "true"],
            "--env TOKEN: not a secret reference",
        ),
        (
            &["exec", "--env", CANARY, "--", "true"],
            "an --env is not VAR=REF",
        ),
        (
            &["exec", "--env", &format!("={CANARY}"), "--", "true"],
            "an --env has no variable name",
        ),
        (
            &[
                "git-credential",
                "--host",
                "github.com",
                "--password",
                CANARY,
                "get",
            ],
            "--password: not a secret reference",
        ),
    ];
    for (args, needle) in cases {
        let out = run(crate::support::keyway(&plain)
            .args(args)
            .stdin(std::process::Stdio::null()));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(needle) && !err.contains(CANARY),
            "{args:?}: {err}"
        );
    }
    for config in [
        format!("[[git.credentials]]\nhost = \"github.com\"\npassword = \"{CANARY}\"\n"),
        format!("[[git.credentials]]\nhost = \"github.com\"\npassword = {CANARY}\n"),
        "[[git.credentials]]\nhost = \"github.com\"\npassword = 918273645\n".to_owned(),
    ] {
        std::fs::write(&plain, &config).unwrap();
        for args in [&["serve", "--check"][..], &["get", "local://x"]] {
            let out = run(crate::support::keyway(&plain).args(args));
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{config}: {err}");
            assert!(
                err.contains("line 3")
                    || err.contains("[[git.credentials]] entry 1 (host github.com)"),
                "{config}: {err}"
            );
            assert!(
                !err.contains(CANARY) && !err.contains("918273645"),
                "{config}: {err}"
            );
        }
    }
}
