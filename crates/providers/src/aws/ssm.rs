//! AWS Systems Manager Parameter Store through the official SDK (`aws-sdk-ssm`), with the same settings,
//! credentials and mapped role as a Secrets Manager instance ([`super::load_sdk_config`]). `SecureString`
//! parameters are always read decrypted; the answer keeps the parameter's own fields (type, data type, ARN)
//! for the daemon's Parameters and Secrets Lambda Extension route.

use async_trait::async_trait;
use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::ParameterStringFilter;
use keyway_core::reference::{BackendKind, SsmSelector, Target};
use keyway_core::{
    Encoding, ErrorKind, ListFilter, Provider, ProviderError, Secret, SecretMeta, SecretValue,
};
use tokio::sync::OnceCell;

use super::errors::{NoThrottlingRetry, PARAMETER_STORE, classify};
use super::{AwsSettings, load_sdk_config, no_region};

/// The Parameter Store provider. The SDK client is built on first use.
#[derive(Debug)]
pub struct SsmProvider {
    settings: AwsSettings,
    client: OnceCell<Client>,
}

/// The name AWS takes for a reference's name: an ARN as is; a hierarchical name with its leading `/`.
pub fn parameter_name(name: &str) -> String {
    if name.starts_with("arn:") || !name.contains('/') {
        name.to_owned()
    } else {
        format!("/{name}")
    }
}

/// `NAME:VERSION` or `NAME:LABEL`, as `GetParameter` takes a selector.
pub fn selected(name: &str, selector: Option<&SsmSelector>) -> String {
    match selector {
        Some(SsmSelector::Version(version)) => format!("{}:{version}", parameter_name(name)),
        Some(SsmSelector::Label(label)) => format!("{}:{label}", parameter_name(name)),
        None => parameter_name(name),
    }
}

impl SsmProvider {
    /// A provider with the given settings.
    pub fn new(settings: AwsSettings) -> SsmProvider {
        crate::tls::install();
        SsmProvider {
            settings,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> Result<&Client, ProviderError> {
        let client = self
            .client
            .get_or_try_init(|| async {
                let config =
                    aws_sdk_ssm::config::Builder::from(&load_sdk_config(&self.settings).await?)
                        .retry_classifier(NoThrottlingRetry)
                        .build();
                Ok::<_, ProviderError>(Client::from_conf(config))
            })
            .await?;
        if client.config().region().is_none() {
            return Err(no_region());
        }
        Ok(client)
    }
}

#[async_trait]
impl Provider for SsmProvider {
    fn kind(&self) -> BackendKind {
        BackendKind::Ssm
    }

    async fn fetch(&self, target: &Target) -> Result<Secret, ProviderError> {
        let Target::Ssm { name, selector } = target else {
            return Err(ProviderError::new(
                ErrorKind::Invalid,
                "not a Parameter Store reference",
            ));
        };
        let request = selected(name, selector.as_ref());
        let out = self
            .client()
            .await?
            .get_parameter()
            .name(&request)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| classify(&e, PARAMETER_STORE, "GetParameter", &request))?;
        let parameter = out.parameter.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Unavailable,
                format!(
                    "AWS answered GetParameter for {request} without the parameter; retry later"
                ),
            )
        })?;
        let mut attributes = std::collections::BTreeMap::new();
        for (key, value) in [
            ("Name", parameter.name.clone()),
            (
                "Type",
                parameter.r#type.as_ref().map(|t| t.as_str().to_owned()),
            ),
            ("DataType", parameter.data_type.clone()),
            ("ARN", parameter.arn.clone()),
            ("Selector", parameter.selector.clone()),
            ("SourceResult", parameter.source_result.clone()),
        ] {
            if let Some(value) = value {
                attributes.insert(key.to_owned(), value);
            }
        }
        let value = parameter.value.unwrap_or_default();
        Ok(Secret {
            value: SecretValue::from(value),
            encoding: Encoding::Text,
            meta: SecretMeta {
                name: parameter.arn.or(parameter.name).unwrap_or(request),
                version_id: parameter.version.to_string(),
                stages: Vec::new(),
                created: parameter
                    .last_modified_date
                    .and_then(|d| std::time::SystemTime::try_from(d).ok()),
                attributes,
            }
            .into(),
        })
    }

    async fn list(&self, filter: Option<&ListFilter>) -> Result<Vec<String>, ProviderError> {
        let prefix = match filter {
            None => None,
            Some(ListFilter::Prefix(prefix)) => Some(prefix.trim_start_matches('/')),
            Some(other) => return Err(other.not_for(BackendKind::Ssm)),
        };
        let mut request = self.client().await?.describe_parameters().max_results(50);
        if let Some(prefix) = prefix.filter(|p| !p.is_empty()) {
            // Names are matched as AWS stores them: a hierarchical one with its leading `/`.
            let begins = if prefix.contains('/') {
                format!("/{prefix}")
            } else {
                prefix.to_owned()
            };
            let by_name = |begins: String| {
                ParameterStringFilter::builder()
                    .key("Name")
                    .option("BeginsWith")
                    .values(begins)
                    .build()
            };
            request = request.parameter_filters(by_name(begins).map_err(|e| {
                ProviderError::new(
                    ErrorKind::Invalid,
                    format!("cannot list by prefix `{prefix}`: {e}"),
                )
            })?);
        }
        let mut pages = request.into_paginator().send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| classify(&e, PARAMETER_STORE, "DescribeParameters", "*"))?;
            names.extend(
                page.parameters
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| p.name)
                    .map(|n| n.trim_start_matches('/').to_owned()),
            );
        }
        if let Some(prefix) = prefix {
            names.retain(|n| n.starts_with(prefix));
        }
        names.sort();
        Ok(names)
    }
}
