use crate::support::{Ground, run, stderr, stdout};

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
fn a_value_that_looks_like_a_mistyped_reference_is_warned_about_and_set_as_written() {
    let g = Ground::start();
    let file = g.dir.path().join("app.env");
    std::fs::write(
        &file,
        "TOKEN=aws-ms://ci/github#github_token\nURL=https://example.com\n",
    )
    .unwrap();
    let out = run(g
        .keyway()
        .env("DB", "gpc-sm://proj/db")
        .args(["exec", "--env-file"])
        .arg(&file)
        .args([
            "--",
            "sh",
            "-c",
            "printf '%s|%s|%s' \"$TOKEN\" \"$URL\" \"$DB\"",
        ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "aws-ms://ci/github#github_token|https://example.com|gpc-sm://proj/db"
    );
    let said = stderr(&out);
    for line in [
        "keyway: warning: TOKEN in --env-file",
        "looks like a mistyped aws-sm:// reference",
        "keyway: warning: environment variable DB looks like a mistyped gcp-sm:// reference",
    ] {
        assert!(said.contains(line), "{said}");
    }
    assert!(
        !said.contains("URL") && !said.contains("ci/github"),
        "{said}"
    );
}

#[test]
fn env_files_hold_references_and_plain_values() {
    let g = Ground::start();
    g.moto
        .create_secret("ci/github", r#"{"github_token":"ghp_envfile"}"#);
    g.gcp.add_version("proj", "db", b"gcp-envfile");
    std::fs::write(g.dir.path().join("local/api"), "local-envfile").unwrap();
    let base = g.dir.path().join("base.env");
    std::fs::write(
        &base,
        "# shared\n\
         GITHUB_TOKEN=aws-sm://ci/github#github_token\n\
         export DB_PASSWORD='gcp-sm://proj/db'\n\
         DATABASE_URL=postgres://db.internal:5432/app   # not an instance: plain\n\
         LOG_LEVEL=info\n\
         API_KEY=local://api\n",
    )
    .unwrap();
    let over = g.dir.path().join("override.env");
    std::fs::write(&over, "LOG_LEVEL=debug\nAPI_KEY=\"set here\"\n").unwrap();
    let print = "printf '%s|%s|%s|%s|%s' \"$GITHUB_TOKEN\" \"$DB_PASSWORD\" \"$DATABASE_URL\" \"$LOG_LEVEL\" \"$API_KEY\"";
    let out = run(g
        .keyway()
        .env("LOG_LEVEL", "inherited")
        .arg("exec")
        .arg("--env-file")
        .arg(&base)
        .arg("--env-file")
        .arg(&over)
        .args(["--env", "GITHUB_TOKEN=local://api", "--", "sh", "-c", print]));
    assert!(out.status.success(), "{}", stderr(&out));
    // --env wins over the files, the later file over the earlier, a file over the inherited environment.
    assert_eq!(
        stdout(&out),
        "local-envfile|gcp-envfile|postgres://db.internal:5432/app|debug|set here"
    );

    // Supervised, the resolved values are masked; plain values are not secrets and stay.
    let out = run(g
        .keyway()
        .args(["exec", "--mask", "--env-file"])
        .arg(&base)
        .args(["--", "sh", "-c", print]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "<concealed by keyway>|<concealed by keyway>|postgres://db.internal:5432/app|info|<concealed by keyway>"
    );

    // Nothing runs when a reference in a file is not delivered, or a file is not dotenv; the message names
    // the variable or the line, never a value.
    let marker = g.dir.path().join("ran");
    let bad = g.dir.path().join("bad.env");
    for (text, code, said) in [
        ("TOKEN=aws-sm://missing\n", 3, "aws-sm://missing"),
        (
            "A=1\nTOKEN=s3cr3t with spaces\n",
            2,
            "line 2 is not VAR=VALUE",
        ),
        ("TOKEN=aws-sm://x?bogus=1\n", 2, "TOKEN in --env-file"),
    ] {
        std::fs::write(&bad, text).unwrap();
        let out = run(g
            .keyway()
            .args(["exec", "--env-file"])
            .arg(&bad)
            .arg("--")
            .arg("touch")
            .arg(&marker));
        assert_eq!(out.status.code(), Some(code), "{text}: {}", stderr(&out));
        assert!(stderr(&out).contains(said), "{text}: {}", stderr(&out));
        assert!(!stderr(&out).contains("s3cr3t"), "{}", stderr(&out));
        assert!(!marker.exists(), "{text}: the command ran");
    }
    let out = run(g
        .keyway()
        .args(["exec", "--env-file", "/nonexistent.env", "--", "true"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot read --env-file /nonexistent.env"));
}

/// `keyway exec --env E ... -- touch MARKER`: whether the command ran shows in the marker.
fn exec_touch(g: &Ground, envs: &[&str], marker: &std::path::Path) -> std::process::Output {
    let mut command = g.keyway();
    command.arg("exec");
    for env in envs {
        command.args(["--env", env]);
    }
    run(command.args(["--", "touch"]).arg(marker))
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
    let out = exec_touch(&g, &["K=local://k", "M=aws-sm://missing"], &marker);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        !marker.exists(),
        "the command ran although a secret was not delivered"
    );

    let out = run(g.keyway().args(["exec", "--", "/nonexistent/program"]));
    assert_eq!(out.status.code(), Some(127));
    let out = run(g.keyway().args(["exec", "--env", "NOEQUALS", "--", "true"]));
    assert_eq!(out.status.code(), Some(2));
    let out = run(g.keyway().args(["exec", "--watch", "0s", "--", "true"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`0s` is too short"),
        "{}",
        stderr(&out)
    );

    // One variable, two references: which one the command would see is a guess, so nothing runs.
    let out = exec_touch(&g, &["K=local://k", "K=local://k2"], &marker);
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
    // The URL form, stderr, the value base64-encoded after `x:` (HTTP basic auth), and the value written in two
    // pieces 200 ms apart (two reads for keyway).
    let script = r#"echo "clone https://x:$K@host/o/r"; echo "token $K" >&2; printf 'x:%s' "$K" | base64 >&2
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
    // base64("x:ghp_masked_value\n") is eDpnaHBfbWFza2VkX3ZhbHVlCg==: the letters the value alone decides go.
    assert!(err.contains("\neDp<concealed by keyway>Cg==\n"), "{err}");
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

/// The lines a child writes to its stdout, each waited for at most 20 s (a missing line fails the test, not
/// hangs it); the child is stopped when this is dropped.
struct Lines {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Lines {
    /// Starts `command` with its stdout and stderr piped.
    fn of(command: &mut std::process::Command) -> Lines {
        use std::io::BufRead as _;
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                if send.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        Lines { child, lines }
    }

    fn next(&self) -> String {
        self.lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the next line of output within 20 s")
    }

    fn signal(&self, signal: rustix::process::Signal) {
        rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), signal)
            .unwrap();
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        // HUP first, which keyway passes on, so that a test that fails leaves no command running.
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::HUP);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces a local secret's file at once, as a store that rotates it does (no reader sees it half written).
fn rotate(file: &std::path::Path, value: &str) {
    let temporary = file.with_extension("new");
    std::fs::write(&temporary, value).unwrap();
    std::fs::rename(&temporary, file).unwrap();
}

#[test]
fn mask_streams_output_and_passes_sigterm_on_but_not_sigint() {
    let g = Ground::start();
    std::fs::write(g.dir.path().join("local/k"), "ghp_masked_value").unwrap();
    let mut run = Lines::of(
        g.keyway()
            .args(["exec", "--mask", "--env", "K=local://k", "--", "sh", "-c"])
            .arg(r#"trap 'echo "got TERM with $K"; exit 3' TERM; echo "ready $K"; while :; do sleep 0.05; done"#),
    );
    // The line arrives while the command is still running: output is not held until it ends.
    assert_eq!(run.next(), "ready <concealed by keyway>");
    run.signal(rustix::process::Signal::INT);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "SIGINT ended keyway; a terminal's Ctrl-C reaches the command by itself"
    );
    run.signal(rustix::process::Signal::TERM);
    assert_eq!(run.next(), "got TERM with <concealed by keyway>");
    assert_eq!(run.child.wait().unwrap().code(), Some(3));
}

#[test]
fn watch_restarts_the_command_when_a_value_changes() {
    let g = Ground::start();
    let file = g.dir.path().join("local/k");
    std::fs::write(&file, "first").unwrap();
    let mut run = Lines::of(
        g.keyway()
            .args(["exec", "--watch", "100ms", "--env", "K=local://k", "--", "sh", "-c"])
            .arg(r#"trap 'echo "stop $K"; exit 0' TERM; echo "start $K"; while :; do sleep 0.05; done"#),
    );
    assert_eq!(run.next(), "start first");

    // A failed round (the secret is gone for a while) keeps the command and its value.
    std::fs::remove_file(&file).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert!(run.child.try_wait().unwrap().is_none());
    rotate(&file, "second");
    assert_eq!(run.next(), "stop first");
    assert_eq!(run.next(), "start second");

    // SIGTERM to keyway reaches the command, which is not started again; its exit code is keyway's.
    run.signal(rustix::process::Signal::TERM);
    assert_eq!(run.next(), "stop second");
    assert_eq!(run.child.wait().unwrap().code(), Some(0));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut run.child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("keyway: a secret changed; restarting the command"),
        "{err}"
    );
    assert!(!err.contains("second"), "{err}");
}

#[test]
fn watch_with_mask_conceals_the_new_value_and_stops_with_the_chosen_signal() {
    let g = Ground::start();
    let file = g.dir.path().join("local/k");
    std::fs::write(&file, "value-one").unwrap();
    // The command ignores TERM and stops on INT: only --stop-signal INT restarts it.
    let mut run = Lines::of(
        g.keyway()
            .args(["exec", "--mask", "--watch", "100ms", "--stop-signal", "INT"])
            .args(["--env", "K=local://k", "--", "sh", "-c"])
            .arg(r#"trap '' TERM; trap 'echo "int $K"; exit 0' INT; echo "start $K"; while :; do sleep 0.05; done"#),
    );
    assert_eq!(run.next(), "start <concealed by keyway>");
    rotate(&file, "value-two");
    assert_eq!(run.next(), "int <concealed by keyway>");
    assert_eq!(run.next(), "start <concealed by keyway>");
    // The command ends by itself (HUP, passed on): keyway ends with its code.
    run.signal(rustix::process::Signal::HUP);
    assert_eq!(run.child.wait().unwrap().code(), Some(128 + 1));
}

#[test]
fn watch_kills_a_command_that_does_not_stop_in_time() {
    let g = Ground::start();
    let file = g.dir.path().join("local/k");
    std::fs::write(&file, "first").unwrap();
    let mut run = Lines::of(
        g.keyway()
            .args(["exec", "--watch", "100ms", "--stop-timeout", "300ms"])
            .args(["--env", "K=local://k", "--", "sh", "-c"])
            .arg(r#"trap '' TERM; echo "start $K"; while :; do sleep 0.05; done"#),
    );
    assert_eq!(run.next(), "start first");
    let rotated = std::time::Instant::now();
    rotate(&file, "second");
    assert_eq!(run.next(), "start second");
    assert!(rotated.elapsed() >= std::time::Duration::from_millis(300));
    run.signal(rustix::process::Signal::HUP);
    assert_eq!(run.child.wait().unwrap().code(), Some(128 + 1));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut run.child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("the command did not stop in time; killing it"),
        "{err}"
    );
}

#[test]
fn processes_the_command_leaves_behind_are_collected_when_they_end() {
    let g = Ground::start();
    std::fs::write(g.dir.path().join("local/k"), "first").unwrap();
    // The inner shell starts `sleep 0.1` in the background and exits: the sleep is orphaned and reparented to
    // keyway (a child subreaper, as PID 1 is in a container).
    let mut run = Lines::of(
        g.keyway()
            .args(["exec", "--watch", "1h", "--env", "K=local://k"])
            .args(["--", "sh", "-c"])
            .arg("sh -c 'sleep 0.1 &'; echo orphaned; exec sleep 10"),
    );
    assert_eq!(run.next(), "orphaned");
    let keyway = run.child.id().to_string();
    let zombies = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| {
                let stat = std::fs::read_to_string(entry.ok()?.path().join("stat")).ok()?;
                let after = &stat[stat.rfind(')')? + 1..];
                let fields: Vec<&str> = after.split_whitespace().take(2).collect();
                (fields == ["Z", keyway.as_str()]).then_some(stat)
            })
            .collect()
    };
    // It ends 100 ms in and becomes keyway's zombie (which proves the reparenting), and is collected once it
    // has waited a second (1-2 s: the scan runs every second).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while zombies().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the orphan never became keyway's child"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !zombies().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "zombies left under keyway: {:?}",
            zombies()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    run.signal(rustix::process::Signal::TERM);
    assert_eq!(run.child.wait().unwrap().code(), Some(128 + 15));
}
