//! The docs' examples are commands this binary takes: each `keyway ...` line of every `sh` block of the README,
//! docs/exec.md and docs/migrating.md (and the keyway inside a git credential helper setting), run with `--help`
//! added before any `--`, prints help and exits 0, where an unknown subcommand, flag or value would exit 2. (The
//! other docs' synopses hold placeholders such as `[--wait D]`.)

/// The keyway arguments of one example line, if it runs keyway.
fn keyway_args(line: &str) -> Option<Vec<String>> {
    let words = shell_words::split(line).ok()?;
    let mut words = words
        .into_iter()
        .skip_while(|w| w.contains('=') && !w.starts_with('-'));
    match words.next()?.as_str() {
        "keyway" => Some(words.collect()),
        "git" => words
            .find_map(|w| w.split_once("!keyway ").map(|(_, rest)| rest.to_owned()))
            .and_then(|helper| shell_words::split(&helper).ok()),
        _ => None,
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(keyway_testkit::repo_root().join(path)).unwrap()
}

/// Checks every keyway command in `block`; returns how many there were.
fn check_block(source: &str, block: &str) -> usize {
    let mut checked = 0;
    for line in block.lines() {
        let Some(args) = keyway_args(line) else {
            continue;
        };
        crate::support::assert_takes_arguments(&args, &format!("{source}: `{line}`"));
        checked += 1;
    }
    checked
}

#[test]
fn every_keyway_command_in_the_docs_is_one_the_binary_takes() {
    for (doc, at_least) in [
        ("README.md", 10),
        ("docs/exec.md", 10),
        ("docs/migrating.md", 7),
    ] {
        let checked: usize = read(doc)
            .split("```sh\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .map(|block| check_block(doc, block))
            .sum();
        assert!(checked >= at_least, "only {checked} {doc} examples found");
    }
}

/// The README is a first page: no line wider than 120 columns, and every link it gives leads to a file or
/// directory of the repository (each claim points to the doc that explains it).
#[test]
fn the_readme_fits_the_page_and_its_links_lead_somewhere() {
    let readme = read("README.md");
    for (number, line) in readme.lines().enumerate() {
        assert!(
            line.chars().count() <= 120,
            "README.md line {} is wider than 120 columns",
            number + 1
        );
    }
    let links: Vec<&str> = readme
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .collect();
    assert!(
        links.len() >= 15,
        "only {} links in the README",
        links.len()
    );
    for link in links {
        let path = link.split('#').next().unwrap_or_default();
        assert!(
            keyway_testkit::repo_root().join(path).exists(),
            "README.md links to {link}, which is not in the repository"
        );
    }
}

/// The docs' `keyway.toml` examples are files `keyway serve --check` accepts as they are written, once the files
/// they name are there (`/etc/keyway/...`, here under a temporary directory, an age identity among them) and
/// `socket_group` names a group this machine has.
#[test]
fn every_keyway_toml_in_the_docs_passes_serve_check() {
    use secrecy::ExposeSecret as _;
    use std::os::unix::fs::PermissionsExt as _;
    let etc = tempfile::tempdir().unwrap();
    let at = |name: &str| etc.path().join(name);
    std::fs::create_dir(at("secrets")).unwrap();
    std::fs::write(at("secrets.yaml"), "api: k\n").unwrap();
    // As the daemon advises for a store's file (it warns of one other users may read).
    std::fs::set_permissions(at("secrets.yaml"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(at("app.token"), "a-token-of-32-characters-or-more\n").unwrap();
    let identity = age::x25519::Identity::generate();
    std::fs::write(at("age.key"), identity.to_string().expose_secret()).unwrap();
    std::fs::set_permissions(at("age.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::copy(
        keyway_testkit::repo_root().join("examples/iam/aws-vm.yaml"),
        at("cloud-config.yaml"),
    )
    .unwrap();
    let group = rustix::process::getgid().as_raw().to_string();

    let mut checked = 0;
    for doc in [
        "README.md",
        "docs/configuration.md",
        "docs/daemon.md",
        "docs/iam.md",
    ] {
        for block in read(doc)
            .split("```toml\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
        {
            let text = block
                .replace("/etc/keyway/", &format!("{}/", etc.path().display()))
                .replace(
                    "socket_group = \"keyway\"",
                    &format!("socket_group = \"{group}\""),
                );
            let config = etc.path().join("keyway.toml");
            std::fs::write(&config, text).unwrap();
            let out =
                crate::support::run(crate::support::keyway(&config).args(["serve", "--check"]));
            // An example that shows other settings without access rules is warned about its open socket,
            // as it should be; nothing else may be said.
            let said = crate::support::stderr(&out);
            let other = said
                .lines()
                .filter(|line| !line.contains("is open to every local user"))
                .count();
            assert!(
                out.status.success() && other == 0,
                "a keyway.toml of {doc} fails `keyway serve --check`: {}\n{block}",
                crate::support::stderr(&out)
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} keyway.toml examples found");
}

/// `examples/stores.toml`, an instance of every store, is a file the daemon would start with.
#[test]
fn the_example_of_every_store_passes_serve_check() {
    let config = keyway_testkit::repo_root().join("examples/stores.toml");
    let out = crate::support::run(crate::support::keyway(&config).args(["serve", "--check"]));
    let said = crate::support::stderr(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.lines()
            .all(|line| line.contains("is open to every local user")),
        "{said}"
    );
}
