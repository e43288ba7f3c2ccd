//! A recognisable value goes through every CLI path with the most verbose logging; it must appear only where
//! it is delivered (stdout of `get`, the rendered file, the exec'd process), never in stderr.

use crate::{Ground, run, stderr};

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

            // Errors about the secret name its fields, never their values.
            let missing = reference.replace("#github_token", "#nope");
            let out = run(keyway().args(["get", &missing]));
            assert_eq!(out.status.code(), Some(3));
            assert!(stderr(&out).contains("fields present: github_token, other"));
            assert_clean("missing field", &out);
        }
    }
}
