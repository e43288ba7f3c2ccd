//! The identity an instance assumes: a role ARN, or the role of an instance profile (Anyscale's VM mapping
//! values), through STS `AssumeRole` with credentials the SDK refreshes.

use aws_sdk_secretsmanager::error::ProvideErrorMetadata as _;
use keyway_core::{ErrorKind, ProviderError};

/// The identity an instance assumes with STS `AssumeRole`; the SDK's provider refreshes the temporary
/// credentials before they expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRole {
    /// The role, or the instance profile whose role to assume.
    pub role: RoleSource,
    /// `RoleSessionName`: names the workload in CloudTrail.
    pub session_name: String,
}

/// Where the role ARN comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleSource {
    /// A role ARN, used as is.
    RoleArn(String),
    /// An instance profile name (Anyscale's VM mapping values), resolved with IAM `GetInstanceProfile`.
    InstanceProfile(String),
}

impl RoleSource {
    /// A mapping value: a role ARN when it looks like one, an instance profile name otherwise.
    pub fn from_value(value: &str) -> RoleSource {
        if value.starts_with("arn:") && value.contains(":role/") {
            RoleSource::RoleArn(value.to_owned())
        } else {
            RoleSource::InstanceProfile(value.to_owned())
        }
    }
}

/// The role ARN of an instance profile.
async fn instance_profile_role(
    config: &aws_config::SdkConfig,
    name: &str,
) -> Result<String, ProviderError> {
    let out = aws_sdk_iam::Client::new(config)
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .map_err(|e| {
            let code = e.code().unwrap_or_default().to_owned();
            match code.as_str() {
                "NoSuchEntity" => ProviderError::new(
                    ErrorKind::NotFound,
                    format!("IAM instance profile `{name}` (chosen by the identity mapping) does not exist; fix the rule's value"),
                ),
                "AccessDenied" | "AccessDeniedException" => ProviderError::new(
                    ErrorKind::PermissionDenied,
                    format!("the base identity needs iam:GetInstanceProfile on instance profile `{name}` to use the identity mapping"),
                ),
                _ => ProviderError::new(
                    ErrorKind::Unavailable,
                    format!("cannot read IAM instance profile `{name}` ({code}); retry later"),
                ),
            }
            .with_source(e)
        })?;
    out.instance_profile()
        .and_then(|p| p.roles().first())
        .map(|r| r.arn().to_owned())
        .ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Misconfigured,
                format!("IAM instance profile `{name}` has no role; add one to it"),
            )
        })
}

pub(super) async fn assume(
    base: aws_config::SdkConfig,
    assume: &AssumeRole,
) -> Result<aws_config::SdkConfig, ProviderError> {
    let role_arn = match &assume.role {
        RoleSource::RoleArn(arn) => arn.clone(),
        RoleSource::InstanceProfile(name) => instance_profile_role(&base, name).await?,
    };
    tracing::info!(role = %role_arn, session = %assume.session_name, "assuming the mapped role");
    let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
        .session_name(assume.session_name.clone())
        .configure(&base)
        .build()
        .await;
    Ok(base
        .into_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .build())
}
