//! The identity mapping applied by `keyway serve` against moto: a matching rule's instance profile role is
//! assumed with STS and GetSecretValue is signed with its temporary (`ASIA...`) key; `FAIL` refuses to start;
//! `CLOUD_DEFAULT` keeps the base credentials.

use keyway_testkit::raw;

use crate::support::Served;
use crate::support::{Ground, run, stderr};

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
    let spec = keyway_testkit::repo_root().join("examples/iam/aws-vm.yaml");
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

const SA: &str = "ml-jobs@proj.iam.gserviceaccount.com";

/// A GCP VM mapping whose one rule chooses `SA`, on the emulator, with Application Default Credentials
/// from an `authorized_user` file whose `token_uri` is the emulator's OAuth2 endpoint (so the source identity
/// is `user:keyway-test`, as `gcloud auth application-default login` would make it).
fn gcp_ground(fallback: &str) -> (Ground, Vec<(String, String)>) {
    let ground = Ground::start();
    let endpoint = &ground.gcp.endpoint;
    std::fs::write(
        &ground.config,
        format!(
            r#"
[providers.gcp-sm]
type = "gcp"
endpoint = "{endpoint}"
iam_endpoint = "{endpoint}"
project = "proj"

[iam]
cloud_provider = "GCP"
compute_stack = "VM"
fallback_rule = "{fallback}"

[[iam.rules]]
selector = "workload-type in (job),project=ml"
value = "{SA}"
"#
        ),
    )
    .unwrap();
    let adc = ground.dir.path().join("adc.json");
    std::fs::write(
        &adc,
        serde_json::json!({
            "type": "authorized_user",
            "client_id": "keyway-test",
            "client_secret": "not-a-secret",
            "refresh_token": "refresh-1",
            "token_uri": format!("{endpoint}/token"),
        })
        .to_string(),
    )
    .unwrap();
    ground.gcp.add_version("proj", "ml-token", b"ml-gcp-token");
    let env = vec![
        (
            "GOOGLE_APPLICATION_CREDENTIALS".to_owned(),
            adc.display().to_string(),
        ),
        ("GOOGLE_CLOUD_PROJECT".to_owned(), "proj".to_owned()),
    ];
    (ground, env)
}

fn serve_gcp(ground: &Ground, env: &[(String, String)], labels: &str) -> Served {
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("KEYWAY_WORKLOAD_LABELS", labels));
    Served::start_with_env(ground, &[], &env)
}

fn read_gcp(served: &Served, query: &str) -> raw::RawReply {
    raw::get(
        &served.unix(),
        &format!("/v1/secret?ref=gcp-sm://proj/ml-token{query}"),
        &[],
    )
}

#[test]
fn a_matching_gcp_rule_impersonates_the_service_account() {
    let (ground, env) = gcp_ground("FAIL");
    ground.gcp.allow_impersonation(SA, "user:keyway-test");
    // Only the service account may read the secret: a read as the base identity would be denied.
    ground
        .gcp
        .grant_reader("proj", "ml-token", &format!("serviceAccount:{SA}"));
    ground
        .gcp
        .set_token_lifetime(std::time::Duration::from_secs(4));
    let served = serve_gcp(&ground, &env, "workload-type=job,project=ml");
    let reply = read_gcp(&served, "");
    assert_eq!(reply.status, 200, "{} / {}", reply.text(), served.stderr());
    assert_eq!(reply.json()["value"], "ml-gcp-token");
    // Within the token's lifetime, uncached reads reuse it; past half of it, it is replaced before expiry.
    assert_eq!(read_gcp(&served, "&ttl=0").status, 200);
    let stats = ground.gcp.stats();
    assert_eq!(stats["generate_access_token"], 1, "{stats}");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let reply = read_gcp(&served, "&ttl=0");
    assert_eq!(reply.status, 200, "{} / {}", reply.text(), served.stderr());
    let stats = ground.gcp.stats();
    assert_eq!(stats["generate_access_token"], 2, "{stats}");
    assert_eq!(
        stats["access_by_principal"],
        serde_json::json!({ format!("serviceAccount:{SA}"): 3 }),
        "every read as the impersonated account: {stats}"
    );
    assert!(served.stderr().contains(SA), "{}", served.stderr());
    assert!(!served.stderr().contains("ya29."), "no token in the log");
}

#[test]
fn gcp_impersonation_without_the_token_creator_role_says_which_role() {
    let (ground, env) = gcp_ground("FAIL");
    ground.gcp.allow_impersonation(SA, "user:someone-else");
    let served = serve_gcp(&ground, &env, "workload-type=job,project=ml");
    let reply = read_gcp(&served, "");
    assert_eq!(reply.status, 403, "{}", reply.text());
    let text = reply.text();
    assert!(
        text.contains("roles/iam.serviceAccountTokenCreator") && text.contains(SA),
        "{text}"
    );
    assert_eq!(ground.gcp.stats()["access"], 0);
}

#[test]
fn gcp_cloud_default_reads_as_the_base_identity() {
    let (ground, env) = gcp_ground("CLOUD_DEFAULT");
    let served = serve_gcp(&ground, &env, "workload-type=service,project=ml");
    let reply = read_gcp(&served, "");
    assert_eq!(reply.status, 200, "{} / {}", reply.text(), served.stderr());
    let stats = ground.gcp.stats();
    assert_eq!(stats["generate_access_token"], 0, "{stats}");
    assert_eq!(
        stats["access_by_principal"],
        serde_json::json!({"user:keyway-test": 1})
    );
}
