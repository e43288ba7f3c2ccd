//! Hostile input (`docs/security.md`): the config file and the Anyscale mapping spec never panic on arbitrary
//! or structure-shaped text, and every problem is an error value; a config that does not parse is refused
//! without quoting a value planted anywhere in it. `KEYWAY_FUZZ_CASES` cases per strategy (default 2,000).

use keyway_config::Config;
use keyway_config::iam::read_spec;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("KEYWAY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Lines from keyway.toml's own vocabulary, with values right and wrong.
fn toml_line() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "type",
        "region",
        "endpoint",
        "iam_endpoint",
        "credentials",
        "project",
        "location",
        "dir",
        "file",
        "ttl",
        "max_stale",
        "timeout",
        "rate_limit",
        "socket",
        "tcp",
        "socket_mode",
        "access",
        "allow",
        "selector",
        "spec",
        "cloud_provider",
        "fallback_rule",
        "rules",
        "labels",
        "max_bytes",
        "bogus",
    ]);
    let value = prop::sample::select(vec![
        "\"aws\"",
        "\"gcp\"",
        "\"local\"",
        "\"5m\"",
        "-1",
        "0",
        "1e99",
        "\"forever\"",
        "\"\"",
        "[]",
        "[\"aws-sm://x/*\"]",
        "{}",
        "true",
        "\"0o777\"",
        "\"FAIL\"",
        "\"AWS\"",
        "\"127.0.0.1:0\"",
        "18446744073709551616",
        "\"\\u0000\"",
        "[[",
        "\"",
    ]);
    let table = prop::sample::select(vec![
        "[providers.aws-sm]",
        "[providers.x]",
        "[cache]",
        "[server]",
        "[[server.access]]",
        "[iam]",
        "[[iam.rules]]",
        "[workload]",
        "[git]",
        "[[git.credentials]]",
        "[nope]",
    ]);
    prop_oneof![
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        table.prop_map(str::to_owned),
        "[ -~]{0,30}",
    ]
}

fn yaml_line() -> impl Strategy<Value = String> {
    let indent = prop::sample::select(vec!["", "  ", "  - ", "    ", "\t"]);
    let key = prop::sample::select(vec![
        "cloud_deployment_id",
        "cloud_provider",
        "compute_stack",
        "dataplane_iam_mapping",
        "rules",
        "selector",
        "value",
        "fallback_rule",
        "extra",
    ]);
    let value = prop::sample::select(vec![
        "",
        "AWS",
        "GCP",
        "VM",
        "K8S",
        "CLOUD_DEFAULT",
        "FAIL",
        "workload-type in (job)",
        "user=a@example.com,project=p",
        "arn:aws:iam::1:instance-profile/p",
        "sa@p.iam.gserviceaccount.com",
        "[",
        "{a: b}",
        "!!binary x",
        "&a",
        "*a",
        "'",
        "- x",
        "~",
        "0x10",
    ]);
    prop_oneof![
        (indent, key, value).prop_map(|(i, k, v)| format!("{i}{k}: {v}")),
        "[ -~]{0,30}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn config_files_never_panic(lines in prop::collection::vec(toml_line(), 0..16)) {
        let _ = Config::from_toml(&lines.join("\n"));
    }

    /// A token typed into keyway.toml, in any form and place: a parse error names line and column, never it.
    #[test]
    fn config_parse_errors_never_quote_a_planted_value(
        lines in prop::collection::vec(toml_line(), 0..12),
        at in any::<prop::sample::Index>(),
        place in prop::sample::select(vec![
            "[[git.credentials]]\nhost = \"h\"\npassword",
            "[providers.p]\ntype = \"aws\"\nregion",
            "[providers.q]\ntype = \"local\"\nttl",
            "[cache]\nmax_bytes",
            "[server]\nsocket_mode",
            "x",
        ]),
        form in 0..7u8,
        canary in "CANARY[a-z]{8}",
        digits in 100_000_000u64..999_999_999,
    ) {
        let (value, shown) = match form {
            0 => (canary.clone(), canary.clone()),
            1 => (format!("\"{canary}\""), canary.clone()),
            2 => (format!("\"{canary}"), canary.clone()),
            3 => (format!("[\"{canary}\", 1]"), canary.clone()),
            4 => (format!("{{ a = \"{canary}\" }}"), canary.clone()),
            5 => (format!("'{canary}' x"), canary.clone()),
            _ => (digits.to_string(), digits.to_string()),
        };
        let mut lines = lines;
        let at = at.index(lines.len() + 1);
        lines.insert(at, format!("{place} = {value}"));
        if let Err(keyway_config::ConfigError::Parse { message, .. }) =
            Config::from_toml(&lines.join("\n"))
        {
            prop_assert!(message.starts_with("line "), "{}", message);
            prop_assert!(!message.contains(shown.as_str()), "{}", message);
        }
    }

    #[test]
    fn config_noise_never_panics(text in ".{0,200}") {
        let _ = Config::from_toml(&text);
    }

    #[test]
    fn mapping_specs_never_panic_and_report_lines(lines in prop::collection::vec(yaml_line(), 0..16)) {
        let text = lines.join("\n");
        let report = read_spec(&text);
        let count = text.lines().count().max(1);
        for problem in &report.problems {
            prop_assert!(problem.line.is_none_or(|l| l >= 1 && l <= count + 1), "{}", problem);
        }
    }

    #[test]
    fn mapping_noise_never_panics(text in ".{0,200}") {
        let _ = read_spec(&text);
    }
}
