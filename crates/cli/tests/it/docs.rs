//! The docs' examples are commands this binary takes: each `keyway ...` line of the README's "What it does
//! today" block and of every `sh` block of docs/migrating.md (and the keyway inside a git credential helper
//! setting), run with `--help` added before any `--`, prints help and exits 0, where an unknown subcommand, flag
//! or value would exit 2. (The other docs' synopses hold placeholders such as `[--wait D]`.)

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
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path),
    )
    .unwrap()
}

/// Checks every keyway command in `block`; returns how many there were.
fn check_block(source: &str, block: &str) -> usize {
    let mut checked = 0;
    for line in block.lines() {
        let Some(args) = keyway_args(line) else {
            continue;
        };
        crate::assert_takes_arguments(&args, &format!("{source}: `{line}`"));
        checked += 1;
    }
    checked
}

#[test]
fn every_keyway_command_in_the_docs_is_one_the_binary_takes() {
    let readme = read("README.md");
    let block = readme
        .split("## What it does today")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the README's example block");
    let checked = check_block("README.md", block);
    assert!(checked >= 15, "only {checked} README examples found");

    let migrating = read("docs/migrating.md");
    let checked: usize = migrating
        .split("```sh\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .map(|block| check_block("docs/migrating.md", block))
        .sum();
    assert!(
        checked >= 7,
        "only {checked} docs/migrating.md examples found"
    );
}
