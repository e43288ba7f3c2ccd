use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::selector::anyscale::fnv1_64;

/// Parses in `mode` and compares the canonical form (or the error's position and text fragment).
fn check(mode: Mode, input: &str, expect: Result<&str, (usize, &str)>) {
    match (Selector::parse_with(input, mode), expect) {
        (Ok(s), Ok(canonical)) => assert_eq!(s.to_string(), canonical, "input {input:?}"),
        (Err(e), Err((position, fragment))) => {
            assert_eq!(e.position, position, "input {input:?}: {e}");
            assert!(e.message.contains(fragment), "input {input:?}: {e}");
        }
        (got, want) => panic!("input {input:?}: got {got:?}, want {want:?}"),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn valid_selectors_and_their_canonical_forms() {
    for (input, canonical) in [
        ("", ""),
        ("   ", ""),
        ("x=a,y=b,z=c", "x=a,y=b,z=c"),
        ("z=c,x=a", "x=a,z=c"),
        ("x!=a,y=b", "x!=a,y=b"),
        ("x==a", "x==a"),
        ("x=", "x="),
        ("x= ", "x="),
        ("x=,z= ", "x=,z="),
        ("x= ,z= ", "x=,z="),
        (" x = a ", "x=a"),
        ("x", "x"),
        ("!x", "!x"),
        ("! x", "!x"),
        ("x,!y", "x,!y"),
        ("x>1", "x>1"),
        ("x>1,z<5", "x>1,z<5"),
        ("x in (c,a,b,a)", "x in (a,b,c)"),
        ("x in(a)", "x in (a)"),
        ("x notin (abc, def)", "x notin (abc,def)"),
        ("x in ()", "x in ()"),
        ("x in (,a)", "x in (,a)"),
        ("x in (a,)", "x in (,a)"),
        ("x in (a,,b)", "x in (,a,b)"),
        // apimachinery since kubernetes/kubernetes#133419 (release 1.35), its test cases verbatim.
        ("x in (a,,)", "x in (,a)"),
        ("x in (a,,,)", "x in (,a)"),
        ("x in (a,,,,,,)", "x in (,a)"),
        ("x in (a,,a,,a,,a,,)", "x in (,a)"),
        ("x in (,,)", "x in ()"),
        ("x in (in, notin)", "x in (in,notin)"),
        ("example.com/app=web", "example.com/app=web"),
        ("a.b-c_d=A.b-C_9", "a.b-c_d=A.b-C_9"),
        ("x\t=\na", "x=a"),
    ] {
        check(Mode::Strict, input, Ok(canonical));
    }
}

#[test]
fn invalid_selectors_point_at_the_problem() {
    for (input, position, fragment) in [
        ("x=a||y=b", 2, "invalid value `a||y`"),
        ("x==a==b", 4, "expected `,` or end of string"),
        ("!x=a", 2, "expected `,` or end of string"),
        ("x<a", 2, "integer"),
        ("x>1.1", 2, "integer"),
        ("x>", 2, "integer"),
        ("x=a,", 4, "expected an identifier after `,`"),
        (",x=a", 0, "expected `!`, an identifier"),
        ("x in a", 5, "expected `(`"),
        ("x in (a", 7, "expected `,` or `)`"),
        ("x in (a b)", 8, "expected `,` or `)`"),
        ("x notin", 7, "expected `(`"),
        ("x ~ a", 2, "expected an operator"),
        ("x y", 2, "expected an operator"),
        ("x=(a)", 2, "expected a value"),
        ("-x=a", 0, "invalid key `-x`"),
        ("x-=a", 0, "invalid key `x-`"),
        ("a/b/c=d", 0, "invalid key"),
        ("/b=d", 0, "prefix before `/` must be non-empty"),
        ("Example.com/b=d", 0, "prefix `Example.com`"),
        ("x=-a", 2, "invalid value `-a`"),
        ("x=user@example.com", 2, "invalid value `user@example.com`"),
        ("x in (a,-b)", 6, "invalid value `-b`"),
        ("!", 1, "expected an identifier"),
        ("!=a", 0, "expected `!`, an identifier"),
        ("x===a", 3, "found `=`, expected a value"),
    ] {
        check(Mode::Strict, input, Err((position, fragment)));
    }
    let long = "a".repeat(64);
    check(
        Mode::Strict,
        &format!("{long}=x"),
        Err((0, "no more than 63")),
    );
    check(
        Mode::Strict,
        &format!("x={long}"),
        Err((2, "no more than 63")),
    );
    let prefix = format!("{}.com", "a".repeat(250));
    check(
        Mode::Strict,
        &format!("{prefix}/x"),
        Err((0, "no more than 253")),
    );
}

#[test]
fn matching_follows_kubernetes_semantics() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
    let cases: &[Case<'_>] = &[
        ("", &[], true),
        ("x=a", &[("x", "a")], true),
        ("x=a", &[("x", "b")], false),
        ("x=a", &[], false),
        ("x!=a", &[], true),
        ("x!=a", &[("x", "a")], false),
        ("x notin (a,b)", &[], true),
        ("x notin (a,b)", &[("x", "c")], true),
        ("x notin (a,b)", &[("x", "b")], false),
        ("x in (a,b)", &[("x", "b")], true),
        ("x in (a,b)", &[], false),
        ("x", &[("x", "")], true),
        ("!x", &[("x", "")], false),
        ("!x", &[("y", "a")], true),
        ("x=", &[("x", "")], true),
        ("x in ()", &[("x", "")], true),
        ("x>1", &[("x", "2")], true),
        ("x>1", &[("x", "1")], false),
        ("x>1", &[("x", "a")], false),
        ("x<1", &[], false),
        ("x<10", &[("x", "-3")], true),
        ("x=a,y=b", &[("x", "a"), ("y", "b")], true),
        ("x=a,y=b", &[("x", "a")], false),
    ];
    for (selector, given, expected) in cases {
        let s = Selector::parse(selector).unwrap();
        assert_eq!(
            s.matches(&labels(given)),
            *expected,
            "{selector} on {given:?}"
        );
    }
}

/// The parse cases of apimachinery's `labels/selector_test.go` (TestSelectorParse, TestSetSelectorParser)
/// with the canonical form Kubernetes prints, and its invalid strings; checked against the Go test's
/// expectations by hand, and against `keyway selector parse` on the command line.
#[test]
fn kubernetes_parse_vectors() {
    for (input, canonical) in [
        ("x=a,y=b,z=c", "x=a,y=b,z=c"),
        ("", ""),
        ("x!=a,y=b", "x!=a,y=b"),
        ("x=", "x="),
        ("x= ", "x="),
        ("x=,z= ", "x=,z="),
        ("x= ,z= ", "x=,z="),
        ("!x", "!x"),
        ("x>1", "x>1"),
        ("x>1,z<5", "x>1,z<5"),
        ("x=a,a=x", "a=x,x=a"),
        ("\rx", "x"),
        (
            "this-is-a-dns.domain.com/key-with-dash",
            "this-is-a-dns.domain.com/key-with-dash",
        ),
        (
            "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
            "0.1.2.domain/99 notin (10.10.100.1,tick.tack.clock)",
        ),
        ("foo  in\t (abc)", "foo in (abc)"),
        ("x notin\n (abc)", "x notin (abc)"),
        ("x  notin\t\t(abc,def)", "x notin (abc,def)"),
        ("x in (abc,)", "x in (,abc)"),
        ("x in ()", "x in ()"),
        (
            "x notin (abc,,def),bar,z in (),w",
            "bar,w,x notin (,abc,def),z in ()",
        ),
        ("x,y in (a)", "x,y in (a)"),
        ("x=a,y!=b,z in (h,i,j)", "x=a,y!=b,z in (h,i,j)"),
        ("x notin ( )", "x notin ()"),
        ("x notin (, a)", "x notin (,a)"),
        ("a ", "a"),
        ("a in (x,y,notin, z,in)", "a in (in,notin,x,y,z)"),
        ("notin=in", "notin=in"),
    ] {
        let parsed = Selector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(parsed.to_string(), canonical, "{input:?}");
    }
    for input in [
        "x=a||y=b",
        "x==a==b",
        "!x=a",
        "x<a",
        "x,,y",
        ",x,y",
        "x nott in (y)",
        "a in (xyz),",
        "a in (xyz)b notin ()",
        "a in (xyz abc)",
        "a notin(",
        "a (",
        "(",
    ] {
        assert!(Selector::parse(input).is_err(), "{input:?} must not parse");
    }
}

#[test]
fn anyscale_mode_takes_emails_and_its_three_keys() {
    for (input, canonical) in [
        (
            "workload-type in (workspace),user=user1@example.com",
            "user=user1@example.com,workload-type in (workspace)",
        ),
        (
            "workload-type in (job, service),user=user2@example.com",
            "user=user2@example.com,workload-type in (job,service)",
        ),
        (
            "user in (b.c+tag@corp.example.io, a@x.com)",
            "user in (a@x.com,b.c+tag@corp.example.io)",
        ),
        // Longer than a label value may be: Anyscale hashes it first, so it is taken.
        (
            "user=a-very-long-name.with.many.parts-0123456789@engineering.example.com",
            "user=a-very-long-name.with.many.parts-0123456789@engineering.example.com",
        ),
        ("project=my-project", "project=my-project"),
        ("!user", "!user"),
    ] {
        check(Mode::Anyscale, input, Ok(canonical));
    }
    check(
        Mode::Anyscale,
        "workload-type=batch",
        Err((14, "not one of job, service, workspace")),
    );
    check(Mode::Anyscale, "team=ml", Err((0, "unknown key `team`")));
    check(
        Mode::Anyscale,
        "user=not an email",
        Err((9, "expected `,` or end of string")),
    );
    // Anyscale's pattern needs a dot and two letters after the `@`; `@` is not in a label value.
    check(
        Mode::Anyscale,
        "user=a@localhost",
        Err((5, "invalid value `a@localhost`")),
    );
    // After an address, positions and names are the written ones, not the hash's.
    check(
        Mode::Anyscale,
        "user=a@example.com,team=ml",
        Err((19, "unknown key `team`")),
    );
    check(
        Mode::Anyscale,
        "a@example.com=x",
        Err((0, "unknown key `a@example.com`")),
    );
    check(
        Mode::Strict,
        "user=user1@example.com",
        Err((5, "invalid value")),
    );
    check(
        Mode::Relaxed,
        "user=user1@example.com",
        Ok("user=user1@example.com"),
    );
    check(Mode::Relaxed, "x=-+*", Ok("x=-+*"));
    check(
        Mode::Relaxed,
        "bad key!=x",
        Err((4, "expected an operator")),
    );
}

#[test]
fn anyscale_emails_are_found_and_hashed_as_its_backend_does() {
    // Go: h := fnv.New64(); h.Write([]byte("user1@example.com")); h.Sum64().
    let found = anyscale_emails("workload-type in (workspace),user=user1@example.com");
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].start, found[0].text.as_str()),
        (34, "user1@example.com")
    );
    assert_eq!(found[0].hash, fnv1_64(b"user1@example.com").to_string());
    // FNV-1 64 of the empty input is its offset basis; of "a", (basis * prime) ^ 0x61.
    assert_eq!(fnv1_64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1_64(b"a"), 0xaf63_bd4c_8601_b7be);
    // ASCII word boundaries: a non-ASCII letter before the address is not a word character to RE2.
    assert_eq!(
        anyscale_emails("user=éa@example.com")[0].text,
        "a@example.com"
    );
    assert!(anyscale_emails("user=a@b").is_empty());
}

#[test]
fn label_validators_agree_with_kubernetes() {
    assert!(dns1123_label("my-sa").is_ok());
    assert!(dns1123_label("My-sa").is_err());
    assert!(dns1123_label("a.b").is_err());
    assert!(dns1123_label(&"a".repeat(64)).is_err());
    assert!(label_value("").is_ok());
    assert!(label_value("a_b.c-D").is_ok());
    assert!(label_value("a_").is_err());
    assert!(is_email("user1@example.com"));
    assert!(!is_email("user1@example"));
    assert!(!is_email("@example.com"));
}

fn direct(r: &Requirement, labels: &BTreeMap<String, String>) -> bool {
    let v = labels.get(r.key());
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator() {
        Operator::Equals | Operator::DoubleEquals | Operator::In => {
            v.is_some_and(|v| r.values().contains(v))
        }
        Operator::NotEquals | Operator::NotIn => !v.is_some_and(|v| r.values().contains(v)),
        Operator::Exists => v.is_some(),
        Operator::DoesNotExist => v.is_none(),
        Operator::GreaterThan => {
            matches!((v.and_then(|v| int(v)), int(&r.values()[0])), (Some(a), Some(b)) if a > b)
        }
        Operator::LessThan => {
            matches!((v.and_then(|v| int(v)), int(&r.values()[0])), (Some(a), Some(b)) if a < b)
        }
    }
}

fn selector_text() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec!["x", "y", "app", "example.com/tier", "a.b"]);
    let value = prop::sample::select(vec!["", "a", "b", "web", "1", "10", "-1x"]);
    let requirement =
        (key, 0..9usize, prop::collection::vec(value, 1..4)).prop_map(|(k, op, vs)| match op {
            0 => format!("{k}={}", vs[0]),
            1 => format!("{k} == {}", vs[0]),
            2 => format!("{k}!={}", vs[0]),
            3 => format!("{k} in ({})", vs.join(", ")),
            4 => format!("{k} notin ({})", vs.join(",")),
            5 => k.to_owned(),
            6 => format!("!{k}"),
            7 => format!("{k}>{}", vs.len()),
            _ => format!("{k} < {}", vs.len() * 3),
        });
    prop::collection::vec(requirement, 0..5).prop_map(|rs| rs.join(","))
}

/// `KEYWAY_FUZZ_CASES` for the long run (`docs/security.md`); 512 in CI.
fn cases() -> u32 {
    crate::fuzz_cases(512)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_input(input in ".{0,64}", mode in 0..3u8) {
        let mode = [Mode::Strict, Mode::Anyscale, Mode::Relaxed][usize::from(mode)];
        let _ = Selector::parse_with(&input, mode);
    }

    #[test]
    fn never_panics_on_selector_shaped_noise(input in "[a-z=!(),<> .@0-9-]{0,40}") {
        let _ = Selector::parse_with(&input, Mode::Relaxed);
    }

    #[test]
    fn canonical_form_is_stable(text in selector_text()) {
        if let Ok(parsed) = Selector::parse(&text) {
            let canonical = parsed.to_string();
            let again = Selector::parse(&canonical).expect("the canonical form parses");
            prop_assert_eq!(&again, &parsed);
            prop_assert_eq!(again.to_string(), canonical);
        }
    }

    #[test]
    fn matching_agrees_with_direct_evaluation(
        text in selector_text(),
        given in prop::collection::btree_map(
            prop::sample::select(vec!["x", "y", "app", "example.com/tier", "a.b"]).prop_map(str::to_owned),
            prop::sample::select(vec!["", "a", "web", "1", "2", "30"]).prop_map(str::to_owned),
            0..4,
        ),
    ) {
        if let Ok(parsed) = Selector::parse(&text) {
            let expected = parsed.requirements().iter().all(|r| direct(r, &given));
            prop_assert_eq!(parsed.matches(&given), expected);
        }
    }
}
