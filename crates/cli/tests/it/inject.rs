//! `keyway inject`: a template from stdin or a file, out on stdout or into one file, all or nothing.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::support::{Ground, names_in, run, run_with_stdin, stderr, stdout};

/// `keyway inject -i TEMPLATE -o OUT`.
fn inject_into(g: &Ground, template: &Path, out: &Path) -> std::process::Output {
    run(g
        .keyway()
        .arg("inject")
        .arg("-i")
        .arg(template)
        .arg("-o")
        .arg(out))
}

#[test]
fn a_template_on_stdin_comes_out_on_stdout_with_every_value_in_it() {
    let g = Ground::start();
    g.moto
        .create_secret("ci/github", r#"{"github_token":"ghp_from_aws"}"#);
    g.gcp.add_version("proj", "db", b"gcp-db-pw");
    std::fs::write(g.dir.path().join("local/npm"), "npm_local").unwrap();
    // A manifest for `kubectl apply -f -`: other tools' `{{ ... }}` stay as written, a reference used twice is
    // fetched once and filled twice.
    let template = "apiVersion: v1\nkind: Secret\nstringData:\n  \
        token: \"{{ aws-sm://ci/github#github_token }}\"\n  db: {{gcp-sm://proj/db}}\n  \
        npmrc: //registry.npmjs.org/:_authToken={{ local://npm }}\n  \
        again: {{ aws-sm://ci/github#github_token }}\n  helm: {{ .Values.keep }}\n";
    let out = run_with_stdin(g.keyway().arg("inject"), template.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "apiVersion: v1\nkind: Secret\nstringData:\n  token: \"ghp_from_aws\"\n  db: gcp-db-pw\n  \
         npmrc: //registry.npmjs.org/:_authToken=npm_local\n  again: ghp_from_aws\n  helm: {{ .Values.keep }}\n"
    );
    assert_eq!(stderr(&out), "");
}

#[test]
fn a_failed_reference_or_a_bad_template_writes_nothing() {
    let g = Ground::start();
    std::fs::write(g.dir.path().join("local/k"), "v4lue").unwrap();
    let target = g.dir.path().join("app.env");
    std::fs::write(&target, "OLD=1\n").unwrap();
    let template = g.dir.path().join("app.env.tpl");
    for (text, code, needle) in [
        (
            "A={{ local://k }}\nB={{ local://absent }}\n".as_bytes(),
            3,
            "1 of 2 references failed; nothing was delivered",
        ),
        (
            b"A={{ local://k }}\nB={{ local://k\n",
            2,
            "line 2: `{{ local://k` is not closed",
        ),
        (
            b"A={{ nope://k }}\n",
            2,
            "line 1: no provider instance named `nope`",
        ),
        (b"A=\xff{{ local://k }}\n", 2, "is not UTF-8 text"),
    ] {
        std::fs::write(&template, text).unwrap();
        let out = inject_into(&g, &template, &target);
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{}", stderr(&out));
        assert!(!stderr(&out).contains("v4lue"), "{}", stderr(&out));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "OLD=1\n");
        let out = run_with_stdin(g.keyway().arg("inject"), text);
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        assert!(out.stdout.is_empty(), "{}", stdout(&out));
    }
    assert!(
        !names_in(g.dir.path())
            .iter()
            .any(|n| n.contains(".keyway-")),
        "no temporary file is left"
    );
}

#[test]
fn an_out_file_that_could_never_be_written_is_refused_before_any_fetch() {
    // The reference is missing: were it fetched first, the answer would be 3 (not found), not 2.
    let g = Ground::start();
    let template = g.dir.path().join("t.tpl");
    std::fs::write(&template, "A={{ local://absent }}\n").unwrap();
    for (out_file, says) in [
        (
            g.dir.path().join("local"),
            "is a directory; give the path of a file",
        ),
        (
            g.dir.path().join("nowhere/app.env"),
            "there is no directory",
        ),
    ] {
        let out = inject_into(&g, &template, &out_file);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
}

#[test]
fn the_out_file_is_replaced_at_once_with_its_mode_and_never_written_through_a_symlink() {
    let g = Ground::start();
    std::fs::write(g.dir.path().join("local/k"), "v4lue").unwrap();
    let work = g.dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(
        work.join("t.tpl"),
        "//registry/:_authToken={{ local://k }}\n",
    )
    .unwrap();
    // A bare file name, relative to the working directory.
    let out = run(g
        .keyway()
        .current_dir(&work)
        .args(["inject", "-i", "t.tpl", "-o", ".npmrc"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let written = work.join(".npmrc");
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        "//registry/:_authToken=v4lue\n"
    );
    assert_eq!(
        std::fs::metadata(&written).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A symlink at the target is replaced by the file; what it pointed at is untouched.
    let elsewhere = g.dir.path().join("elsewhere");
    std::fs::write(&elsewhere, "keep").unwrap();
    std::fs::remove_file(&written).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &written).unwrap();
    let out = run(g
        .keyway()
        .current_dir(&work)
        .args(["inject", "-i", "t.tpl", "-o", ".npmrc", "--mode", "0644"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: mode 0644 lets every user on this machine read .npmrc"),
        "{}",
        stderr(&out)
    );
    assert!(
        !std::fs::symlink_metadata(&written)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "keep");
    assert_eq!(
        std::fs::metadata(&written).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_eq!(
        names_in(&work),
        [".npmrc", "t.tpl"],
        "no temporary file is left"
    );
}
