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

#[test]
fn the_four_example_configurations_validate() {
    for spec in ["aws-vm.yaml", "gcp-vm.yaml", "eks.yaml", "gke.yaml"] {
        let path = example(spec);
        let (code, out, err) = keyway(&["iam", "validate", "--spec", path.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{spec}: {out}{err}");
        assert!(out.contains("valid: 2 rules"), "{out}");
    }
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
    // GCP VM with FAIL.
    let (code, out, _) = resolve(
        "gcp-vm.yaml",
        &[
            "workload-type=job",
            "project=ml-training",
            "user=u@example.com",
        ],
    );
    assert_eq!(
        (code, out.trim()),
        (
            Some(0),
            "ml-jobs@my-project.iam.gserviceaccount.com (rule 1)"
        )
    );
    let (code, _, err) = resolve(
        "gcp-vm.yaml",
        &["workload-type=service", "user=u@example.com"],
    );
    assert_eq!(code, Some(4));
    assert!(
        err.contains("fallback_rule is FAIL") && err.contains("1. project=ml-training"),
        "{err}"
    );
    // EKS and GKE map to Kubernetes service accounts; notin matches an absent label.
    let (_, out, _) = resolve("eks.yaml", &["workload-type=job", "project=analytics"]);
    assert_eq!(out.trim(), "analytics-jobs (rule 2)");
    let (_, out, _) = resolve("gke.yaml", &["project=prod"]);
    assert_eq!(out.trim(), "prod-runner (rule 2)");
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
