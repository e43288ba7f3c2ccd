//! `keyway webhook`: the Kubernetes mutating admission webhook (HTTPS), until SIGTERM or SIGINT.

use std::path::{Path, PathBuf};

use std::io::{Read as _, Write as _};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Pod;
use keyway_config::Config;
use keyway_inject::InjectConfig;
use keyway_inject::flyte::FlyteBackend;
use kube_core::admission::AdmissionRequest;

use crate::exit::Usage;

fn flyte_backend(text: &str) -> anyhow::Result<FlyteBackend> {
    let parts: Vec<&str> = text.split(':').collect();
    Ok(match parts.as_slice() {
        ["aws"] => FlyteBackend::Aws {
            instance: "aws-sm".into(),
        },
        ["aws", instance] => FlyteBackend::Aws {
            instance: (*instance).to_owned(),
        },
        ["gcp", project] => FlyteBackend::Gcp {
            instance: "gcp-sm".into(),
            project: (*project).to_owned(),
        },
        ["gcp", project, instance] => FlyteBackend::Gcp {
            instance: (*instance).to_owned(),
            project: (*project).to_owned(),
        },
        ["vault"] => FlyteBackend::Vault {
            instance: "vault".into(),
        },
        ["vault", instance] => FlyteBackend::Vault {
            instance: (*instance).to_owned(),
        },
        ["azure"] => FlyteBackend::Azure {
            instance: "azure-kv".into(),
        },
        ["azure", instance] => FlyteBackend::Azure {
            instance: (*instance).to_owned(),
        },
        ["k8s"] => FlyteBackend::K8s {
            instance: "k8s".into(),
        },
        ["k8s", instance] => FlyteBackend::K8s {
            instance: (*instance).to_owned(),
        },
        _ => {
            return Err(Usage(format!(
                "--flyte `{text}`: write aws[:INSTANCE], gcp:PROJECT[:INSTANCE], vault[:INSTANCE], azure[:INSTANCE] or k8s[:INSTANCE]"
            ))
            .into());
        }
    })
}

fn k8s_mapping(path: &Path) -> anyhow::Result<keyway_core::mapping::Mapping> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mapping = keyway_config::iam::read_spec(&text)
        .into_mapping(&format!("--iam-spec {}", path.display()))
        .map_err(Usage)?;
    if mapping.stack != keyway_core::mapping::Stack::K8s {
        return Err(Usage(format!(
            "--iam-spec {}: compute_stack is VM; the webhook applies K8S mappings (service accounts), `keyway serve` applies VM ones",
            path.display()
        ))
        .into());
    }
    Ok(mapping)
}

/// `--review`: one AdmissionReview in, the answering review out.
fn review_once(path: &Path, inject: &InjectConfig) -> anyhow::Result<()> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the AdmissionReview from stdin")?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    let review = keyway_inject::read_review(text.as_bytes()).map_err(Usage)?;
    let request: AdmissionRequest<Pod> = review
        .try_into()
        .map_err(|e| Usage(format!("the AdmissionReview has no request: {e}")))?;
    let answer = keyway_inject::review_json(keyway_inject::mutate(&request, inject));
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &answer).context("cannot write to stdout")?;
    writeln!(out).context("cannot write to stdout")?;
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct WebhookArgs {
    /// Address to listen on (the API server must reach it).
    #[arg(long, default_value = "0.0.0.0:8443", value_name = "ADDR")]
    listen: String,
    /// PEM certificate chain (re-read when it changes).
    #[arg(long, value_name = "FILE", required_unless_present = "review")]
    cert: Option<PathBuf>,
    /// PEM private key (re-read when it changes).
    #[arg(long, value_name = "FILE", required_unless_present = "review")]
    key: Option<PathBuf>,
    /// Answer Flyte's secret requests (`inject-flyte-secrets` Pods) from a backend, read as Flyte's injector of that
    /// type reads them: `aws[:INSTANCE]` (group is the ARN prefix, key the secret name), `gcp:PROJECT[:INSTANCE]`
    /// (group is the secret, group_version the version), `vault[:INSTANCE]` (group is the path, key the field,
    /// group_version kv1 or kv2), `azure[:INSTANCE]` (group is the secret's URI) or `k8s[:INSTANCE]` (group is a
    /// Secret in the Pod's namespace, key its key).
    #[arg(long, value_name = "BACKEND")]
    flyte: Option<String>,
    /// An Anyscale cloud config YAML with `compute_stack: K8S`: Pod labels choose the Pod's service account.
    #[arg(long, value_name = "FILE")]
    iam_spec: Option<PathBuf>,
    /// The Pod label that holds a mapping key, KEY=LABEL (e.g. workload-type=anyscale.com/workload-type);
    /// repeat. Keys not given are read from the label of the same name.
    #[arg(long = "label-name", value_name = "KEY=LABEL")]
    label_names: Vec<String>,
    /// Mutate one AdmissionReview from FILE (`-` for stdin), print the answering review, and exit: no server.
    #[arg(long, value_name = "FILE")]
    review: Option<PathBuf>,
    /// Image of the init container (holds the keyway binary).
    #[arg(
        long,
        env = "KEYWAY_IMAGE",
        default_value = keyway_inject::DEFAULT_IMAGE
    )]
    image: String,
    /// Resources of the containers added to Pods, KIND.RESOURCE=QUANTITY (e.g. limits.cpu=200m); repeat. Replaces
    /// the default (requests.cpu 10m, requests.memory 32Mi, limits.cpu 500m, limits.memory 128Mi); a Pod's
    /// keyway.dev/requests-* and limits-* annotations replace these.
    #[arg(long = "resource", value_name = "KIND.RESOURCE=QUANTITY")]
    resources: Vec<String>,
    /// Default mount path of the secrets volume in Pods.
    #[arg(long, default_value = "/keyway/secrets", value_name = "DIR")]
    dir: String,
    /// Reload --config and --iam-spec when they change (checked every second, applied once a new content reads
    /// the same twice; a file that does not load is refused and the previous configuration kept). SIGHUP
    /// reloads them in any case.
    #[arg(long)]
    watch_config: bool,
}

/// What Pods are mutated by, from the config file (the instances references may name), the IAM spec and the
/// flags.
fn inject_config(config: Option<&Path>, args: &WebhookArgs) -> anyhow::Result<InjectConfig> {
    let config = match config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    // References in annotations may name the instances this config declares.
    let instances = config.providers.instances()?;
    let flyte = args.flyte.as_deref().map(flyte_backend).transpose()?;
    let mapping = args.iam_spec.as_deref().map(k8s_mapping).transpose()?;
    let mut label_names = std::collections::BTreeMap::new();
    for pair in &args.label_names {
        let Some((key, label)) = pair.split_once('=') else {
            return Err(Usage(format!("--label-name `{pair}` is not KEY=LABEL")).into());
        };
        label_names.insert(key.to_owned(), label.to_owned());
    }
    let mut resources = keyway_inject::Resources::default();
    for setting in &args.resources {
        setting
            .split_once('=')
            .and_then(|(name, quantity)| Some((name.split_once('.')?, quantity)))
            .ok_or_else(|| format!("`{setting}` is not KIND.RESOURCE=QUANTITY"))
            .and_then(|((kind, resource), quantity)| resources.set(kind, resource, quantity))
            .map_err(|e| Usage(format!("--resource {e}; e.g. --resource limits.cpu=200m")))?;
    }
    Ok(InjectConfig {
        image: args.image.clone(),
        dir: args.dir.clone(),
        instances,
        flyte,
        mapping,
        label_names,
        resources,
        ..InjectConfig::default()
    })
}

/// The config file and the IAM spec, as [`crate::watch::content`].
fn files_content(config: Option<&Path>, args: &WebhookArgs) -> Vec<u8> {
    crate::watch::content(&[config, args.iam_spec.as_deref()])
}

pub async fn run(config: Option<&Path>, args: WebhookArgs) -> anyhow::Result<()> {
    if args.watch_config && config.is_none() && args.iam_spec.is_none() {
        return Err(Usage(
            "--watch-config watches --config and --iam-spec, and neither is given; add one".into(),
        )
        .into());
    }
    let inject = inject_config(config, &args)?;
    if let Some(path) = &args.review {
        return review_once(path, &inject);
    }
    let (Some(cert), Some(key)) = (args.cert.clone(), args.key.clone()) else {
        return Err(Usage("--cert and --key are required to serve".into()).into());
    };
    let webhook = keyway_webhook::Webhook::bind(&args.listen, cert, key, inject).await?;
    // Before the webhook says it listens: from then on a SIGHUP reloads instead of ending the process.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler")?;
    if let Some(addr) = webhook.local_addr() {
        say!("listening on https://{addr}");
    }
    let current = webhook.configuration();
    let config = config.map(Path::to_path_buf);
    let reloads = tokio::spawn(async move {
        let mut trigger = crate::watch::Trigger::new(
            hangup,
            args.watch_config,
            files_content(config.as_deref(), &args),
        );
        loop {
            trigger
                .next(|| files_content(config.as_deref(), &args))
                .await;
            match inject_config(config.as_deref(), &args) {
                Ok(new) => {
                    current.store(std::sync::Arc::new(new));
                    trigger.applied(files_content(config.as_deref(), &args));
                    tracing::info!("configuration reloaded");
                }
                Err(e) => tracing::error!(
                    error = %format!("{e:#}"),
                    "reload refused; still mutating Pods by the previous configuration"
                ),
            }
        }
    });
    webhook.run(crate::serve::shutdown_signal()).await;
    reloads.abort();
    Ok(())
}
