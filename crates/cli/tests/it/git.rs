use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::Ground;
use crate::support::Served;

fn credential_fill(g: &Ground, input: &str) -> std::process::Output {
    git_credential(g, Path::new("."), &[], "fill", input)
}

/// `git credential ACTION` started in `cwd`, with keyway (and `helper_args` before its subcommand) as the only
/// helper.
fn git_credential(
    g: &Ground,
    cwd: &Path,
    helper_args: &[&str],
    action: &str,
    input: &str,
) -> std::process::Output {
    let helper = format!(
        "!{} --config {} {} git-credential",
        env!("CARGO_BIN_EXE_keyway"),
        g.config.display(),
        helper_args.join(" ")
    );
    crate::support::run_with_stdin(
        Command::new("git")
            // useHttpPath makes git pass the repository path, which path-scoped entries need.
            .args([
                "-c",
                "credential.helper=",
                "-c",
                &format!("credential.helper={helper}"),
                "-c",
                "credential.useHttpPath=true",
            ])
            .args(["credential", action])
            .current_dir(cwd)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("HOME", g.dir.path())
            .env("KEYWAY_DAEMON", "never"),
        input.as_bytes(),
    )
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

    let out = git_credential(
        &g,
        elsewhere.path(),
        &[],
        "fill",
        "protocol=https\nhost=github.com\npath=org/repo.git\n\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("password=ghp_beside\n"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_token_the_server_refused_is_fetched_again_past_the_daemon_cache() {
    let g = Ground::with_extra(
        "[[git.credentials]]\nhost = \"github.com\"\npassword = \"aws-sm://ci/github#github_token\"\n",
    );
    g.moto
        .create_secret("ci/github", r#"{"github_token":"ghp_old"}"#);
    let served = Served::start(&g, &[]);
    let socket = served.socket.display().to_string();
    let helper = ["--daemon", "always", "--socket", &socket];
    let fill = || {
        let out = git_credential(
            &g,
            Path::new("."),
            &helper,
            "fill",
            "protocol=https\nhost=github.com\npath=org/repo.git\n\n",
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("password="))
            .unwrap()
            .to_owned()
    };
    let reject = |password: &str| {
        let out = git_credential(
            &g,
            Path::new("."),
            &helper,
            "reject",
            &format!(
                "protocol=https\nhost=github.com\npath=org/repo.git\nusername=x-access-token\npassword={password}\n\n"
            ),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    assert_eq!(fill(), "ghp_old");
    // Rotated in the store: the daemon's cache still answers with the old token, which the server now refuses.
    g.moto
        .put_secret_value("ci/github", r#"{"github_token":"ghp_new"}"#);
    assert_eq!(fill(), "ghp_old");
    g.moto.start_recording();

    // Another helper's credential refused: not keyway's business, no upstream call.
    reject("ghp_someone_else");
    assert_eq!(fill(), "ghp_old");
    assert_eq!(g.moto.count("GetSecretValue"), 0);

    // keyway's own refused: fetched again past the cache, once, and the next fill has the current token.
    let said = reject("ghp_old");
    assert!(!said.contains("ghp_"), "{said}");
    assert_eq!(g.moto.count("GetSecretValue"), 1);
    assert_eq!(fill(), "ghp_new");

    // Refused although it is the store's current token: said, without the value.
    let said = reject("ghp_new");
    assert!(said.contains("the store still holds it"), "{said}");
    assert!(!said.contains("ghp_new"), "{said}");
    assert_eq!(fill(), "ghp_new");
}

/// `git` with `args`, in `cwd`, nothing of the user's configuration or terminal.
fn git(cwd: &Path, home: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args([
            "-c",
            "user.name=keyway",
            "-c",
            "user.email=keyway@example.com",
        ])
        .args(args)
        .current_dir(cwd)
        .env("HOME", home)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("KEYWAY_DAEMON", "never")
        .stdin(Stdio::null())
        .output()
        .expect("git")
}

#[test]
fn git_clones_a_private_repository_with_a_rotated_token_and_no_config_entry() {
    let g = Ground::start();
    let home = g.dir.path();
    // A bare repository with one commit, served by git http-backend to x-access-token:ghp_one only.
    let repos = home.join("repos");
    std::fs::create_dir(&repos).unwrap();
    assert!(git(&repos, home, &["init", "-q", "work"]).status.success());
    std::fs::write(repos.join("work/README"), "private\n").unwrap();
    assert!(
        git(&repos.join("work"), home, &["add", "README"])
            .status
            .success()
    );
    assert!(
        git(&repos.join("work"), home, &["commit", "-qm", "init"])
            .status
            .success()
    );
    assert!(
        git(&repos, home, &["clone", "-q", "--bare", "work", "app.git"])
            .status
            .success()
    );
    let git_server = keyway_testkit::GitServer::start(&repos, "x-access-token", "ghp_one");
    std::fs::write(home.join("local/gh"), "ghp_one").unwrap();

    // The token comes from the daemon's cache; the helper needs no [[git.credentials]] entry.
    let served = Served::start(&g, &[]);
    let helper = format!(
        "credential.helper=!{} --config {} --daemon always --socket {} git-credential --protocol http --host {} --password local://gh",
        env!("CARGO_BIN_EXE_keyway"),
        g.config.display(),
        served.socket.display(),
        git_server.addr,
    );
    let url = format!("{}/app.git", git_server.url);
    let clone = |url: &str, to: &str| {
        git(
            home,
            home,
            &[
                "-c",
                "credential.helper=",
                "-c",
                &helper,
                "clone",
                "-q",
                url,
                to,
            ],
        )
    };
    let out = clone(&url, "one");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(home.join("one/README")).unwrap(),
        "private\n"
    );
    let git_config = std::fs::read_to_string(home.join("one/.git/config")).unwrap();
    assert!(!git_config.contains("ghp_"), "{git_config}");
    assert_eq!(git_server.refused(), 0);

    // Rotated in the store and on the server: the daemon still holds the old token for its TTL, so the next
    // clone is refused; git tells the helper, the daemon fetches the token again, and the clone after works.
    std::fs::write(home.join("local/gh"), "ghp_two").unwrap();
    git_server.set_credential("x-access-token", "ghp_two");
    let out = clone(&url, "two");
    assert!(!out.status.success());
    assert_eq!(git_server.refused(), 1);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains("ghp_"), "{said}");
    let out = clone(&url, "three");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(git_server.refused(), 1);

    // Another host (the same server by another name) gets nothing from this helper: git has no credential to
    // send, so the clone fails without the server ever seeing a token.
    let other = url.replace("127.0.0.1", "localhost");
    let out = clone(&other, "four");
    assert!(!out.status.success());
    assert_eq!(git_server.refused(), 1);
}
