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

#[test]
fn mask_conceals_values_in_the_commands_output_and_keeps_its_exit_code() {
    let g = Ground::start();
    std::fs::write(g.dir.path().join("local/k"), "ghp_masked_value\n").unwrap();
    std::fs::write(g.dir.path().join("local/short"), "ab").unwrap();
    // The URL form, stderr, and the value written in two pieces 200 ms apart (two reads for keyway).
    let script = r#"echo "clone https://x:$K@host/o/r"; echo "token $K" >&2
        printf 'split %s' "${K%?????}"; sleep 0.2; printf '%s and %s\n' "${K#${K%?????}}" "$S"; exit 4"#;
    let out = run(g.keyway().args([
        "exec",
        "--mask",
        "--env",
        "K=local://k",
        "--env",
        "S=local://short",
        "--",
        "sh",
        "-c",
        script,
    ]));
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        // The value's own trailing newline is printed, but the value is found without it.
        "clone https://x:<concealed by keyway>\n@host/o/r\nsplit <concealed by keyway>\n and ab\n"
    );
    let err = stderr(&out);
    assert!(err.contains("token <concealed by keyway>\n"), "{err}");
    assert!(
        err.contains("warning: the value of S is shorter than 4 characters and is not masked"),
        "{err}"
    );
    assert!(!format!("{}{err}", stdout(&out)).contains("ghp_masked"));

    let out = run(g
        .keyway()
        .args(["exec", "--mask", "--", "/nonexistent/program"]));
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
}

#[test]
fn mask_streams_output_and_passes_sigterm_on_but_not_sigint() {
    use std::io::BufRead as _;
    let g = Ground::start();
    std::fs::write(g.dir.path().join("local/k"), "ghp_masked_value").unwrap();
    let mut child = g
        .keyway()
        .args(["exec", "--mask", "--env", "K=local://k", "--", "sh", "-c"])
        .arg(r#"trap 'echo "got TERM with $K"; exit 3' TERM; echo "ready $K"; while :; do sleep 0.05; done"#)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // The line arrives while the command is still running: output is not held until it ends.
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "ready <concealed by keyway>"
    );
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGINT ended keyway; a terminal's Ctrl-C reaches the command by itself"
    );
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "got TERM with <concealed by keyway>"
    );
    assert_eq!(child.wait().unwrap().code(), Some(3));
}
