use crate::{Ground, run, stderr, stdout};

#[test]
fn exec_sets_env_from_flags_and_from_reference_valued_variables() {
    let g = Ground::start();
    g.moto
        .create_secret("ci/github", r#"{"github_token":"ghp_exec"}"#);
    g.gcp.add_version("proj", "db", b"gcp-pw");
    let out = run(g
        .keyway()
        .env("DB_PASSWORD", "gcp-sm://proj/db")
        .env("PLAIN", "https://example.com")
        .args([
            "exec",
            "--env",
            "GITHUB_TOKEN=aws-sm://ci/github#github_token",
            "--",
            "sh",
            "-c",
        ])
        .arg("printf '%s|%s|%s' \"$GITHUB_TOKEN\" \"$DB_PASSWORD\" \"$PLAIN\""));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ghp_exec|gcp-pw|https://example.com");
}

#[test]
fn exec_passes_the_command_status_through_and_never_runs_on_failure() {
    let g = Ground::start();
    std::fs::write(g.dir.path().join("local/k"), "v").unwrap();
    let out = run(g
        .keyway()
        .args(["exec", "--env", "K=local://k", "--", "sh", "-c", "exit 7"]));
    assert_eq!(out.status.code(), Some(7));

    let marker = g.dir.path().join("ran");
    let out = run(g
        .keyway()
        .args([
            "exec",
            "--env",
            "K=local://k",
            "--env",
            "M=aws-sm://missing",
            "--",
            "touch",
        ])
        .arg(&marker));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        !marker.exists(),
        "the command ran although a secret was not delivered"
    );

    let out = run(g.keyway().args(["exec", "--", "/nonexistent/program"]));
    assert_eq!(out.status.code(), Some(127));
    let out = run(g.keyway().args(["exec", "--env", "NOEQUALS", "--", "true"]));
    assert_eq!(out.status.code(), Some(2));

    // One variable, two references: which one the command would see is a guess, so nothing runs.
    let out = run(g
        .keyway()
        .args([
            "exec",
            "--env",
            "K=local://k",
            "--env",
            "K=local://k2",
            "--",
            "touch",
        ])
        .arg(&marker));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("variable `K` is given twice in --env"),
        "{}",
        stderr(&out)
    );
    assert!(!marker.exists());
}
