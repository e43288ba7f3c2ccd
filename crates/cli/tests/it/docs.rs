//! The README's examples are commands this binary takes: each `keyway ...` line of its "What it does today"
//! block (and the keyway inside a git credential helper setting), run with `--help` added before any `--`,
//! prints help and exits 0, where an unknown subcommand, flag or value would exit 2.

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

#[test]
fn the_readme_examples_are_commands_the_binary_takes() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .unwrap();
    let block = readme
        .split("## What it does today")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the README's example block");
    let mut checked = 0;
    for line in block.lines() {
        let Some(args) = keyway_args(line) else {
            continue;
        };
        crate::assert_takes_arguments(&args, &format!("README: `{line}`"));
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} examples found");
}
