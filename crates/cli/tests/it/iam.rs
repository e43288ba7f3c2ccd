//! `keyway iam validate|resolve` on the four Anyscale example configurations and on broken specs.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    keyway_testkit::repo_root().join("examples/iam").join(name)
}

fn keyway(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keyway"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn resolve(spec: &str, labels: &[&str]) -> (Option<i32>, String, String) {
    let path = example(spec);
    let mut args = vec!["iam", "resolve", "--spec", path.to_str().unwrap()];
    for l in labels {
        args.extend(["--label", l]);
    }
    keyway(&args)
}

/// The five example specs of Anyscale's IAM mapping documentation, verbatim (examples/iam/).
const DOCUMENTED: [(&str, &str); 5] = [
    ("aws-vm.yaml", "AWS VM"),
    ("gcp-vm.yaml", "GCP VM"),
    ("aks.yaml", "AZURE K8S"),
    ("eks.yaml", "AWS K8S"),
    ("gke.yaml", "GCP K8S"),
];

#[test]
fn the_five_documented_specs_validate_and_resolve() {
    for (spec, cloud) in DOCUMENTED {
        let path = example(spec);
        let (code, out, err) = keyway(&["iam", "validate", "--spec", path.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{spec}: {out}{err}");
        assert_eq!(
            out.trim(),
            format!(
                "{}: valid: {cloud}, 2 rules, fallback CLOUD_DEFAULT",
                path.display()
            )
        );
        let second = match spec {
            "aws-vm.yaml" => "role_name2",
            "gcp-vm.yaml" => "sa2@xxx.iam.gserviceaccount.com",
            _ => "kubernetes-service-account-name2",
        };
        let (code, out, _) = resolve(spec, &["workload-type=job", "user=user2@example.com"]);
        assert_eq!(
            (code, out.trim()),
            (Some(0), &*format!("{second} (rule 2)"))
        );
    }
}

#[test]
fn what_anyscale_cloud_config_get_prints_is_taken_unchanged() {
    // With rules: the server adds `mode: CUSTOMER_MANAGED` and the CLI sorts the keys.
    let path = example("config-get-with-rules.yaml");
    let (code, out, err) = keyway(&["iam", "validate", "--spec", path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.ends_with("valid: AWS VM, 2 rules, fallback CLOUD_DEFAULT\n"),
        "{out}"
    );
    let (code, out, _) = resolve(
        "config-get-with-rules.yaml",
        &["workload-type=workspace", "user=user1@example.com"],
    );
    assert_eq!((code, out.trim()), (Some(0), "role_name1 (rule 1)"));
    // Without: `dataplane_iam_mapping: {}`, no fallback_rule, the cloud's default for everyone.
    let path = example("config-get-no-rules.yaml");
    let (code, out, err) = keyway(&["iam", "validate", "--spec", path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.ends_with(
            "valid: AWS VM, no rules: every workload gets the cloud's default identity\n"
        ),
        "{out}"
    );
    let (code, out, _) = resolve("config-get-no-rules.yaml", &["workload-type=job"]);
    assert_eq!(
        (code, out.trim()),
        (Some(0), "CLOUD_DEFAULT (no rule matched)")
    );
}

#[test]
fn other_top_level_keys_are_named_in_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    let original = std::fs::read_to_string(example("aks.yaml")).unwrap();
    std::fs::write(&spec, format!("{original}region: eastus\n")).unwrap();
    let (code, out, _) = keyway(&["iam", "validate", "--spec", spec.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(
            "line 13: warning: key `region` is not part of the IAM mapping; Keyway ignores it"
        ),
        "{out}"
    );
}

#[test]
fn resolution_follows_first_match_and_the_fallback() {
    // AWS VM, the Anyscale documentation's own example.
    let (code, out, _) = resolve(
        "aws-vm.yaml",
        &[
            "workload-type=workspace",
            "user=user1@example.com",
            "project=p",
        ],
    );
    assert_eq!((code, out.trim()), (Some(0), "role_name1 (rule 1)"));
    let (code, out, _) = resolve(
        "aws-vm.yaml",
        &["workload-type=service", "user=user2@example.com"],
    );
    assert_eq!((code, out.trim()), (Some(0), "role_name2 (rule 2)"));
    let (code, out, _) = resolve(
        "aws-vm.yaml",
        &["workload-type=workspace", "user=user2@example.com"],
    );
    assert_eq!(
        (code, out.trim()),
        (Some(0), "CLOUD_DEFAULT (no rule matched)")
    );
    // GCP VM with FAIL; notin matches an absent label.
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("fail.yaml");
    std::fs::write(
        &spec,
        "cloud_provider: GCP\ncompute_stack: VM\ndataplane_iam_mapping:\n  rules:\n  - selector: project=ml-training,workload-type in (job)\n    value: ml-jobs@my-project.iam.gserviceaccount.com\n  - selector: project in (prod),workload-type notin (workspace)\n    value: prod@my-project.iam.gserviceaccount.com\n  fallback_rule: FAIL\n",
    )
    .unwrap();
    let spec = spec.to_str().unwrap();
    let (code, out, _) = keyway(&[
        "iam",
        "resolve",
        "--spec",
        spec,
        "--label",
        "workload-type=job",
        "--label",
        "project=ml-training",
    ]);
    assert_eq!(
        (code, out.trim()),
        (
            Some(0),
            "ml-jobs@my-project.iam.gserviceaccount.com (rule 1)"
        )
    );
    let (_, out, _) = keyway(&["iam", "resolve", "--spec", spec, "--label", "project=prod"]);
    assert_eq!(
        out.trim(),
        "prod@my-project.iam.gserviceaccount.com (rule 2)"
    );
    let (code, _, err) = keyway(&[
        "iam",
        "resolve",
        "--spec",
        spec,
        "--label",
        "workload-type=service",
        "--label",
        "user=u@example.com",
    ]);
    assert_eq!(code, Some(4));
    assert!(
        err.contains("fallback_rule is FAIL") && err.contains("1. project=ml-training"),
        "{err}"
    );
}

#[test]
fn broken_specs_report_every_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        "cloud_provider: AWS\ncompute_stack: VM\ndataplane_iam_mapping:\n  rules:\n  - selector: user=a@example.com\n    value: arn:aws:iam::123456789012:instance-profile/prof\n  - selector: workload-type in (batch)\n    value: r\n",
    )
    .unwrap();
    let (code, out, _) = keyway(&["iam", "validate", "--spec", spec.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("line 3: error: fallback_rule is missing"),
        "{out}"
    );
    assert!(
        out.contains("line 6: error: rule 1: value") && out.contains("write `prof`"),
        "{out}"
    );
    assert!(
        out.contains("line 7: error: rule 2: invalid selector"),
        "{out}"
    );
    let (code, _, err) = keyway(&[
        "iam",
        "resolve",
        "--spec",
        spec.to_str().unwrap(),
        "--label",
        "user=a@example.com",
    ]);
    assert_eq!(code, Some(2), "{err}");
}
