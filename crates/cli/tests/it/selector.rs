//! `keyway selector parse|match`: the documented exit codes and outputs.

use std::process::Command;

fn keyway(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keyway"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn parse_prints_the_canonical_form_or_exits_2() {
    let out = keyway(&["selector", "parse", " z = 1 , a in (c, b, c) , !q "]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a in (b,c),!q,z=1\n");

    let out = keyway(&[
        "selector",
        "parse",
        "--mode",
        "anyscale",
        "workload-type in (job, service),user=user2@example.com",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "user=user2@example.com,workload-type in (job,service)\n"
    );

    // Consecutive commas as apimachinery parses them since Kubernetes 1.35.
    let out = keyway(&["selector", "parse", "x in (a,,)"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "x in (,a)\n");

    let out = keyway(&["selector", "parse", "user=user2@example.com"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("position 5") && err.contains("invalid value"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn match_exits_0_on_match_1_on_no_match_2_on_invalid() {
    let out = keyway(&["selector", "match", "x!=a,y", "--label", "y=1"]);
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        (Some(0), "true")
    );
    let out = keyway(&["selector", "match", "x in (a,b)", "--label", "x=c"]);
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        (Some(1), "false")
    );
    let out = keyway(&["selector", "match", "x in (a", "--label", "x=a"]);
    assert_eq!(out.status.code(), Some(2));
    let out = keyway(&["selector", "match", "x", "--label", "novalue"]);
    assert_eq!(out.status.code(), Some(2));
}
