//! A Pod's `keyway.dev/*` annotations (and Flyte's, through [`crate::flyte`]) read into typed values: what
//! to deliver, where, with which mode and owner, how often to refresh, with which resources. Every value is
//! checked here, so a Pod Keyway cannot serve is denied at admission with the annotation named.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use keyway_core::template::{Placeholder, Template};
use keyway_core::{FileMode, Instances, SecretRef};

use crate::resources::Resources;
use crate::{Denial, InjectConfig, PREFIX, flyte};

/// The shortest `keyway.dev/refresh` or `env-restart` interval: each round asks the upstream again.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// What a Pod asked for, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    /// File name to reference, sorted by file name.
    pub files: BTreeMap<String, SecretRef>,
    /// File name to template text (`{{ REF }}` placeholders), checked at admission, filled by the init container.
    pub templates: BTreeMap<String, String>,
    /// Mount path.
    pub dir: String,
    /// File mode.
    pub mode: FileMode,
    /// Explicit owner.
    pub owner: Option<(u32, u32)>,
    /// Environment variable to reference: delivered by wrapping each container's command in `keyway exec`.
    pub env: BTreeMap<String, SecretRef>,
    /// A Flyte request: plain variables every container gets (flytekit's `FLYTE_SECRETS_*`, and the paths of
    /// file secrets that name an `env_var`).
    pub flyte: Option<BTreeMap<String, String>>,
    /// `keyway.dev/refresh`: a native sidecar re-renders the files at this interval.
    pub refresh: Option<Duration>,
    /// `keyway.dev/env-restart`: the `keyway exec` wrappers check the environment's references at this interval
    /// and restart the container's command in place when a value changed (`keyway exec --watch`).
    pub env_restart: Option<Duration>,
    /// `keyway.dev/requests-cpu`, `requests-memory`, `limits-cpu`, `limits-memory`: the added containers'
    /// resources, each replacing the webhook's.
    pub resources: Resources,
}

impl Ask {
    fn new(dir: String, mode: FileMode) -> Ask {
        Ask {
            files: BTreeMap::new(),
            templates: BTreeMap::new(),
            dir,
            mode,
            owner: None,
            env: BTreeMap::new(),
            flyte: None,
            refresh: None,
            env_restart: None,
            resources: Resources::default(),
        }
    }
}

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
                Some(backend) => read_flyte(
                    annotations,
                    backend,
                    config,
                    pod.metadata.namespace.as_deref(),
                ),
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
    let mut ask = Ask::new(config.dir.clone(), config.mode);
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
            ask.mode = value
                .parse::<FileMode>()
                .ok()
                .filter(|mode| mode.owner_reads())
                .ok_or_else(|| {
                    Denial(format!(
                        "annotation {key}: `{value}` is not an octal file mode the owner can read (e.g. \"0400\")"
                    ))
                })?;
        }
        "requests-cpu" | "requests-memory" | "limits-cpu" | "limits-memory" => {
            let (kind, resource) = name.split_once('-').unwrap_or_default();
            ask.resources
                .set(kind, resource, value)
                .map_err(|e| Denial(format!("annotation {key}: {e}")))?;
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

/// An interval annotation's value as `keyway render --watch` and `keyway exec --watch` read it (humantime:
/// `90s`, `5m`, `1h30m`), at least [`MIN_INTERVAL`].
fn interval(key: &str, value: &str) -> Result<Duration, Denial> {
    humantime::parse_duration(value)
        .ok()
        .filter(|interval| *interval >= MIN_INTERVAL)
        .ok_or_else(|| {
            Denial(format!(
                "annotation {key}: `{value}` is not an interval of at least 10s (write e.g. \"5m\" or \"1h30m\")"
            ))
        })
}

fn read_flyte(
    annotations: &BTreeMap<String, String>,
    backend: &flyte::FlyteBackend,
    config: &InjectConfig,
    namespace: Option<&str>,
) -> Result<Option<Ask>, Denial> {
    let Some(flyte) = flyte::read(annotations, backend, &config.instances, namespace)? else {
        return Ok(None);
    };
    Ok(Some(Ask {
        files: flyte.files,
        env: flyte.env,
        flyte: Some(flyte.vars),
        ..Ask::new(flyte::DIR.to_owned(), config.mode)
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
