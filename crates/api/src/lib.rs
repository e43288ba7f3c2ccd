//! The daemon's HTTP API as data: paths, header names and JSON bodies, shared by `keyway-daemon` (which
//! serializes them) and `keyway-client` (which parses them). No IO here.
//!
//! Two surfaces:
//! - native (`/v1/secret`, `/v1/secrets`, `/v1/list`), speaking Keyway references;
//! - AWS Secrets Manager Agent compatible (`/secretsmanager/get`, `/v1/<secret id>`), answering the
//!   GetSecretValue JSON shape so applications written for that agent work unchanged.
//!
//! [`default_socket_path`] is here so the daemon and every client agree on it.
//!
//! The value field is generic: the daemon serializes a borrowed `&str`, the client parses into a zeroizing type.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The daemon's default unix socket: `/run/keyway/keyway.sock` as root, `$XDG_RUNTIME_DIR/keyway.sock`
/// otherwise, `/tmp/keyway-UID/keyway.sock` when `XDG_RUNTIME_DIR` is not set.
pub fn default_socket_path() -> PathBuf {
    let uid = rustix::process::geteuid();
    if uid.is_root() {
        return PathBuf::from("/run/keyway/keyway.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("keyway.sock"),
        _ => PathBuf::from(format!("/tmp/keyway-{}/keyway.sock", uid.as_raw())),
    }
}

/// Request paths.
pub mod path {
    /// `GET ?ref=REF[&ttl=..][&refresh=true]`: one secret.
    pub const SECRET: &str = "/v1/secret";
    /// `POST` a [`BatchRequest`](super::BatchRequest): many secrets, fetched concurrently.
    pub const SECRETS: &str = "/v1/secrets";
    /// `GET ?provider=NAME[&filter=..]`: secret names of one provider instance.
    pub const LIST: &str = "/v1/list";
    /// AWS agent, query form: `GET ?secretId=&versionId=&versionStage=&refreshNow=`.
    pub const AWS_GET: &str = "/secretsmanager/get";
    /// AWS agent, path form: `GET /v1/<secret id>?versionId=&versionStage=&refreshNow=`.
    pub const AWS_PATH_PREFIX: &str = "/v1/";
    /// The AWS Parameters and Secrets Lambda Extension's Parameter Store route:
    /// `GET ?name=&version=|label=&withDecryption=` (also with a trailing `/`).
    pub const PARAMETERS_GET: &str = "/systemsmanager/parameters/get";
    /// Liveness: 200 while the process serves.
    pub const HEALTHZ: &str = "/healthz";
    /// AWS agent's health check (same as healthz, no token needed).
    pub const PING: &str = "/ping";
    /// Readiness: 200 once start-up prefetch finished, 503 before and while draining.
    pub const READYZ: &str = "/readyz";
    /// Prometheus text format.
    pub const METRICS: &str = "/metrics";
}

/// Header names (lowercase, as HTTP/1 and `http` compare them).
pub mod header {
    /// The AWS agent's SSRF token header.
    pub const AWS_TOKEN: &str = "x-aws-parameters-secrets-token";
    /// Also accepted by the AWS agent.
    pub const VAULT_TOKEN: &str = "x-vault-token";
    /// `Authorization: Bearer TOKEN`, Keyway's own clients.
    pub const AUTHORIZATION: &str = "authorization";
    /// Requests carrying it are refused: a forwarded request is an SSRF sign.
    pub const FORWARDED_FOR: &str = "x-forwarded-for";
    /// Seconds since the value was fetched from the upstream (RFC 9111 `Age`).
    pub const AGE: &str = "age";
    /// `hit`, `miss` or `stale` on every secret response.
    pub const SOURCE: &str = "x-keyway-source";
}

/// A value's encoding in JSON: `text` (UTF-8 as is) or `base64` (binary secrets).
pub const ENCODING_TEXT: &str = "text";
/// See [`ENCODING_TEXT`].
pub const ENCODING_BASE64: &str = "base64";

/// One resolved secret (`GET /v1/secret`, and each success of `POST /v1/secrets`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretBody<V> {
    /// The canonical reference.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The value (field-selected), text or base64 per `encoding`.
    pub value: V,
    /// `text` or `base64`.
    pub encoding: String,
    /// The backend's full name (ARN, `projects/P/secrets/S`, local path).
    pub name: String,
    /// Version id.
    pub version: String,
    /// Staging labels or aliases.
    #[serde(default)]
    pub stages: Vec<String>,
    /// RFC 3339 creation time of the version, when known.
    #[serde(default)]
    pub created: Option<String>,
    /// RFC 3339 time of the upstream fetch.
    pub fetched_at: String,
    /// Seconds since the fetch.
    pub age_seconds: u64,
    /// True when served past its TTL because the upstream failed.
    pub stale: bool,
    /// `hit`, `miss` or `stale`.
    pub source: String,
}

/// An error (`{"error": {"kind", "message"}}`); `kind` is `not_found`, `permission_denied`, `throttled`,
/// `unavailable`, `invalid`, or `access_denied` (a Keyway access rule refused the caller).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The failure.
    pub error: ErrorDetail,
}

/// See [`ErrorBody`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable kind.
    pub kind: String,
    /// One line that says what to do; never a value.
    pub message: String,
    /// The backend's own error code behind it (AWS `ThrottlingException`, gRPC `PERMISSION_DENIED`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_code: Option<String>,
    /// What failed before the backend answered (`unreachable`, `connect_timeout`, `read_timeout`,
    /// `no_credentials`, `no_region`), if that is what happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// `POST /v1/secrets` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// References to resolve, at most [`MAX_BATCH`].
    pub refs: Vec<String>,
    /// TTL override for these reads (`"30s"`, `"0"` to ask the upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Ask the upstream now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh: bool,
}

/// Upper bound on references in one batch request.
pub const MAX_BATCH: usize = 1000;

/// `POST /v1/secrets` answer: one item per reference, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchResponse<V> {
    /// Results in request order.
    pub results: Vec<BatchItem<V>>,
}

/// One result of a batch: a secret or an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BatchItem<V> {
    /// Resolved.
    Secret(SecretBody<V>),
    /// Failed.
    Error(ErrorBody),
}

/// `GET /v1/list` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListBody {
    /// The provider instance.
    pub provider: String,
    /// Secret names.
    pub names: Vec<String>,
}

/// The AWS GetSecretValue shape the AWS Secrets Manager Agent answers with, its fields in its order:
/// `ARN`, `Name`, `VersionId` (null when unknown), `SecretString` or `SecretBinary`, `VersionStages` (when
/// there are any), `CreatedDate` (the seconds as a string, or null).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AwsSecretValue<V> {
    /// Full ARN.
    #[serde(rename = "ARN")]
    pub arn: Option<String>,
    /// Friendly name.
    pub name: Option<String>,
    /// Version UUID.
    pub version_id: Option<String>,
    /// Text value.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret_string: Option<V>,
    /// Binary value, base64.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret_binary: Option<V>,
    /// Staging labels.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub version_stages: Option<Vec<String>>,
    /// Seconds since the epoch as Rust prints an `f64` (`"1569534789.046"`, a whole second without `.0`), a
    /// string: the agent's format.
    pub created_date: Option<String>,
}

/// The AWS error shape: `{"__type": "ResourceNotFoundException", "message": "..."}`, or
/// `{"__type": "InternalFailure"}` alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AwsError {
    /// AWS exception name.
    #[serde(rename = "__type")]
    pub kind: String,
    /// Message.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_items_round_trip_untagged() {
        let text = r#"{"results":[{"ref":"local://a","value":"v","encoding":"text","name":"a","version":"1",
            "fetched_at":"2026-01-01T00:00:00Z","age_seconds":3,"stale":false,"source":"hit"},
            {"error":{"kind":"not_found","message":"local://b: no such secret"}}]}"#;
        let parsed: BatchResponse<String> = serde_json::from_str(text).unwrap();
        assert!(
            matches!(&parsed.results[0], BatchItem::Secret(s) if s.value == "v" && s.age_seconds == 3)
        );
        assert!(matches!(&parsed.results[1], BatchItem::Error(e) if e.error.kind == "not_found"));
    }

    #[test]
    fn aws_shape_is_the_agents_to_the_byte() {
        // The agent's own unit test (`basic_success`), field order and all; serde_json writes them in order.
        let body = AwsSecretValue {
            arn: Some("arn:aws:secretsmanager:us-west-2:123456789012:secret:MyTest-NhBWsc".into()),
            name: Some("MyTest".into()),
            version_id: Some("5767290c-d089-49ed-b97c-17086f8c9d79".into()),
            secret_string: Some("hunter2"),
            secret_binary: None,
            version_stages: Some(vec!["AWSCURRENT".into()]),
            created_date: Some("1569534789.046".into()),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"ARN":"arn:aws:secretsmanager:us-west-2:123456789012:secret:MyTest-NhBWsc","Name":"MyTest","VersionId":"5767290c-d089-49ed-b97c-17086f8c9d79","SecretString":"hunter2","VersionStages":["AWSCURRENT"],"CreatedDate":"1569534789.046"}"#
        );
        let bare = AwsSecretValue::<&str> {
            arn: None,
            name: Some("MINx".into()),
            version_id: None,
            secret_string: None,
            secret_binary: None,
            version_stages: None,
            created_date: None,
        };
        assert_eq!(
            serde_json::to_string(&bare).unwrap(),
            r#"{"ARN":null,"Name":"MINx","VersionId":null,"CreatedDate":null}"#
        );
        let err = serde_json::to_string(&AwsError {
            kind: "ResourceNotFoundException".into(),
            message: Some("m".into()),
        })
        .unwrap();
        assert_eq!(
            err,
            r#"{"__type":"ResourceNotFoundException","message":"m"}"#
        );
        let internal = serde_json::to_string(&AwsError {
            kind: "InternalFailure".into(),
            message: None,
        })
        .unwrap();
        assert_eq!(internal, r#"{"__type":"InternalFailure"}"#);
    }

    #[test]
    fn batch_request_rejects_unknown_fields() {
        assert!(serde_json::from_str::<BatchRequest>(r#"{"refs":[],"reff":1}"#).is_err());
    }
}
