//! `keyway serve`'s configuration: reload on SIGHUP and on change, settings refused at start, `serve --check`.

use std::time::{Duration, Instant};

use keyway_testkit::raw;

use crate::support::{
    Ground, Served, eventually, metric, rewrite_config, run, stderr, stdout, uid,
};

#[test]
fn sighup_reloads_access_rules_and_the_audit_log_and_keeps_the_cache() {
    let me = uid();
    let audit = std::path::PathBuf::from("audit.log");
    let ground = Ground::with_extra(&format!(
        "[server]\naudit_log = \"{}\"\n[[server.access]]\nuids = [{me}]\nrefs = [\"local://team/*\"]\n",
        audit.display()
    ));
    let audit = ground.dir.path().join(audit);
    std::fs::create_dir_all(ground.dir.path().join("local/team")).unwrap();
    std::fs::write(ground.dir.path().join("local/team/db"), "db-pw").unwrap();
    std::fs::write(ground.dir.path().join("local/other"), "other-pw").unwrap();
    let served = Served::start(&ground, &[]);
    let unix = served.unix();
    let read = |name: &str| raw::get(&unix, &format!("/v1/secret?ref=local://{name}"), &[]);
    assert_eq!(read("team/db").json()["source"], "miss");
    assert_eq!(read("other").status, 403);

    // logrotate moves the audit log away; the operator widens the rule; then SIGHUP.
    std::fs::rename(&audit, audit.with_extension("log.1")).unwrap();
    rewrite_config(&ground, |text| text.replace("local://team/*", "local://**"));
    let pid = rustix::process::Pid::from_raw(served.pid().cast_signed()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    eventually("the widened rule lets `other` be read", || {
        read("other").status == 200
    });
    let again = read("team/db").json();
    assert_eq!(
        again["source"], "hit",
        "same providers: the cache was kept: {again}"
    );
    let lines = std::fs::read_to_string(&audit).expect("a new audit log after the reload");
    assert!(lines.contains(r#""ref":"local://other""#), "{lines}");
    let log = served.stderr();
    assert!(
        log.contains("configuration reloaded") && log.contains("kept"),
        "{log}"
    );
    assert!(metric(
        &served,
        r#"keyway_config_reloads_total{result="ok"} 1"#
    ));
}

#[test]
fn watch_config_applies_a_changed_file_and_refuses_a_broken_one() {
    let ground = Ground::start();
    for (dir, value) in [("local", "one"), ("local2", "two")] {
        std::fs::create_dir_all(ground.dir.path().join(dir).join("team")).unwrap();
        std::fs::write(ground.dir.path().join(dir).join("team/db"), value).unwrap();
    }
    let served = Served::start(&ground, &["--watch-config"]);
    let unix = served.unix();
    let read = || raw::get(&unix, "/v1/secret?ref=local://team/db", &[]);
    assert_eq!(read().json()["value"], "one");
    let original = std::fs::read_to_string(&ground.config).unwrap();

    // Half an edit, then an access rule that does not compile: each refused, the running one kept.
    rewrite_config(&ground, |text| format!("{text}\n[server\n"));
    eventually("the broken file is refused", || {
        metric(&served, r#"keyway_config_reloads_total{result="error"} 1"#)
    });
    rewrite_config(&ground, |_| {
        format!("{original}\n[server]\n[[server.access]]\nuids = [0]\nrefs = [\"local://a[\"]\n")
    });
    eventually("the bad rule is refused", || {
        metric(&served, r#"keyway_config_reloads_total{result="error"} 2"#)
    });
    rewrite_config(&ground, |_| original.replace("/local\"", "/missing\""));
    eventually("a store directory that is not there is refused", || {
        metric(&served, r#"keyway_config_reloads_total{result="error"} 3"#)
    });
    assert!(metric(&served, "keyway_config_last_reload_successful 0"));
    let kept = read();
    assert_eq!(
        (kept.status, kept.json()["value"].clone()),
        (200, "one".into())
    );
    let log = served.stderr();
    assert!(
        log.contains("reload refused")
            && log.contains("unclosed character class")
            && log.contains("/missing is not a directory; create it"),
        "{log}"
    );

    // Another local store and a setting that applies only at start.
    rewrite_config(&ground, |_| {
        format!(
            "{}\n[server]\nmax_connections = 7\n",
            original.replace("/local\"", "/local2\"")
        )
    });
    eventually("the new store is served", || {
        read().json()["value"] == "two"
    });
    assert!(metric(&served, "keyway_config_last_reload_successful 1"));
    // The emptied cache's counts were added to the new one's: one miss in each, the old cache's hits kept.
    let metrics = raw::get(&served.unix(), "/metrics", &[]).text();
    assert!(
        metrics.lines().any(|l| l == "keyway_cache_misses_total 2"),
        "{metrics}"
    );
    assert!(
        !metrics.lines().any(|l| l == "keyway_cache_hits_total 0"),
        "{metrics}"
    );
    let log = served.stderr();
    assert!(log.contains("[server] max_connections"), "{log}");
    assert!(log.contains("emptied (the providers changed)"), "{log}");
}

#[test]
fn settings_that_could_never_apply_are_refused_at_start() {
    for (server, says) in [
        (
            "[[server.access]]\nuids = [0]\nrefs = [\"locl://team/*\"]",
            "names `locl`, which is no configured provider instance (aws-ps, aws-sm, azure-kv, gcp-sm, k8s, local, vault)",
        ),
        (
            "[[server.access]]\nuids = [0]\nrefs = [\"team/*\"]",
            "`team/*` has no INSTANCE://",
        ),
        (
            "[[server.access]]\ntokens = [\"ap\"]\nrefs = [\"local://**\"]",
            "access rule 1 names token `ap`, which no [[server.tokens]] entry defines (tokens: none)",
        ),
        (
            "aws_compat_instance = \"aws\"",
            "aws_compat_instance = \"aws\" is no configured provider instance (aws-ps, aws-sm, azure-kv, gcp-sm, k8s, local, vault)",
        ),
    ] {
        let ground = Ground::with_extra(&format!("[server]\n{server}\n"));
        for check in [false, true] {
            let out = run(ground
                .keyway()
                .arg("--socket")
                .arg(ground.dir.path().join("k.sock"))
                .arg("serve")
                .args(check.then_some("--check")));
            assert_eq!(out.status.code(), Some(2), "{server}: {}", stderr(&out));
            assert!(stderr(&out).contains(says), "{server}: {}", stderr(&out));
        }
    }
}

#[test]
fn serve_check_passes_a_good_configuration_without_serving_it() {
    let ground = Ground::with_extra(
        "[server]\ntcp = \"127.0.0.1:0\"\n[[server.tokens]]\nname = \"app\"\nenv = \"APP_TOKEN\"\n[[server.access]]\ntokens = [\"app\"]\nrefs = [\"local://**\"]\n",
    );
    let socket = ground.dir.path().join("k.sock");
    let out = run(ground
        .keyway()
        .env("APP_TOKEN", "tok-123")
        .arg("--socket")
        .arg(&socket)
        .args(["serve", "--check"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{}: configuration OK\n", ground.config.display())
    );
    assert!(!socket.exists(), "--check bound the socket");
    // The same file on a machine without the token's variable: what the daemon would refuse, --check refuses.
    let out = run(ground
        .keyway()
        .arg("--socket")
        .arg(&socket)
        .args(["serve", "--check"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("APP_TOKEN is not set"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_socket_every_user_may_use_without_access_rules_is_warned_about() {
    let says = "is open to every local user (mode 0666) and no [[server.access]] rule limits what a caller reads";
    let open_dir = |ground: &Ground, mode: u32| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(ground.dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    };
    for (server, dir_mode, warned) in [
        ("", 0o755, true),
        ("", 0o700, false), // others cannot reach the socket through its directory
        ("socket_mode = \"0660\"", 0o755, false),
        (
            "[[server.access]]\nuids = [0]\nrefs = [\"local://**\"]",
            0o755,
            false,
        ),
    ] {
        let ground = Ground::with_extra(&format!("[server]\n{server}\n"));
        open_dir(&ground, dir_mode);
        let out = run(ground
            .keyway()
            .arg("--socket")
            .arg(ground.dir.path().join("k.sock"))
            .args(["serve", "--check"]));
        assert_eq!(out.status.code(), Some(0), "{server}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).contains(says),
            warned,
            "{server} {dir_mode:o}: {}",
            stderr(&out)
        );
    }
    // A running daemon says it in its log: at start, and after a reload that drops the last rule.
    let ground = Ground::start();
    open_dir(&ground, 0o755);
    let served = Served::start(&ground, &[]);
    assert!(served.stderr().contains(says), "{}", served.stderr());
    let rule = "[server]\n[[server.access]]\nuids = [0]\nrefs = [\"local://**\"]\n";
    let ground = Ground::with_extra(rule);
    open_dir(&ground, 0o755);
    let served = Served::start(&ground, &[]);
    let config = std::fs::read_to_string(&ground.config).unwrap();
    std::fs::write(&ground.config, config.replace(rule, "")).unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(served.pid().cast_signed()).unwrap(),
        rustix::process::Signal::HUP,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !served.stderr().contains("configuration reloaded") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        served.stderr().matches(says).count(),
        1,
        "{}",
        served.stderr()
    );
}

#[test]
fn watch_config_without_a_config_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(std::process::Command::new(env!("CARGO_BIN_EXE_keyway"))
        .env_remove("KEYWAY_CONFIG")
        .arg("--socket")
        .arg(dir.path().join("k.sock"))
        .args(["serve", "--watch-config"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("add --config FILE"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("k.sock").exists());
}
