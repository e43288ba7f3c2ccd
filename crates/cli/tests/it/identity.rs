//! The identity mapping applied by `keyway serve` against moto: a matching rule's instance profile role is
//! assumed with STS and GetSecretValue is signed with its temporary (`ASIA...`) key; `FAIL` refuses to start;
//! `CLOUD_DEFAULT` keeps the base credentials.

use keyway_testkit::raw;

use crate::serve::Served;
use crate::{Ground, run, stderr};

const RULES: &str = r#"
[iam]
cloud_provider = "AWS"
compute_stack = "VM"
fallback_rule = "FALLBACK"

[[iam.rules]]
selector = "workload-type in (workspace),user=user1@example.com"
value = "user1-profile"

[[iam.rules]]
selector = "workload-type in (job, service),project=ml"
value = "ml-profile"
"#;

/// The access key id each recorded GetSecretValue was signed with.
fn signing_keys(ground: &Ground) -> Vec<String> {
    ground
        .moto
        .recording()
        .iter()
        .filter(|(action, _)| action == "GetSecretValue")
        .filter_map(|(_, record)| {
            record["headers"]["Authorization"]
                .as_str()
                .map(str::to_owned)
        })
        .filter_map(|auth| {
            auth.split("Credential=")
                .nth(1)
                .and_then(|c| c.split('/').next())
                .map(str::to_owned)
        })
        .collect()
}

fn read_secret(served: &Served) {
    let reply = raw::get(&served.unix(), "/v1/secret?ref=aws-sm://ml/token", &[]);
    assert_eq!(reply.status, 200, "{} / {}", reply.text(), served.stderr());
    assert_eq!(reply.json()["value"], "ml-token");
}

#[test]
fn a_matching_rule_assumes_the_instance_profile_role() {
    let ground = Ground::with_extra(&RULES.replace("FALLBACK", "FAIL"));
    let role = ground.moto.create_instance_profile("ml-profile", "ml-role");
    ground.moto.create_secret("ml/token", "ml-token");
    ground.moto.start_recording();
    let served = Served::start(
        &ground,
        &[
            "--label",
            "workload-type=job",
            "--label",
            "project=ml",
            "--label",
            "user=u@example.com",
        ],
    );
    read_secret(&served);
    let keys = signing_keys(&ground);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].starts_with("ASIA"),
        "signed with {keys:?}, not the assumed role's key"
    );
    assert!(served.stderr().contains(&role), "{}", served.stderr());
    assert!(
        served.stderr().contains("keyway-job-ml"),
        "{}",
        served.stderr()
    );
}

#[test]
fn fail_with_no_matching_rule_refuses_to_start() {
    let ground = Ground::with_extra(&RULES.replace("FALLBACK", "FAIL"));
    let out = run(ground
        .keyway()
        .arg("--socket")
        .arg(ground.dir.path().join("k.sock"))
        .args([
            "serve",
            "--label",
            "workload-type=job",
            "--label",
            "project=web",
        ]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("project=web,workload-type=job") && err.contains("refuses to start"),
        "{err}"
    );
    assert!(
        err.contains("2. workload-type in (job, service),project=ml"),
        "{err}"
    );
    assert!(!ground.dir.path().join("k.sock").exists());
}

#[test]
fn cloud_default_keeps_the_base_credentials() {
    let ground = Ground::with_extra(&RULES.replace("FALLBACK", "CLOUD_DEFAULT"));
    ground.moto.create_secret("ml/token", "ml-token");
    ground.moto.start_recording();
    let served = Served::start_with_env(
        &ground,
        &[],
        &[("KEYWAY_WORKLOAD_LABELS", "workload-type=job,project=web")],
    );
    read_secret(&served);
    assert_eq!(signing_keys(&ground), ["testing"]);
}

#[test]
fn the_anyscale_spec_file_is_applied_as_is() {
    let spec =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/iam/aws-vm.yaml");
    let ground = Ground::with_extra(&format!("[iam]\nspec = \"{}\"\n", spec.display()));
    ground
        .moto
        .create_instance_profile("role_name2", "anyscale-jobs");
    ground.moto.create_secret("ml/token", "ml-token");
    ground.moto.start_recording();
    let served = Served::start_with_env(
        &ground,
        &[],
        &[(
            "KEYWAY_WORKLOAD_LABELS",
            "workload-type=service,user=user2@example.com,project=p",
        )],
    );
    read_secret(&served);
    assert!(signing_keys(&ground)[0].starts_with("ASIA"));
    assert!(
        served.stderr().contains("role_name2 (rule 2)"),
        "{}",
        served.stderr()
    );
}
