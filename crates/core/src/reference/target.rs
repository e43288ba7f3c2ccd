//! What a reference points at inside its backend, and how it prints.

use std::borrow::Cow;
use std::fmt;

use percent_encoding::utf8_percent_encode;

use super::{AwsVersion, ESCAPE, GcpVersion, SsmSelector};

/// What a reference points at inside its backend, without the field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An AWS secret by name or ARN.
    Aws {
        /// Name or full ARN.
        secret_id: String,
        /// Version selector.
        version: AwsVersion,
    },
    /// A GCP secret; `project` is `None` when the reference relies on the instance's configured project,
    /// `location` when it relies on the instance's (global, unless the instance sets one).
    Gcp {
        /// Project id or number.
        project: Option<String>,
        /// The location of a regional secret (`europe-west1`).
        location: Option<String>,
        /// Secret id.
        secret: String,
        /// Version selector.
        version: GcpVersion,
    },
    /// A local store entry.
    Local {
        /// Entry name, possibly with `/` separated segments.
        name: String,
    },
    /// A Vault KV secret.
    Vault {
        /// The path, mount included (`secret/ci/github`).
        path: String,
        /// A KV v2 version; `None` is the current one.
        version: Option<u64>,
    },
    /// A Parameter Store parameter.
    Ssm {
        /// The name without a leading `/`, or the ARN.
        name: String,
        /// A version or label; `None` is the latest.
        selector: Option<SsmSelector>,
    },
    /// An Azure Key Vault secret.
    Azure {
        /// The vault's name (lowercase).
        vault: String,
        /// The secret's name.
        name: String,
        /// A version id (lowercase hex); `None` is the latest.
        version: Option<String>,
    },
    /// A Kubernetes Secret; `namespace` is `None` when the reference relies on the instance's.
    K8s {
        /// The namespace.
        namespace: Option<String>,
        /// The Secret's name.
        name: String,
    },
}

impl Target {
    /// The secret without its version selector: an AWS name or ARN, `PROJECT/SECRET` (or `SECRET` when the
    /// instance's project applies; a regional one `projects/PROJECT/locations/LOCATION/secrets/SECRET`, or
    /// `locations/LOCATION/secrets/SECRET`), a local entry's name. Borrowed for an AWS or local name and a GCP
    /// secret alone.
    #[must_use]
    pub fn identity(&self) -> Cow<'_, str> {
        match self {
            Target::Aws { secret_id, .. } => Cow::Borrowed(secret_id),
            Target::Gcp {
                project,
                location: Some(location),
                secret,
                ..
            } => Cow::Owned(match project {
                Some(project) => {
                    format!("projects/{project}/locations/{location}/secrets/{secret}")
                }
                None => format!("locations/{location}/secrets/{secret}"),
            }),
            Target::Gcp {
                project: Some(project),
                location: None,
                secret,
                ..
            } => Cow::Owned(format!("{project}/{secret}")),
            Target::Gcp {
                project: None,
                location: None,
                secret,
                ..
            }
            | Target::Local { name: secret }
            | Target::Vault { path: secret, .. }
            | Target::Ssm { name: secret, .. }
            | Target::K8s {
                namespace: None,
                name: secret,
            } => Cow::Borrowed(secret),
            Target::Azure { vault, name, .. } => Cow::Owned(format!("{vault}/{name}")),
            Target::K8s {
                namespace: Some(namespace),
                name,
            } => Cow::Owned(format!("{namespace}/{name}")),
        }
    }
}

impl fmt::Display for Target {
    /// The path and query part of the canonical reference (no scheme, no field).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Aws {
                secret_id,
                version: AwsVersion::Stage(stage),
            } => {
                let stage = utf8_percent_encode(stage, ESCAPE);
                write!(f, "{secret_id}?version-stage={stage}")
            }
            Target::Aws {
                secret_id,
                version: AwsVersion::Id(id),
            } => write!(
                f,
                "{secret_id}?version-id={}",
                utf8_percent_encode(id, ESCAPE)
            ),
            Target::Aws {
                secret_id,
                version: AwsVersion::IdAndStage { id, stage },
            } => write!(
                f,
                "{secret_id}?version-id={}&version-stage={}",
                utf8_percent_encode(id, ESCAPE),
                utf8_percent_encode(stage, ESCAPE)
            ),
            Target::Gcp {
                project,
                location,
                secret,
                version,
            } => {
                if let Some(project) = project {
                    write!(f, "{project}/")?;
                }
                write!(f, "{secret}?")?;
                if let Some(location) = location {
                    write!(f, "location={location}&")?;
                }
                write!(f, "version={version}")
            }
            Target::Local { name } => f.write_str(name),
            Target::Vault { path, version } => {
                f.write_str(path)?;
                match version {
                    Some(version) => write!(f, "?version={version}"),
                    None => Ok(()),
                }
            }
            Target::Ssm { name, selector } => {
                f.write_str(name)?;
                match selector {
                    Some(SsmSelector::Version(version)) => write!(f, "?version={version}"),
                    Some(SsmSelector::Label(label)) => write!(f, "?label={label}"),
                    None => Ok(()),
                }
            }
            Target::Azure {
                vault,
                name,
                version,
            } => {
                write!(f, "{vault}/{name}")?;
                match version {
                    Some(version) => write!(f, "?version={version}"),
                    None => Ok(()),
                }
            }
            Target::K8s { namespace, name } => match namespace {
                Some(namespace) => write!(f, "{namespace}/{name}"),
                None => f.write_str(name),
            },
        }
    }
}
