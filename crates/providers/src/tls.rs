//! The one TLS crypto library of every backend: rustls on ring.
//!
//! Each cloud SDK would otherwise bring its own (aws-lc through Google's and Azure's defaults and the AWS SDK's
//! default HTTPS client, a second rustls on hyper 0.14 through the AWS SDK's legacy feature): built with their
//! TLS features off, they take rustls' process-wide provider, which [`install`] sets, and the AWS SDK takes
//! the client [`aws_http_client`] builds.

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// Makes ring rustls' process-wide provider, once; a provider already installed (by the embedding
/// application) is kept. Every backend's constructor calls it.
pub fn install() {
    // Err only when a provider is already installed, which is what this ensures.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The AWS SDK's configuration with its HTTPS client: hyper 1 on rustls with ring, the platform's roots.
pub(crate) fn with_aws_http_client(loader: aws_config::ConfigLoader) -> aws_config::ConfigLoader {
    loader.http_client(
        aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https(),
    )
}
