//! The four stores added after AWS and GCP, each through every way in: `keyway get`, `list`, `exec`, `render`,
//! and the daemon (200 cold readers make one upstream read; an outage serves the cached value, marked stale).
//! Against real servers where one installs (OpenBao for Vault, moto for Parameter Store) and the testkit's
//! stand-ins proven by the vendors' own Python clients (Kubernetes, Azure Key Vault).

use std::time::{Duration, Instant};

use keyway_testkit::fault::{Fault, FaultProxy, Flavor};
use keyway_testkit::raw;
use keyway_testkit::{AzureKv, Bao, K8sApi};
use serde_json::json;

use crate::support::{Ground, Served, run, stderr, stdout, wait_until_fresh};

/// The four stores, with the ground's moto serving Parameter Store, and a `keyway.toml` naming them all (each
/// with a short TTL and a long stale window, for the outage test).
struct Stores {
    ground: Ground,
    bao: Bao,
    bao_proxy: FaultProxy,
    /// Between the daemon and moto, for Parameter Store's outage.
    ssm_proxy: FaultProxy,
    k8s: K8sApi,
    azure: AzureKv,
}

impl Stores {
    fn start() -> Stores {
        let bao = Bao::start();
        let bao_proxy = FaultProxy::start(&bao.address, Flavor::Vault);
        let k8s = K8sApi::start();
        let azure = AzureKv::start();
        let tokens = tempfile::tempdir().unwrap().keep();
        std::fs::write(tokens.join("vault-token"), "root").unwrap();
        std::fs::write(tokens.join("k8s-token"), "admin").unwrap();
        std::fs::write(tokens.join("azure-token"), "token").unwrap();
        let policy = "ttl = \"1s\"\nmax_stale = \"1h\"\ntimeout = \"2s\"\nstale_wait = \"0s\"";
        let extra = format!(
            r#"
[providers.vault]
type = "vault"
address = "{vault}"
{policy}
[providers.vault.auth]
method = "token"
token_file = "{tokens}/vault-token"

[providers.aws-ps]
type = "ssm"
region = "us-east-1"
endpoint = "{{MOTO}}"
{policy}

[providers.azure-kv]
type = "azure"
endpoint = "{azure}"
vault = "kv1"
credentials = "token-file"
token_file = "{tokens}/azure-token"
ca_file = "{ca}"
verify_challenge_resource = false
{policy}

[providers.k8s]
type = "k8s"
api_server = "{k8s}"
token_file = "{tokens}/k8s-token"
namespace = "ml"
{policy}
"#,
            vault = bao_proxy.endpoint,
            tokens = tokens.display(),
            azure = azure.endpoint,
            ca = azure.ca_file.display(),
            k8s = k8s.endpoint,
        );
        let ground = Ground::with_extra(&extra);
        let ssm_proxy = FaultProxy::start(&ground.moto.endpoint, Flavor::Aws);
        let config = std::fs::read_to_string(&ground.config)
            .unwrap()
            .replace("{MOTO}", &ssm_proxy.endpoint);
        std::fs::write(&ground.config, config).unwrap();
        Stores {
            ground,
            bao,
            bao_proxy,
            ssm_proxy,
            k8s,
            azure,
        }
    }

    /// Writes `value` under the name each store's reference below reads, with the key `field`.
    fn seed(&self, name: &str, value: &str) {
        self.bao
            .put("secret", &format!("team/{name}"), json!({"field": value}));
        self.ground.moto.put_parameter(
            &format!("/team/{name}"),
            &json!({"field": value}).to_string(),
            "SecureString",
        );
        self.azure
            .put_secret(name, &json!({"field": value}).to_string());
        self.k8s
            .put_secret("ml", name, &[("field", value.as_bytes())]);
    }

    /// Each store's reference to the `field` key of `name`, with the store's listing prefix.
    fn references(name: &str) -> [(&'static str, String, String); 4] {
        [
            (
                "vault",
                format!("vault://secret/team/{name}#field"),
                format!("secret/team/{name}"),
            ),
            (
                "aws-ps",
                format!("aws-ps://team/{name}#field"),
                format!("team/{name}"),
            ),
            (
                "azure-kv",
                format!("azure-kv://kv1/{name}#field"),
                format!("kv1/{name}"),
            ),
            ("k8s", format!("k8s://ml/{name}#field"), name.to_owned()),
        ]
    }

    /// Upstream reads of `name`, as each store counts them.
    fn reads(&self, instance: &str, name: &str) -> u64 {
        match instance {
            "vault" => self
                .bao_proxy
                .count(&format!("GET /v1/secret/data/team/{name}")) as u64,
            "aws-ps" => self.ground.moto.count("GetParameter") as u64,
            "azure-kv" => self.azure.gets(),
            "k8s" => self.k8s.gets(),
            _ => unreachable!("a store of this test"),
        }
    }

    /// Takes one store down (`down`) or brings it back.
    fn outage(&self, instance: &str, down: bool) {
        match (instance, down) {
            ("vault", true) => self.bao_proxy.set(Fault::Status {
                code: 503,
                every: 1,
            }),
            ("vault", false) => self.bao_proxy.set(Fault::Pass),
            ("aws-ps", true) => self.ssm_proxy.set(Fault::Status {
                code: 503,
                every: 1,
            }),
            ("aws-ps", false) => self.ssm_proxy.set(Fault::Pass),
            ("azure-kv", true) => self.azure.fail_next(1_000_000, 503),
            ("azure-kv", false) => self.azure.fail_next(0, 503),
            ("k8s", true) => self.k8s.fail_next(1_000_000, 503),
            ("k8s", false) => self.k8s.fail_next(0, 503),
            _ => unreachable!("a store of this test"),
        }
    }
}

#[test]
fn each_new_store_delivers_through_get_list_exec_and_render() {
    let stores = Stores::start();
    stores.seed("deliver", "v-deliver");
    let out_dir = tempfile::tempdir().unwrap();
    for (instance, reference, listed) in Stores::references("deliver") {
        let got = run(stores.ground.keyway().args(["get", &reference]));
        assert!(got.status.success(), "{instance} get: {}", stderr(&got));
        assert_eq!(stdout(&got), "v-deliver", "{instance}");

        let list = run(stores.ground.keyway().args(["list", instance]));
        assert!(list.status.success(), "{instance} list: {}", stderr(&list));
        assert!(
            stdout(&list).lines().any(|l| l == listed),
            "{instance}: {listed} not in {}",
            stdout(&list)
        );

        let exec = run(stores.ground.keyway().args([
            "exec",
            "--env",
            &format!("VALUE={reference}"),
            "--",
            "sh",
            "-c",
            "printf %s \"$VALUE\"",
        ]));
        assert!(exec.status.success(), "{instance} exec: {}", stderr(&exec));
        assert_eq!(stdout(&exec), "v-deliver", "{instance}");

        let dir = out_dir.path().join(instance);
        let render = run(stores
            .ground
            .keyway()
            .arg("render")
            .arg("--dir")
            .arg(&dir)
            .arg(format!("value={reference}")));
        assert!(
            render.status.success(),
            "{instance} render: {}",
            stderr(&render)
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("value")).unwrap(),
            "v-deliver",
            "{instance}"
        );
    }
}

#[test]
fn behind_the_daemon_two_hundred_cold_readers_make_one_upstream_read_per_store() {
    let stores = Stores::start();
    stores.seed("stampede", "v-stampede");
    let served = Served::start(&stores.ground, &[]);
    stores.ground.moto.start_recording();
    let unix = served.unix();
    for (instance, reference, _) in Stores::references("stampede") {
        let before = stores.reads(instance, "stampede");
        let path = format!("/v1/secret?ref={}", reference.replace('#', "%23"));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(200));
        let threads: Vec<_> = (0..200)
            .map(|_| {
                let (unix, barrier, path) = (unix.clone(), barrier.clone(), path.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let reply = raw::get(&unix, &path, &[]);
                    (
                        reply.status,
                        reply.json()["value"].as_str().map(str::to_owned),
                    )
                })
            })
            .collect();
        for thread in threads {
            let (status, value) = thread.join().unwrap();
            assert_eq!(
                (status, value.as_deref()),
                (200, Some("v-stampede")),
                "{instance}"
            );
        }
        assert_eq!(
            stores.reads(instance, "stampede") - before,
            1,
            "{instance}: one upstream read for 200 callers"
        );
    }
}

#[test]
fn behind_the_daemon_an_outage_serves_the_cached_value_marked_stale_then_recovers() {
    let stores = Stores::start();
    stores.seed("outage", "v-outage");
    let served = Served::start(&stores.ground, &[]);
    let unix = served.unix();
    for (instance, reference, _) in Stores::references("outage") {
        let path = format!("/v1/secret?ref={}", reference.replace('#', "%23"));
        assert_eq!(raw::get(&unix, &path, &[]).status, 200, "{instance}");
        stores.outage(instance, true);
        std::thread::sleep(Duration::from_millis(1200));
        let stale = raw::get(&unix, &path, &[]);
        assert_eq!(stale.status, 200, "{instance}: {}", stale.text());
        assert_eq!(stale.json()["stale"], true, "{instance}");
        assert_eq!(stale.json()["value"], "v-outage", "{instance}");
        stores.outage(instance, false);
        wait_until_fresh(&unix, &path, Instant::now() + Duration::from_secs(10));
    }
}
