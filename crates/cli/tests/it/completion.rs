//! `keyway completion SHELL`: the script a shell loads, exercised in a real bash.

use std::process::Command;

use crate::support::{keyway, run, stdout};

/// What bash's completion function for keyway offers for `words` (the last one being completed).
fn bash_completes(script: &str, words: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyway.bash");
    std::fs::write(&path, script).unwrap();
    let words_array = words
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let line = words.join(" ");
    let program = format!(
        "source '{}'; COMP_WORDS=({words_array}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT={}; \
         _keyway keyway '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display(),
        words.len() - 1,
        line.len(),
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &program])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn completion_scripts_complete_subcommands_flags_and_values() {
    let config = std::path::Path::new("/nonexistent/keyway.toml");
    let out = run(keyway(config).args(["completion", "bash"]));
    assert!(out.status.success());
    let script = stdout(&out);
    assert_eq!(
        bash_completes(&script, &["keyway", "se"]),
        ["selector", "serve"]
    );
    assert_eq!(
        bash_completes(&script, &["keyway", "exec", "--env-f"]),
        ["--env-file"]
    );
    assert_eq!(
        bash_completes(&script, &["keyway", "get", "--daemon", ""]),
        ["auto", "always", "never"]
    );

    let out = run(keyway(config).args(["completion", "zsh"]));
    assert!(
        stdout(&out).starts_with("#compdef keyway"),
        "{}",
        stdout(&out)
    );
    let out = run(keyway(config).args(["completion", "fish"]));
    assert!(stdout(&out).contains("complete -c keyway"));
    let out = run(keyway(config).args(["completion", "tcsh"]));
    assert_eq!(out.status.code(), Some(2));
}
