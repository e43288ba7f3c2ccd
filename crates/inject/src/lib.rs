//! Secrets into Kubernetes Pods: the mutation behind `keyway webhook`, as a pure function
//! ([`mutate`]: `AdmissionRequest<Pod>` and an [`InjectConfig`] in, `AdmissionResponse` out), tested without a
//! server.
//!
//! A Pod asks with annotations (`docs/webhook.md`):
//! - `keyway.dev/inject: "true"`
//! - `keyway.dev/secret.<file>: <reference>`: the value lands in `<dir>/<file>`
//! - `keyway.dev/template.<file>: <text>`: the text, with each `{{ <reference> }}` replaced by its value, lands in
//!   `<dir>/<file>`
//! - `keyway.dev/mode: "0400"`, `keyway.dev/owner: "uid:gid"`, `keyway.dev/dir: "/keyway/secrets"`
//!
//! The patch adds one memory-backed `emptyDir`, **one** init container that runs `keyway render` for all the
//! Pod's secrets (concurrently, all or nothing, non-zero exit on any failure), and a read-only mount of the
//! volume into every container. The mutated Pod is computed first and the RFC 6902 patch is the difference,
//! so mutating an already mutated Pod yields an empty patch, and fields Keyway does not know are untouched.

pub mod flyte;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, Pod, PodSpec, ResourceRequirements,
    SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use keyway_core::mapping::{Decision, Mapping};
use keyway_core::template::{Placeholder, Template};
use keyway_core::{Instances, SecretRef};
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

/// Annotation prefix of every Keyway annotation.
pub const PREFIX: &str = "keyway.dev/";
/// Name of the volume the secrets live in.
pub const VOLUME: &str = "keyway-secrets";
/// Name of the init container.
pub const INIT_CONTAINER: &str = "keyway-render";

/// How the webhook mutates Pods.
#[derive(Debug, Clone)]
pub struct InjectConfig {
    /// The image holding the `keyway` binary.
    pub image: String,
    /// Default mount path of the secrets volume.
    pub dir: String,
    /// Default file mode.
    pub mode: u32,
    /// Provider instances references may name (references to others are denied at admission).
    pub instances: Instances,
    /// Serve Flyte's requests (`inject-flyte-secrets` Pods) from this backend; `None` leaves them alone.
    pub flyte: Option<flyte::FlyteBackend>,
    /// An identity mapping with `compute_stack: K8S`: the Pod's labels choose its service account.
    pub mapping: Option<Mapping>,
    /// The Pod label holding each mapping key (`workload-type`, `project`, `user`); keys absent here are read
    /// from the label of the same name.
    pub label_names: BTreeMap<String, String>,
    /// The added containers' resources replacing [`RESOURCES`] for every Pod (a Pod's own annotations still
    /// win), keyed by (`requests` or `limits`, `cpu` or `memory`).
    pub resources: BTreeMap<(String, String), String>,
}

impl Default for InjectConfig {
    fn default() -> Self {
        InjectConfig {
            image: "ghcr.io/keyway-dev/keyway:latest".to_owned(),
            dir: "/keyway/secrets".to_owned(),
            mode: 0o400,
            instances: Instances::default(),
            flyte: None,
            mapping: None,
            label_names: BTreeMap::new(),
            resources: BTreeMap::new(),
        }
    }
}

/// Why a Pod is refused; the message names the annotation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denial(pub String);

/// What a Pod asked for, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// File name to reference, sorted by file name.
    pub files: BTreeMap<String, SecretRef>,
    /// File name to template text (`{{ REF }}` placeholders), checked at admission, filled by the init container.
    pub templates: BTreeMap<String, String>,
    /// Mount path.
    pub dir: String,
    /// File mode.
    pub mode: u32,
    /// Explicit owner.
    pub owner: Option<(u32, u32)>,
    /// Environment variable to reference: delivered by wrapping each container's command in `keyway exec`.
    pub env: BTreeMap<String, SecretRef>,
    /// A Flyte request: plain variables every container gets (flytekit's `FLYTE_SECRETS_*`, and the paths of
    /// file secrets that name an `env_var`).
    pub flyte: Option<BTreeMap<String, String>>,
    /// `keyway.dev/refresh`: a native sidecar re-renders the files at this interval (`30s`, `5m`, `1h`).
    pub refresh: Option<String>,
    /// `keyway.dev/env-restart`: the `keyway exec` wrappers check the environment's references at this interval
    /// and restart the container's command in place when a value changed (`keyway exec --watch`).
    pub env_restart: Option<String>,
    /// `keyway.dev/requests-cpu`, `requests-memory`, `limits-cpu`, `limits-memory`: the added containers'
    /// resources, replacing the defaults ([`RESOURCES`]), keyed by (`requests` or `limits`, `cpu` or `memory`).
    pub resources: BTreeMap<(String, String), String>,
}

/// The added containers' default requests and limits: (kind, resource, quantity).
pub const RESOURCES: [(&str, &str, &str); 4] = [
    ("requests", "cpu", "10m"),
    ("requests", "memory", "32Mi"),
    ("limits", "cpu", "500m"),
    ("limits", "memory", "128Mi"),
];

/// Reads the Keyway annotations of a Pod: `None` when it does not ask for injection.
pub fn read_annotations(pod: &Pod, config: &InjectConfig) -> Result<Option<Ask>, Denial> {
    let Some(annotations) = pod.metadata.annotations.as_ref() else {
        return Ok(None);
    };
    let flyte_label = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(flyte::LABEL))
        .is_some_and(|v| v == "true");
    match annotations.get("keyway.dev/inject").map(String::as_str) {
        None if flyte_label => {
            return match &config.flyte {
                Some(backend) => read_flyte(annotations, backend, config),
                None => Ok(None),
            };
        }
        None | Some("false") => return Ok(None),
        Some("true") => {}
        Some(other) => {
            return Err(Denial(format!(
                "annotation keyway.dev/inject: `{other}` is not \"true\" or \"false\""
            )));
        }
    }
    let mut ask = Ask {
        files: BTreeMap::new(),
        templates: BTreeMap::new(),
        dir: config.dir.clone(),
        mode: config.mode,
        owner: None,
        env: BTreeMap::new(),
        flyte: None,
        refresh: None,
        env_restart: None,
        resources: BTreeMap::new(),
    };
    for (key, value) in annotations {
        let Some(name) = key.strip_prefix(PREFIX) else {
            continue;
        };
        if let Some(file) = name.strip_prefix("secret.") {
            check_file_name(key, file)?;
            let reference = SecretRef::parse_with(value, &config.instances)
                .map_err(|e| Denial(format!("annotation {key}: {e}")))?;
            ask.files.insert(file.to_owned(), reference);
        } else if let Some(file) = name.strip_prefix("template.") {
            check_file_name(key, file)?;
            check_template(key, value, &config.instances)?;
            ask.templates.insert(file.to_owned(), value.clone());
        } else if let Some(var) = name.strip_prefix("env.") {
            let valid = var.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(Denial(format!(
                    "annotation {key}: `{var}` is not an environment variable name (letters, digits, `_`)"
                )));
            }
            let reference = SecretRef::parse_with(value, &config.instances)
                .map_err(|e| Denial(format!("annotation {key}: {e}")))?;
            ask.env.insert(var.to_owned(), reference);
        } else {
            read_setting(&mut ask, key, name, value)?;
        }
    }
    if ask.files.is_empty() && ask.templates.is_empty() && ask.env.is_empty() {
        return Err(Denial(
            "keyway.dev/inject is \"true\" but no keyway.dev/secret.<file>, template.<file> or env.<VAR> annotation \
             names a secret"
                .into(),
        ));
    }
    if ask.env_restart.is_some() && ask.env.is_empty() {
        return Err(Denial(format!(
            "annotation {PREFIX}env-restart restarts commands whose environment holds secrets, but no {PREFIX}env.<VAR> \
             annotation names one; add one, or use {PREFIX}refresh for files"
        )));
    }
    if let Some(file) = ask.templates.keys().find(|f| ask.files.contains_key(*f)) {
        return Err(Denial(format!(
            "annotations {PREFIX}secret.{file} and {PREFIX}template.{file} name one file; rename one of them"
        )));
    }
    Ok(Some(ask))
}

/// One `keyway.dev/<name>` setting annotation (not `secret.*` or `env.*`).
fn read_setting(ask: &mut Ask, key: &str, name: &str, value: &str) -> Result<(), Denial> {
    match name {
        "inject" => {}
        "mode" => {
            ask.mode = u32::from_str_radix(value.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o777 && *m & 0o400 != 0)
                .ok_or_else(|| {
                    Denial(format!(
                        "annotation {key}: `{value}` is not an octal file mode the owner can read (e.g. \"0400\")"
                    ))
                })?;
        }
        "requests-cpu" | "requests-memory" | "limits-cpu" | "limits-memory" => {
            let (kind, resource) = name.split_once('-').unwrap_or_default();
            let entry = resource_entry(kind, resource, value)
                .map_err(|e| Denial(format!("annotation {key}: {e}")))?;
            ask.resources.insert(entry.0, entry.1);
        }
        "refresh" => ask.refresh = Some(interval(key, value)?),
        "env-restart" => ask.env_restart = Some(interval(key, value)?),
        "owner" => {
            let parsed = value
                .split_once(':')
                .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
            ask.owner = Some(parsed.ok_or_else(|| {
                Denial(format!(
                    "annotation {key}: `{value}` is not UID:GID (numbers)"
                ))
            })?);
        }
        "dir" => {
            if !value.starts_with('/') || value.split('/').any(|s| s == "..") {
                return Err(Denial(format!(
                    "annotation {key}: `{value}` is not an absolute path without `..`"
                )));
            }
            value.clone_into(&mut ask.dir);
        }
        _ => {
            return Err(Denial(format!(
                "unknown annotation {key}; Keyway reads inject, secret.<file>, template.<file>, env.<VAR>, mode, owner, dir, \
                 refresh, env-restart, requests-cpu, requests-memory, limits-cpu and limits-memory"
            )));
        }
    }
    Ok(())
}

/// One resource setting of the added containers, checked: `kind` `requests` or `limits`, `resource` `cpu` or
/// `memory`, `quantity` a Kubernetes quantity. The error says what is wrong, for an annotation or a flag.
pub fn resource_entry(
    kind: &str,
    resource: &str,
    quantity: &str,
) -> Result<((String, String), String), String> {
    if !RESOURCES
        .iter()
        .any(|&(k, r, _)| k == kind && r == resource)
    {
        return Err(format!(
            "`{kind}.{resource}` is not one of requests.cpu, requests.memory, limits.cpu, limits.memory"
        ));
    }
    if !is_quantity(quantity) {
        return Err(format!(
            "`{quantity}` is not a Kubernetes quantity (e.g. \"100m\" for CPU, \"64Mi\" for memory)"
        ));
    }
    Ok(((kind.to_owned(), resource.to_owned()), quantity.to_owned()))
}

/// A Kubernetes resource quantity as Pods write them: a decimal number and an optional SI or binary suffix
/// (`100m`, `0.5`, `64Mi`, `1G`); the API server would refuse anything else after admission, less clearly.
fn is_quantity(value: &str) -> bool {
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &value[digits.len()..];
    let number = digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.matches('.').count() <= 1
        && digits.chars().any(|c| c.is_ascii_digit());
    number
        && [
            "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
        ]
        .contains(&suffix)
}

/// An interval annotation's value, checked: at least 10s.
fn interval(key: &str, value: &str) -> Result<String, Denial> {
    if interval_seconds(value).is_none_or(|s| s < 10) {
        return Err(Denial(format!(
            "annotation {key}: `{value}` is not an interval of at least 10s (write e.g. \"5m\")"
        )));
    }
    Ok(value.to_owned())
}

/// `30s`, `5m` or `1h` in seconds.
fn interval_seconds(value: &str) -> Option<u64> {
    let (number, unit) = value.split_at(value.len().saturating_sub(1));
    let n: u64 = number.parse().ok()?;
    match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => None,
    }
}

fn read_flyte(
    annotations: &BTreeMap<String, String>,
    backend: &flyte::FlyteBackend,
    config: &InjectConfig,
) -> Result<Option<Ask>, Denial> {
    let Some(flyte) = flyte::read(annotations, backend, &config.instances)? else {
        return Ok(None);
    };
    Ok(Some(Ask {
        files: flyte.files,
        templates: BTreeMap::new(),
        dir: flyte::DIR.to_owned(),
        mode: config.mode,
        owner: None,
        env: flyte.env,
        flyte: Some(flyte.vars),
        refresh: None,
        env_restart: None,
        resources: BTreeMap::new(),
    }))
}

fn check_file_name(key: &str, file: &str) -> Result<(), Denial> {
    // A leading `-` would read as an option of `keyway render`.
    let ok = !file.is_empty()
        && !file.starts_with('-')
        && file != "."
        && file != ".."
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Denial(format!(
            "annotation {key}: the file name must be letters, digits, `-`, `_` or `.`, not starting with `-`"
        )))
    }
}

/// A template annotation's placeholders must close and hold references Keyway can read.
fn check_template(key: &str, text: &str, instances: &Instances) -> Result<(), Denial> {
    if text.contains('\0') {
        return Err(Denial(format!(
            "annotation {key}: a template cannot hold a NUL byte (it is passed on the init container's command line)"
        )));
    }
    let template = Template::new(text).map_err(|e| Denial(format!("annotation {key}: {e}")))?;
    for Placeholder { reference, line } in template.references() {
        SecretRef::parse_with(reference, instances)
            .map_err(|e| Denial(format!("annotation {key}: line {line}: {e}")))?;
    }
    Ok(())
}

/// The `keyway render` invocation the init container runs.
pub fn render_command(ask: &Ask) -> Vec<String> {
    let mut command = vec![
        "keyway".to_owned(),
        "--daemon".to_owned(),
        "never".to_owned(),
        "render".to_owned(),
        "--dir".to_owned(),
        ask.dir.clone(),
        "--mode".to_owned(),
        format!("{:04o}", ask.mode),
    ];
    if let Some((uid, gid)) = ask.owner {
        command.extend([
            "--uid".to_owned(),
            uid.to_string(),
            "--gid".to_owned(),
            gid.to_string(),
        ]);
    }
    if !ask.env.is_empty() {
        command.extend(["--install-self".to_owned(), BIN_DIR.to_owned()]);
    }
    command.extend(ask.files.iter().map(|(file, r)| format!("{file}={r}")));
    for (file, text) in &ask.templates {
        command.push(format!("--template-text={file}={text}"));
    }
    command
}

/// Name of the refresh sidecar (a native sidecar: an init container with `restartPolicy: Always`).
pub const REFRESH_CONTAINER: &str = "keyway-refresh";

/// Where the init container installs the keyway binary for `keyway exec` wrappers.
pub const BIN_DIR: &str = "/keyway/bin";
/// The volume holding it.
pub const BIN_VOLUME: &str = "keyway-bin";

/// `/keyway/bin/keyway exec --env VAR=REF ... --` followed by the container's own command, unless it is wrapped
/// already. References are names, not values: the values are fetched by the container when it starts.
///
/// The command is known when the Pod spec sets `command`, or, for a Flyte task, when `args` start with one
/// of flytekit's entrypoints (on `PATH` in every flytekit image): then `command` becomes the wrapper and
/// `args` stay as they are. Otherwise the image's ENTRYPOINT runs, which the webhook cannot see, and the
/// warning says so.
fn wrap_command(container: &mut Container, ask: &Ask) -> Result<(), String> {
    let wrapper = format!("{BIN_DIR}/keyway");
    let mut exec = vec![wrapper.clone(), "exec".to_owned()];
    if let Some(interval) = &ask.env_restart {
        exec.extend(["--watch".to_owned(), interval.clone()]);
    }
    for (var, reference) in &ask.env {
        exec.extend(["--env".to_owned(), format!("{var}={reference}")]);
    }
    exec.push("--".to_owned());
    match container.command.as_mut().filter(|c| !c.is_empty()) {
        Some(command) if command[0] == wrapper => {}
        Some(command) => {
            exec.append(command);
            *command = exec;
        }
        None if ask.flyte.is_some()
            && container
                .args
                .as_ref()
                .and_then(|a| a.first())
                .is_some_and(|a| flyte::ENTRYPOINTS.contains(&a.as_str())) =>
        {
            container.command = Some(exec);
        }
        None => {
            return Err(format!(
                "keyway: container `{}` has no command in the Pod spec (it runs the image's ENTRYPOINT), so its environment cannot be wrapped with `keyway exec`; set command, or read the secret from a file",
                container.name
            ));
        }
    }
    Ok(())
}

/// The secrets volume (memory-backed) and, for environment delivery, the volume holding the keyway binary.
fn add_volumes(spec: &mut PodSpec, ask: &Ask) {
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    if !ask.env.is_empty() && !volumes.iter().any(|v| v.name == BIN_VOLUME) {
        volumes.push(Volume {
            name: BIN_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
    }
    if !volumes.iter().any(|v| v.name == VOLUME) {
        volumes.push(Volume {
            name: VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_owned()),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
}

/// Flyte's plain variables (flytekit reads /etc/secrets unless told otherwise), replacing any of the same name.
fn set_flyte_env(container: &mut Container, vars: &BTreeMap<String, String>) {
    let env = container.env.get_or_insert_with(Vec::new);
    for (name, value) in vars {
        env.retain(|e| &e.name != name);
        env.push(EnvVar {
            name: name.clone(),
            value: Some(value.clone()),
            value_from: None,
        });
    }
}

/// The mutated Pod, and warnings for the response.
pub fn mutate_pod(pod: &Pod, ask: &Ask, config: &InjectConfig) -> (Pod, Vec<String>) {
    let mut pod = pod.clone();
    let mut warnings = Vec::new();
    if ask.mode & 0o007 != 0 {
        warnings.push(format!(
            "keyway.dev/mode {:04o} lets every user in the Pod's containers read the secrets; set keyway.dev/owner \
             to the app's uid:gid and use 0400 (or 0440 for its group)",
            ask.mode
        ));
    }
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    add_volumes(spec, ask);
    let mount = |read_only: bool| VolumeMount {
        name: VOLUME.to_owned(),
        mount_path: ask.dir.clone(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    let bin_mount = |read_only: bool| VolumeMount {
        name: BIN_VOLUME.to_owned(),
        mount_path: BIN_DIR.to_owned(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    for container in &mut spec.containers {
        let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
        if !mounts.iter().any(|m| m.name == VOLUME) {
            mounts.push(mount(true));
        }
        if !ask.env.is_empty() {
            match wrap_command(container, ask) {
                Ok(()) => {
                    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
                    if !mounts.iter().any(|m| m.name == BIN_VOLUME) {
                        mounts.push(bin_mount(true));
                    }
                }
                Err(warning) => warnings.push(warning),
            }
        }
        if let Some(vars) = &ask.flyte {
            set_flyte_env(container, vars);
        }
    }
    // Flyte's injectors give the Pod's own init containers the files and variables too; they run after
    // Keyway's, which is first.
    if let Some(vars) = &ask.flyte {
        for container in spec
            .init_containers
            .iter_mut()
            .flatten()
            .filter(|c| c.name != INIT_CONTAINER && c.name != REFRESH_CONTAINER)
        {
            let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
            if !mounts.iter().any(|m| m.name == VOLUME) {
                mounts.push(mount(true));
            }
            set_flyte_env(container, vars);
        }
    }
    let security_context = Some(hardened(ask.owner.is_some()));
    let init = Container {
        name: INIT_CONTAINER.to_owned(),
        image: Some(config.image.clone()),
        command: Some(render_command(ask)),
        volume_mounts: Some(if ask.env.is_empty() {
            vec![mount(false)]
        } else {
            vec![mount(false), bin_mount(false)]
        }),
        security_context,
        resources: Some(resources(ask, config)),
        ..Container::default()
    };
    // The refresh sidecar starts after the first render (which gates the app: init containers run in order)
    // and keeps running beside it; native sidecars do not keep a Job from finishing.
    let refresher = ask
        .refresh
        .as_ref()
        .filter(|_| !ask.files.is_empty() || !ask.templates.is_empty())
        .map(|interval| {
            let mut command = render_command(&Ask {
                env: BTreeMap::new(),
                ..ask.clone()
            });
            command.extend(["--watch".to_owned(), interval.clone()]);
            Container {
                name: REFRESH_CONTAINER.to_owned(),
                command: Some(command),
                restart_policy: Some("Always".to_owned()),
                ..init.clone()
            }
        });
    let inits = spec.init_containers.get_or_insert_with(Vec::new);
    match inits.iter_mut().find(|c| c.name == INIT_CONTAINER) {
        Some(existing) => *existing = init,
        None => inits.insert(0, init),
    }
    if let Some(refresher) = refresher {
        match inits.iter_mut().find(|c| c.name == REFRESH_CONTAINER) {
            Some(existing) => *existing = refresher,
            None => inits.insert(1, refresher),
        }
    }
    (pod, warnings)
}

/// The security context of the containers the webhook adds, as Kubernetes' `restricted` Pod Security
/// Standard asks of every container (a Pod in a namespace that enforces it is refused otherwise): no privilege
/// escalation, every capability dropped, the runtime's default seccomp profile. Without `keyway.dev/owner` the
/// container runs as the Pod's user, so the files belong to it and mode 0400 suffices; with it, it must run as
/// root to give the files away, with `CHOWN`, and `DAC_OVERRIDE` to write again into the directories it gave
/// away (the refresh sidecar); `restricted` forbids that, `baseline` allows it.
fn hardened(chown: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: chown.then(|| ["CHOWN", "DAC_OVERRIDE"].map(str::to_owned).to_vec()),
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        run_as_user: chown.then_some(0),
        run_as_non_root: chown.then_some(false),
        ..SecurityContext::default()
    }
}

/// Requests and limits of the containers the webhook adds: the Pod's `keyway.dev/requests-*` and `limits-*`
/// annotations, else the webhook's `--resource` flags, else [`RESOURCES`] (a render takes well under these). A
/// namespace whose ResourceQuota covers CPU or memory refuses a Pod with a container that declares none, as
/// Vault's injector knows (it sets its own, and takes flags and annotations for them too).
fn resources(ask: &Ask, config: &InjectConfig) -> ResourceRequirements {
    let of = |wanted: &str| {
        RESOURCES
            .iter()
            .filter(|(kind, _, _)| *kind == wanted)
            .map(|&(kind, resource, default)| {
                let key = (kind.to_owned(), resource.to_owned());
                let amount = ask
                    .resources
                    .get(&key)
                    .or_else(|| config.resources.get(&key))
                    .map_or(default, String::as_str);
                (resource.to_owned(), Quantity(amount.to_owned()))
            })
            .collect()
    };
    ResourceRequirements {
        requests: Some(of("requests")),
        limits: Some(of("limits")),
        ..ResourceRequirements::default()
    }
}

/// The service account the identity mapping chooses for a Pod: `Ok(None)` when there is no mapping or it
/// falls back to the cloud default; a denial for `FAIL` with no match, or for an explicit
/// `serviceAccountName` that disagrees with the mapping.
pub fn service_account(pod: &Pod, config: &InjectConfig) -> Result<Option<String>, Denial> {
    let Some(mapping) = &config.mapping else {
        return Ok(None);
    };
    let pod_labels = pod.metadata.labels.clone().unwrap_or_default();
    let labels: BTreeMap<String, String> = ["workload-type", "project", "user"]
        .into_iter()
        .filter_map(|key| {
            let label = config.label_names.get(key).map_or(key, String::as_str);
            pod_labels.get(label).map(|v| (key.to_owned(), v.clone()))
        })
        .collect();
    let shown = || {
        let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if pairs.is_empty() {
            "(none)".to_owned()
        } else {
            pairs.join(",")
        }
    };
    match mapping.resolve(&labels) {
        Decision::CloudDefault => Ok(None),
        Decision::Fail => Err(Denial(format!(
            "keyway: no identity mapping rule matches this Pod's labels {} and fallback_rule is FAIL; rules tried: {}",
            shown(),
            mapping.rules_tried()
        ))),
        Decision::Rule { index, value } => {
            let explicit = pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.as_deref())
                .filter(|name| !name.is_empty() && *name != "default");
            match explicit {
                Some(name) if name != value => Err(Denial(format!(
                    "keyway: serviceAccountName `{name}` disagrees with the identity mapping, which chooses `{value}` for labels {} (rule {}); remove serviceAccountName or fix the rule",
                    shown(),
                    index + 1
                ))),
                _ => Ok(Some(value)),
            }
        }
    }
}

/// Reads an AdmissionReview for a Pod. The error names where the body went wrong (a JSON path, line and column)
/// and how, never what it held there: serde's own messages quote the value they met, and a Pod's `env` values
/// are often secrets (an unquoted `value: 1234` in a manifest is an integer where a string belongs).
pub fn read_review(body: &[u8]) -> Result<AdmissionReview<Pod>, String> {
    let mut reader = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut reader).map_err(|e| {
        let place = match e.path().to_string() {
            path if path == "." => String::new(),
            path => format!(" at `{path}`"),
        };
        let problem = keyway_core::JsonProblem::from(e.inner());
        format!(
            "not an AdmissionReview for a Pod: {}{place} (line {}, column {})",
            problem.what, problem.line, problem.column
        )
    })
}

/// The AdmissionReview that carries `response`, as JSON, with the patch base64-encoded: the API's JSON form of
/// its `[]byte`, as the Kubernetes documentation shows it. kube-core writes the bytes as an array of numbers
/// (kube-rs/kube#1781), which Go's decoder also reads, at about three times the size.
pub fn review_json(response: AdmissionResponse) -> serde_json::Value {
    let patch = response
        .patch
        .as_deref()
        .map(|bytes| data_encoding::BASE64.encode(bytes));
    let mut review = serde_json::to_value(response.into_review()).unwrap_or_default();
    if let (Some(patch), Some(field)) = (patch, review.pointer_mut("/response/patch")) {
        *field = serde_json::Value::String(patch);
    }
    review
}

/// The webhook's answer to one AdmissionRequest for a Pod.
pub fn mutate(request: &AdmissionRequest<Pod>, config: &InjectConfig) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    let Some(pod) = request.object.as_ref() else {
        return response;
    };
    let account = match service_account(pod, config) {
        Ok(account) => account,
        Err(denial) => return response.deny(denial.0),
    };
    let ask = match read_annotations(pod, config) {
        Ok(ask) => ask,
        Err(denial) => return response.deny(denial.0),
    };
    if ask.is_none() && account.is_none() {
        return response;
    }
    let (mut mutated, warnings) = match &ask {
        Some(ask) => mutate_pod(pod, ask, config),
        None => (pod.clone(), Vec::new()),
    };
    if let Some(account) = account {
        mutated
            .spec
            .get_or_insert_with(PodSpec::default)
            .service_account_name = Some(account);
    }
    let (Ok(before), Ok(after)) = (serde_json::to_value(pod), serde_json::to_value(&mutated))
    else {
        return response.deny("keyway: cannot encode the Pod");
    };
    let patch = json_patch::diff(&before, &after);
    let mut response = match response.with_patch(patch) {
        Ok(r) => r,
        Err(e) => {
            return AdmissionResponse::invalid(format!("keyway: cannot encode the patch: {e}"));
        }
    };
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}
