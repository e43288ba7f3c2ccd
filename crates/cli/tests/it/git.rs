use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::Ground;

fn credential_fill(g: &Ground, input: &str) -> std::process::Output {
    credential_fill_in(g, Path::new("."), input)
}

/// `git credential fill` started in `cwd`.
fn credential_fill_in(g: &Ground, cwd: &Path, input: &str) -> std::process::Output {
    let helper = format!(
        "!{} --config {} git-credential",
        env!("CARGO_BIN_EXE_keyway"),
        g.config.display()
    );
    let mut child = Command::new("git")
        // useHttpPath makes git pass the repository path, which path-scoped entries need.
        .args([
            "-c",
            "credential.helper=",
            "-c",
            &format!("credential.helper={helper}"),
            "-c",
            "credential.useHttpPath=true",
        ])
        .args(["credential", "fill"])
        .current_dir(cwd)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("HOME", g.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn git_credential_fill_gets_the_token_from_aws() {
    let g = Ground::with_extra(
        r#"
[[git.credentials]]
host = "github.com"
password = "aws-sm://ci/github#github_token"

[[git.credentials]]
host = "git.example.com"
path = "team/"
username = "deploy"
password = "gcp-sm://proj/deploy-token"
"#,
    );
    g.moto
        .create_secret("ci/github", r#"{"github_token":"ghp_git"}"#);
    g.gcp.add_version("proj", "deploy-token", b"gcp-git-token");

    let out = credential_fill(&g, "protocol=https\nhost=github.com\npath=org/repo.git\n\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("username=x-access-token\n"), "{text}");
    assert!(text.contains("password=ghp_git\n"), "{text}");

    let out = credential_fill(
        &g,
        "protocol=https\nhost=git.example.com\npath=team/app.git\n\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("username=deploy\n") && text.contains("password=gcp-git-token\n"),
        "{text}"
    );
}

#[test]
fn unmatched_hosts_get_no_credential() {
    let g = Ground::with_extra(
        "[[git.credentials]]\nhost = \"github.com\"\npassword = \"aws-sm://x\"\n",
    );
    // No helper answers and prompting is off, so git fails: our helper gave nothing for this host.
    let out = credential_fill(&g, "protocol=https\nhost=gitlab.com\n\n");
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("password="));
}

#[test]
fn a_local_store_relative_to_the_config_file_is_found_from_any_directory() {
    // git runs the helper in whatever directory git was started in; the store named `team-store` in the config
    // is the one beside the config file, not one under that directory.
    let g = Ground::with_extra(
        "[providers.team]\ntype = \"local\"\ndir = \"team-store\"\n\n\
         [[git.credentials]]\nhost = \"github.com\"\npassword = \"team://deploy-token\"\n",
    );
    std::fs::create_dir(g.dir.path().join("team-store")).unwrap();
    std::fs::write(g.dir.path().join("team-store/deploy-token"), "ghp_beside").unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir(elsewhere.path().join("team-store")).unwrap();
    std::fs::write(
        elsewhere.path().join("team-store/deploy-token"),
        "ghp_wrong",
    )
    .unwrap();

    let out = credential_fill_in(
        &g,
        elsewhere.path(),
        "protocol=https\nhost=github.com\npath=org/repo.git\n\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("password=ghp_beside\n"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
