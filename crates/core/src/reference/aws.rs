//! `aws-sm://NAME_OR_ARN[?version-id=ID][&version-stage=STAGE]`: AWS Secrets Manager's names, ARNs and versions.

use super::{Target, is_region_label};

/// Which version of an AWS secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AwsVersion {
    /// A staging label, `AWSCURRENT` by default.
    Stage(String),
    /// A version id (a UUID).
    Id(String),
    /// A version id that must also carry this staging label (the AWS agent's `versionId` with `versionStage`):
    /// Secrets Manager refuses the pair when they name different versions.
    IdAndStage {
        /// The version id.
        id: String,
        /// The staging label.
        stage: String,
    },
}

pub(super) fn parse_aws(path: &str, query: &[(String, String)]) -> Result<Target, String> {
    let (mut id, mut stage) = (None, None);
    for (key, value) in query {
        match key.as_str() {
            "version-id" => id = Some(value.clone()),
            "version-stage" => stage = Some(value.clone()),
            other => {
                return Err(format!(
                    "unknown parameter `{other}` for AWS; use version-id=ID or version-stage=STAGE"
                ));
            }
        }
    }
    let version = match (id, stage) {
        (Some(id), Some(stage)) => AwsVersion::IdAndStage { id, stage },
        (Some(id), None) => AwsVersion::Id(id),
        (None, Some(stage)) => AwsVersion::Stage(stage),
        (None, None) => AwsVersion::Stage("AWSCURRENT".to_owned()),
    };
    if path.starts_with("arn:") {
        // arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME
        let parts: Vec<&str> = path.splitn(7, ':').collect();
        if parts.len() != 7
            || parts[2] != "secretsmanager"
            || parts[5] != "secret"
            || parts[6].is_empty()
        {
            return Err(
                "an ARN must look like arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME".into(),
            );
        }
        // The region picks the endpoint a cross-region read goes to: a host label, nothing else.
        let region = parts[3];
        if !is_aws_region(region) {
            return Err(format!(
                "`{region}` in the ARN is not an AWS region (lowercase letters, digits and `-`, e.g. us-east-1)"
            ));
        }
    } else if path.len() > 512 {
        return Err("an AWS secret name is at most 512 characters".into());
    } else if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c)))
    {
        return Err(format!(
            "AWS secret names hold letters, digits and /_+=.@- only, not {c:?}"
        ));
    }
    Ok(Target::Aws {
        secret_id: path.to_owned(),
        version,
    })
}

/// An AWS region as an ARN names it and an endpoint's host name takes it: `us-east-1`.
#[must_use]
pub fn is_aws_region(region: &str) -> bool {
    is_region_label(region, 32)
}
