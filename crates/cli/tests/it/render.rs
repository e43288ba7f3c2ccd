use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use crate::support::{Ground, run, stderr};

#[test]
fn renders_fifty_aws_secrets_and_gcp_ones_with_mode() {
    let g = Ground::start();
    let mut args = vec!["render".to_owned(), "--dir".to_owned()];
    let out_dir = g.dir.path().join("out");
    args.push(out_dir.display().to_string());
    for i in 0..50 {
        g.moto
            .create_secret(&format!("svc/s{i}"), &format!(r#"{{"token":"t{i}"}}"#));
        args.push(format!("s{i}=aws-sm://svc/s{i}#token"));
    }
    g.gcp.add_version("proj", "g", b"gcp-value");
    args.push("nested/g=gcp-sm://proj/g".into());
    let out = run(g.keyway().args(&args));
    assert!(out.status.success(), "{}", stderr(&out));
    for i in 0..50 {
        let path = out_dir.join(format!("s{i}"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("t{i}"));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o400
        );
    }
    assert_eq!(
        std::fs::read_to_string(out_dir.join("nested/g")).unwrap(),
        "gcp-value"
    );
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 51);
}

#[test]
fn mode_and_owner_are_applied_and_a_mode_others_can_read_warns() {
    let g = Ground::start();
    std::fs::write(g.dir.path().join("local/k"), "v").unwrap();
    let out_dir = g.dir.path().join("out");
    let mut cmd = g.keyway();
    cmd.args([
        "render",
        "--dir",
        out_dir.to_str().unwrap(),
        "--mode",
        "0440",
        "a/b=local://k",
    ]);
    let running_as_root = rustix_is_root();
    if running_as_root {
        cmd.args(["--uid", "4242", "--gid", "4343"]);
    }
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("every user"), "{}", stderr(&out));
    let meta = std::fs::metadata(out_dir.join("a/b")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o440);
    if running_as_root {
        assert_eq!((meta.uid(), meta.gid()), (4242, 4343));
        let dir_meta = std::fs::metadata(out_dir.join("a")).unwrap();
        assert_eq!((dir_meta.uid(), dir_meta.gid()), (4242, 4343));
    }

    // A mode others can read is applied as asked, with a warning.
    let out = run(g
        .keyway()
        .args(["render", "--dir", out_dir.to_str().unwrap()])
        .args(["--mode", "0644", "c=local://k"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "keyway: warning: mode 0644 lets every user on this machine read the secrets; use 0400 with --uid, or 0440 with --gid for a group"
        ),
        "{}",
        stderr(&out)
    );
    let meta = std::fs::metadata(out_dir.join("c")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
}

fn rustix_is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[test]
fn one_failure_writes_nothing() {
    let g = Ground::start();
    g.moto.create_secret("ok", "v");
    let out_dir = g.dir.path().join("out");
    let out = run(g.keyway().args([
        "render",
        "--dir",
        out_dir.to_str().unwrap(),
        "a=aws-sm://ok",
        "b=aws-sm://missing",
    ]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 of 2 references failed; nothing was delivered"),
        "{}",
        stderr(&out)
    );
    assert!(
        !out_dir.join("a").exists(),
        "a partial render was left behind"
    );
}

/// keyway as `g.keyway()` runs it, under `setpriv` with the capability bounding set changed by `caps` (for
/// root, the capabilities it then has).
fn with_bounding_set(g: &Ground, caps: &str) -> std::process::Command {
    crate::support::wrapped(
        "setpriv",
        &[&format!("--bounding-set={caps}"), "--"],
        &g.keyway(),
    )
}

#[test]
fn render_as_root_with_only_the_webhooks_capabilities_gives_files_away_and_replaces_them() {
    // With keyway.dev/owner the webhook runs render as root with CHOWN and DAC_OVERRIDE only (the refresh
    // sidecar too, which renders again over the files and into the directories it gave away), in a volume
    // like an emptyDir (root's, 0777).
    if !rustix_is_root() {
        return;
    }
    let g = Ground::start();
    let out_dir = g.dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    for value in ["first", "second"] {
        std::fs::write(g.dir.path().join("local/k"), value).unwrap();
        let out = run(with_bounding_set(&g, "-all,+chown,+dac_override")
            .args(["render", "--dir"])
            .arg(&out_dir)
            .args(["--mode", "0400", "--uid", "4242", "--gid", "4343"])
            .args(["a/b=local://k", "c=local://k"]));
        assert!(out.status.success(), "{value}: {}", stderr(&out));
        for name in ["a/b", "c"] {
            let path = out_dir.join(name);
            assert_eq!(std::fs::read_to_string(&path).unwrap(), value);
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid(), meta.permissions().mode() & 0o777),
                (4242, 4343, 0o400),
                "{name}"
            );
        }
    }
}

#[test]
fn a_file_that_cannot_be_written_leaves_every_target_as_it_was() {
    // Every value arrives, but `locked/y` cannot be written: `locked` belongs to another user and keyway runs
    // without the capability to override file permissions (setpriv drops it, as a non-root user lacks it).
    // `x`, written first, must not be replaced either, and no temporary file may stay behind.
    if !rustix_is_root() {
        return;
    }
    let g = Ground::start();
    std::fs::write(g.dir.path().join("local/a"), "new-a").unwrap();
    std::fs::write(g.dir.path().join("local/b"), "new-b").unwrap();
    let out_dir = g.dir.path().join("out");
    let locked = out_dir.join("locked");
    std::fs::create_dir_all(&locked).unwrap();
    std::os::unix::fs::chown(&locked, Some(65534), Some(65534)).unwrap();
    std::fs::write(out_dir.join("x"), "old-x").unwrap();
    let out = run(
        with_bounding_set(&g, "-dac_override,-dac_read_search").args([
            "render",
            "--dir",
            out_dir.to_str().unwrap(),
            "x=local://a",
            "locked/y=local://b",
        ]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing was replaced: cannot write")
            && stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(out_dir.join("x")).unwrap(), "old-x");
    assert_eq!(
        crate::support::names_in(&out_dir),
        ["locked", "x"],
        "a temporary file was left behind"
    );
}

#[test]
fn a_name_as_long_as_the_file_system_allows_is_written() {
    let g = Ground::start();
    std::fs::write(g.dir.path().join("local/k"), "v").unwrap();
    let out_dir = g.dir.path().join("out");
    let name = "n".repeat(255);
    let out = run(g.keyway().args([
        "render",
        "--dir",
        out_dir.to_str().unwrap(),
        &format!("{name}=local://k"),
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(out_dir.join(&name)).unwrap(), "v");
}

#[test]
fn a_target_that_could_not_be_replaced_is_refused_before_any_file_is() {
    // A rename over a directory, or under a file, fails; found only at rename time, it failed after `a` was
    // already replaced. Now each is refused first (exit 2): `a` keeps its old value, no temporary file stays.
    let g = Ground::start();
    std::fs::write(g.dir.path().join("local/k"), "new").unwrap();
    let out_dir = g.dir.path().join("out");
    std::fs::create_dir_all(out_dir.join("dir")).unwrap();
    // A missing reference too: were the targets checked after the fetches, the answer would be 3.
    std::fs::write(out_dir.join("file"), "old").unwrap();
    std::fs::write(out_dir.join("a"), "old").unwrap();
    for (names, expected) in [
        (
            ["a", "dir"],
            "is a directory, which a secret file cannot replace",
        ),
        (["a", "file/x"], "is a file, so"),
        (["b/c", "b"], "clash: one would be the other's directory"),
        (["b", "b/c"], "clash: one would be the other's directory"),
    ] {
        let out = run(g
            .keyway()
            .arg("render")
            .arg("--dir")
            .arg(&out_dir)
            .args(names.map(|name| format!("{name}=local://k")))
            .arg("absent=local://absent"));
        assert_eq!(out.status.code(), Some(2), "{names:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{names:?}: {}",
            stderr(&out)
        );
        assert_eq!(std::fs::read_to_string(out_dir.join("a")).unwrap(), "old");
        assert_eq!(
            crate::support::names_in(&out_dir),
            ["a", "dir", "file"],
            "{names:?}"
        );
    }
}

#[test]
fn a_dir_that_is_a_file_is_refused_before_any_fetch() {
    // The reference is missing: were it fetched first, the answer would be 3 (not found), not 2.
    let g = Ground::start();
    let file = g.dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = run(g
        .keyway()
        .args(["render", "--dir"])
        .arg(&file)
        .arg("a=local://absent"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exists and is not a directory"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn names_that_escape_and_symlinks_are_refused() {
    let g = Ground::start();
    std::fs::write(g.dir.path().join("local/k"), "v").unwrap();
    let out_dir = g.dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    for name in ["../escape", "/etc/x", "a/../../b"] {
        let out = run(g.keyway().args([
            "render",
            "--dir",
            out_dir.to_str().unwrap(),
            &format!("{name}=local://k"),
        ]));
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("would escape --dir"),
            "{}",
            stderr(&out)
        );
    }
    let victim = g.dir.path().join("victim");
    std::fs::write(&victim, "original").unwrap();
    std::os::unix::fs::symlink(&victim, out_dir.join("link")).unwrap();
    std::os::unix::fs::symlink(g.dir.path(), out_dir.join("dirlink")).unwrap();
    for name in ["link", "dirlink/victim"] {
        let out = run(g.keyway().args([
            "render",
            "--dir",
            out_dir.to_str().unwrap(),
            &format!("{name}=local://k"),
        ]));
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains("is a symlink"), "{}", stderr(&out));
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "original");
}

#[test]
fn rerender_replaces_files_atomically() {
    let g = Ground::start();
    g.moto.create_secret("rot", "old");
    let out_dir = g.dir.path().join("out");
    let render = || {
        run(g.keyway().args([
            "render",
            "--dir",
            out_dir.to_str().unwrap(),
            "r=aws-sm://rot",
        ]))
    };
    assert!(render().status.success());
    let inode_before = std::fs::metadata(out_dir.join("r")).unwrap().ino();
    g.moto.put_secret_value("rot", "new");
    let out = render();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(out_dir.join("r")).unwrap(), "new");
    assert_ne!(
        std::fs::metadata(out_dir.join("r")).unwrap().ino(),
        inode_before,
        "not replaced by rename"
    );
}

#[test]
fn watch_replaces_files_when_the_upstream_value_changes() {
    let ground = crate::support::Ground::start();
    ground.gcp.add_version("proj", "rotating", b"first");
    let dir = ground.dir.path().join("watched");
    let mut child = ground
        .keyway()
        .args(["render", "--watch", "1s", "--dir"])
        .arg(&dir)
        .arg("value=gcp-sm://proj/rotating")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let file = dir.join("value");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(&file).ok().as_deref() != Some("first") {
        assert!(std::time::Instant::now() < deadline, "never rendered");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    ground.gcp.add_version("proj", "rotating", b"second");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        // Every read sees a whole value, old or new: files are replaced by rename.
        let seen = std::fs::read_to_string(&file).unwrap();
        assert!(seen == "first" || seen == "second", "{seen:?}");
        if seen == "second" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new version was never rendered"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn templates_take_values_where_their_references_stand_and_keep_other_braces() {
    let g = Ground::start();
    let local = g.dir.path().join("local");
    std::fs::write(local.join("db"), r#"{"user":"app","password":"pw-1"}"#).unwrap();
    g.moto.create_secret("ci/token", "tok-1");
    let template = g.dir.path().join("app.env.tpl");
    std::fs::write(
        &template,
        "# {{ .Values.kept }} {{}}\nDB_USER={{ local://db#user }}\nDB_PASSWORD={{local://db#password}}\n\
         TOKEN={{\taws-sm://ci/token }}\nAGAIN={{ aws-sm://ci/token }}\n",
    )
    .unwrap();
    let out_dir = g.dir.path().join("out");
    g.moto.start_recording();
    let out = run(g
        .keyway()
        .args(["render", "--dir", out_dir.to_str().unwrap()])
        .args([
            "--template",
            &format!("conf/app.env={}", template.display()),
            "user=local://db#user",
        ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(out_dir.join("conf/app.env")).unwrap(),
        "# {{ .Values.kept }} {{}}\nDB_USER=app\nDB_PASSWORD=pw-1\nTOKEN=tok-1\nAGAIN=tok-1\n"
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("user")).unwrap(),
        "app"
    );
    let meta = std::fs::metadata(out_dir.join("conf/app.env")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o400);
    // One reference, however often it stands in the templates, is one upstream call.
    assert_eq!(g.moto.count("GetSecretValue"), 1);
}

#[test]
fn a_bad_template_writes_nothing_and_says_where() {
    let g = Ground::start();
    std::fs::write(g.dir.path().join("local/k"), "v").unwrap();
    let out_dir = g.dir.path().join("out");
    let template = g.dir.path().join("t.tpl");
    let render = |text: &str| {
        std::fs::write(&template, text).unwrap();
        run(g
            .keyway()
            .args(["render", "--dir", out_dir.to_str().unwrap()])
            .args([
                "--template",
                &format!("t={}", template.display()),
                "k=local://k",
            ]))
    };
    let t = template.display();
    for (text, code, message) in [
        (
            "a={{ local://k }}\nb={{ local://missing }}\n",
            3,
            "local://missing: local secret `missing` not found".to_owned(),
        ),
        (
            "a={{ local://k }}\nb={{ local://k\n",
            2,
            format!(
                "keyway: error: template {t}, line 2: `{{{{ local://k` is not closed; write `{{{{ local://k }}}}`"
            ),
        ),
        (
            "\n\nb={{ nope://k }}",
            2,
            format!("keyway: error: template {t}, line 3: no provider instance named `nope`"),
        ),
    ] {
        let out = render(text);
        assert_eq!(out.status.code(), Some(code), "{text}: {}", stderr(&out));
        assert!(stderr(&out).contains(&message), "{text}: {}", stderr(&out));
        assert!(!out_dir.exists(), "{text}: something was written");
    }
    let out = run(g
        .keyway()
        .args(["render", "--dir", out_dir.to_str().unwrap()])
        .arg("--template-text=t=A={{ local://k }}\nB={{ local://k"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        "keyway: error: template of t, line 2: `{{ local://k` is not closed; write `{{ local://k }}`"
    );
    assert!(!out_dir.exists());
    let out = run(g
        .keyway()
        .args(["render", "--dir", out_dir.to_str().unwrap()])
        .args(["--template", "t=/nonexistent/t.tpl"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        "keyway: error: cannot read template /nonexistent/t.tpl: No such file or directory (os error 2)"
    );
}

/// A `render --watch` process, stopped however the test ends.
struct Watcher(std::process::Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn watch_rewrites_a_template_when_a_value_in_it_changes() {
    let g = Ground::start();
    let value = g.dir.path().join("local/k");
    std::fs::write(&value, "v1").unwrap();
    let template = g.dir.path().join("t.tpl");
    std::fs::write(&template, "k={{ local://k }}\n").unwrap();
    let out_dir = g.dir.path().join("out");
    let _watcher = Watcher(
        g.keyway()
            .args([
                "render",
                "--watch",
                "1s",
                "--dir",
                out_dir.to_str().unwrap(),
            ])
            .args(["--template", &format!("t={}", template.display())])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let file = out_dir.join("t");
    let wait_for = |wanted: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(&file).ok().as_deref() != Some(wanted) {
            assert!(
                std::time::Instant::now() < deadline,
                "never became {wanted:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    wait_for("k=v1\n");
    std::fs::write(&value, "v2").unwrap();
    wait_for("k=v2\n");
}

#[test]
fn on_change_runs_a_command_after_files_were_replaced_and_not_before() {
    let g = Ground::start();
    let local = g.dir.path().join("local");
    std::fs::write(local.join("tok"), "v1").unwrap();
    std::fs::write(local.join("steady"), "s").unwrap();
    let out_dir = g.dir.path().join("out");
    let log = g.dir.path().join("hook.log");
    // The hook sees the new file in place, and the names of the files that changed.
    let hook = format!(
        "sh -c 'printf \"%s:%s\\n\" \"$KEYWAY_CHANGED\" \"$(cat {}/tok)\" >> {}'",
        out_dir.display(),
        log.display()
    );
    let _watcher = Watcher(
        g.keyway()
            .args(["render", "--watch", "200ms", "--on-change", &hook, "--dir"])
            .arg(&out_dir)
            .args(["tok=local://tok", "steady=local://steady"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let eventually = |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ok() {
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    eventually("first render", &|| out_dir.join("tok").exists());
    // Rounds that change nothing, and the first render, run nothing.
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert!(!log.exists(), "the hook ran without a change");
    std::fs::write(local.join("tok"), "v2").unwrap();
    eventually("the hook after the change", &|| {
        std::fs::read_to_string(&log).ok().as_deref() == Some("tok:v2\n")
    });
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "tok:v2\n",
        "ran again without a change"
    );

    for (args, said) in [
        (vec!["--on-change", "true"], "--watch"),
        (
            vec!["--watch", "1s", "--on-change", "'unclosed"],
            "not a command line",
        ),
        (
            vec!["--watch", "1s", "--on-change", ""],
            "the command is empty",
        ),
        (
            vec!["--watch", "1s", "--on-change", "no-such-program -s reload"],
            "`no-such-program` is not an executable file on PATH",
        ),
    ] {
        let out = run(g
            .keyway()
            .arg("render")
            .args(&args)
            .arg("--dir")
            .arg(&out_dir)
            .arg("tok=local://tok"));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(said), "{args:?}: {}", stderr(&out));
    }
}
