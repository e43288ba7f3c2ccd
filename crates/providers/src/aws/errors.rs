//! AWS's errors read into Keyway's kinds, with a message that names the missing action and resource, and the
//! retry rule that leaves throttling to the instance's rate limit.

use aws_sdk_secretsmanager::config::interceptors::InterceptorContext;
use aws_sdk_secretsmanager::config::retry::{ClassifyRetry, RetryAction};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_sdk_secretsmanager::operation::list_secrets::ListSecretsError;
use keyway_core::{Answer, ErrorKind, ProviderError, Upstream};

/// AWS error codes that mean "slow down".
const THROTTLING_CODES: [&str; 3] = [
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
];

/// Forbids the SDK to retry a throttled call: the instance's rate limit (`RateLimited`) paces upstream calls
/// and cached secrets are served stale, so a retry inside the call would only add load to a throttling
/// upstream (each attempt would pass the limiter's count). Transient failures (5xx, timeouts, resets) are
/// still retried.
#[derive(Debug)]
pub(super) struct NoThrottlingRetry;

impl ClassifyRetry for NoThrottlingRetry {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let status_429 = ctx.response().is_some_and(|r| r.status().as_u16() == 429);
        let code = ctx
            .output_or_error()
            .and_then(Result::err)
            .and_then(|e| e.as_operation_error())
            .and_then(|e| {
                e.downcast_ref::<GetSecretValueError>()
                    .and_then(ProvideErrorMetadata::code)
                    .or_else(|| {
                        e.downcast_ref::<ListSecretsError>()
                            .and_then(ProvideErrorMetadata::code)
                    })
            });
        if status_429 || code.is_some_and(|c| THROTTLING_CODES.contains(&c)) {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "keyway: no retry of throttled calls"
    }
}

/// The AWS service a call went to, for the words of its errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Service {
    /// The IAM action prefix (`secretsmanager`).
    iam: &'static str,
    /// Its name in messages.
    name: &'static str,
    /// What it keeps (`secret`).
    noun: &'static str,
    /// The codes that mean "no such thing (or version)".
    not_found: &'static [&'static str],
}

/// AWS Secrets Manager.
pub(crate) const SECRETS_MANAGER: Service = Service {
    iam: "secretsmanager",
    name: "Secrets Manager",
    noun: "secret",
    not_found: &["ResourceNotFoundException"],
};

/// AWS Systems Manager Parameter Store.
pub(crate) const PARAMETER_STORE: Service = Service {
    iam: "ssm",
    name: "Parameter Store",
    noun: "parameter",
    not_found: &["ParameterNotFound", "ParameterVersionNotFound"],
};

/// Turns an SDK error into a kind and a message that names the missing action and resource.
pub(crate) fn classify<E>(
    err: &SdkError<E, aws_sdk_secretsmanager::config::http::HttpResponse>,
    service: Service,
    action: &str,
    resource: &str,
) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().unwrap_or_default();
    let detail = err.message().unwrap_or_default();
    let Service {
        iam, name, noun, ..
    } = service;
    let mut transport = None;
    let (kind, message) = match (err, code) {
        (_, c) if service.not_found.contains(&c) => (
            ErrorKind::NotFound,
            format!(
                "AWS {noun} `{resource}` (or the requested version) was not found; check the name, region and version"
            ),
        ),
        (_, "AccessDeniedException") => (
            ErrorKind::PermissionDenied,
            format!(
                "access denied: the caller's IAM identity needs {iam}:{action} on {resource}; grant it in the role's policy"
            ),
        ),
        (_, "DecryptionFailure" | "InvalidKeyId") => (
            ErrorKind::PermissionDenied,
            format!(
                "AWS could not decrypt `{resource}`: the caller needs kms:Decrypt on the {noun}'s KMS key, and the key must be enabled"
            ),
        ),
        (
            _,
            "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException"
            | "InvalidClientTokenId",
        ) => (
            ErrorKind::PermissionDenied,
            format!(
                "AWS rejected the credentials ({code}); refresh them (aws sso login, a new session token) or check the profile"
            ),
        ),
        (_, c) if THROTTLING_CODES.contains(&c) => (
            ErrorKind::Throttled,
            format!(
                "AWS throttled {action}; Keyway paces calls with the instance's rate_limit instead of retrying; lower the request rate or raise the quota"
            ),
        ),
        (_, "InvalidParameterException" | "InvalidRequestException") => (
            ErrorKind::Invalid,
            format!("AWS rejected {action} for `{resource}` as invalid: {detail}"),
        ),
        (
            _,
            "InternalServiceError"
            | "InternalServerError"
            | "InternalFailure"
            | "ServiceUnavailable",
        ) => (
            ErrorKind::Unavailable,
            format!("AWS {name} failed internally on {action}; retry later"),
        ),
        (SdkError::TimeoutError(_) | SdkError::DispatchFailure(_), _) => {
            let (kind, message, failure) = transport_failure(err, name, action);
            transport = Some(failure);
            (kind, message)
        }
        (SdkError::ConstructionFailure(_), _) => (
            ErrorKind::Misconfigured,
            format!(
                "could not build the AWS {action} request; check region and credentials settings"
            ),
        ),
        (SdkError::ResponseError(_), _) => (
            ErrorKind::Unavailable,
            format!("AWS answered {action} with a response Keyway could not read; retry later"),
        ),
        _ => (
            ErrorKind::Unavailable,
            format!("AWS {action} failed ({code}): {detail}"),
        ),
    };
    let upstream = transport
        .or_else(|| matches!(err, SdkError::ResponseError(_)).then_some(Upstream::BadResponse))
        .or_else(|| (!code.is_empty()).then(|| Upstream::Code(code.to_owned())));
    ProviderError::new(kind, message)
        .with_upstream(upstream)
        .with_answer(answer(err))
}

/// A call that got no answer: timed out, found no credentials, or could not connect.
fn transport_failure<E>(
    err: &SdkError<E, aws_sdk_secretsmanager::config::http::HttpResponse>,
    name: &str,
    action: &str,
) -> (ErrorKind, String, Upstream)
where
    E: std::error::Error + Send + Sync + 'static,
{
    let timed_out = || format!("AWS {action} timed out; check the network path to {name}");
    match err {
        SdkError::TimeoutError(_) => (ErrorKind::Unavailable, timed_out(), Upstream::ReadTimeout),
        SdkError::DispatchFailure(failure) => {
            if format!("{:#}", aws_smithy_error_chain(err)).contains("credentials") {
                (
                    ErrorKind::PermissionDenied,
                    "no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID, or run where an instance role exists".to_owned(),
                    Upstream::NoCredentials,
                )
            } else if failure.is_timeout() {
                (
                    ErrorKind::Unavailable,
                    timed_out(),
                    Upstream::ConnectTimeout,
                )
            } else {
                (
                    ErrorKind::Unavailable,
                    format!(
                        "could not reach AWS {name} for {action}; check the endpoint and network"
                    ),
                    Upstream::Unreachable,
                )
            }
        }
        _ => (
            ErrorKind::Unavailable,
            format!("AWS {action} failed"),
            Upstream::BadResponse,
        ),
    }
}

/// AWS's own status and message, for the AWS-agent route (which answers with them, as the agent does).
fn answer<E: ProvideErrorMetadata>(
    err: &SdkError<E, aws_sdk_secretsmanager::config::http::HttpResponse>,
) -> Option<Answer> {
    match err {
        SdkError::ServiceError(service) => Some(Answer {
            status: service.raw().status().as_u16(),
            message: err.message().unwrap_or_default().to_owned(),
        }),
        _ => None,
    }
}

/// The error and its sources as one line (for keyword checks; SDK errors carry no secret values).
pub(crate) fn aws_smithy_error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
