//! The one trait every backend implements.

use std::fmt;

use async_trait::async_trait;

use crate::ProviderError;
use crate::reference::{BackendKind, Target};
use crate::value::Secret;

/// A secret backend: AWS Secrets Manager, GCP Secret Manager, the local store.
///
/// Implementations classify every failure into an [`crate::ErrorKind`] with a message that says what to do,
/// bound every outbound call with a timeout, and never put a value into an error or a log line.
#[async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// The backend family, which decides how references are parsed for this instance.
    fn kind(&self) -> BackendKind;

    /// Fetches one version of one secret.
    async fn fetch(&self, target: &Target) -> Result<Secret, ProviderError>;

    /// Lists secret names, following every page; `filter` narrows by name where the backend supports it.
    async fn list(&self, filter: Option<&str>) -> Result<Vec<String>, ProviderError>;
}
