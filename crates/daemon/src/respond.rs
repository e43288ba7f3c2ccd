//! Every error to an HTTP status and body, in one place: native JSON (`{"error": {"kind", "message"}}`) and
//! the AWS agent's shape (`{"__type", "message"}`). Bodies holding secret values are zeroized when dropped.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use keyway_api::{AwsError, ErrorBody, ErrorDetail};
use keyway_core::{ErrorKind, Upstream};
use zeroize::Zeroize as _;

pub(crate) type Reply = Response<Full<Bytes>>;

/// Why a request failed, before any status is chosen.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Malformed request (missing parameter, bad reference): 400.
    BadRequest(String),
    /// No valid token on TCP: 401.
    Unauthenticated(String),
    /// A Keyway access rule refused, or a token is wrong: 403.
    Denied(String),
    /// Unknown path: 404.
    NoRoute(String),
    /// Wrong method: 405, with the allowed ones.
    Method(&'static str),
    /// Body too large: 413.
    TooLarge(String),
    /// The body did not arrive in time: 408.
    SlowBody(String),
    /// The resolver failed: status by kind.
    Resolve(keyway_core::Error),
}

impl Failure {
    fn kind_name(&self) -> &'static str {
        match self {
            Failure::BadRequest(_)
            | Failure::TooLarge(_)
            | Failure::SlowBody(_)
            | Failure::Method(_) => "invalid",
            Failure::Unauthenticated(_) => "unauthenticated",
            Failure::Denied(_) => "access_denied",
            Failure::NoRoute(_) => "no_route",
            Failure::Resolve(e) => e.kind().as_str(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Failure::BadRequest(_) => StatusCode::BAD_REQUEST,
            Failure::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Failure::Denied(_) => StatusCode::FORBIDDEN,
            Failure::NoRoute(_) => StatusCode::NOT_FOUND,
            Failure::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            Failure::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::SlowBody(_) => StatusCode::REQUEST_TIMEOUT,
            Failure::Resolve(e) => status_for(e.kind()),
        }
    }

    pub fn message(&self) -> String {
        match self {
            Failure::BadRequest(m)
            | Failure::Unauthenticated(m)
            | Failure::Denied(m)
            | Failure::NoRoute(m)
            | Failure::TooLarge(m)
            | Failure::SlowBody(m) => m.clone(),
            Failure::Method(allowed) => format!("method not allowed; use {allowed}"),
            Failure::Resolve(e) => e.to_string().replace('\n', " "),
        }
    }

    /// The native error body, also used for each failed item of a batch.
    pub fn body(&self) -> ErrorBody {
        let upstream = match self {
            Failure::Resolve(e) => e.upstream(),
            _ => None,
        };
        let (upstream_code, failure) = Upstream::to_parts(upstream);
        ErrorBody {
            error: ErrorDetail {
                kind: self.kind_name().to_owned(),
                message: self.message(),
                upstream_code,
                failure,
            },
        }
    }

    pub fn native(&self) -> Reply {
        let mut reply = json(self.status(), &self.body());
        if let Failure::Method(allowed) = self {
            reply
                .headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static(allowed));
        }
        reply
    }

    /// The AWS agent's error shape. Upstream errors keep AWS's own status (400 for not found, access denied and
    /// throttling, as Secrets Manager answers them) and AWS's own code where it answered one (the route
    /// serves an AWS instance only: `DecryptionFailure`, `ExpiredTokenException`, ...), else the kind's
    /// usual code; an unreachable upstream is 503.
    pub fn aws(&self) -> Reply {
        let (status, kind) = match self {
            Failure::Resolve(e) => {
                let (status, usual) = match e.kind() {
                    ErrorKind::NotFound => (StatusCode::BAD_REQUEST, "ResourceNotFoundException"),
                    ErrorKind::PermissionDenied => {
                        (StatusCode::BAD_REQUEST, "AccessDeniedException")
                    }
                    ErrorKind::Throttled => (StatusCode::BAD_REQUEST, "ThrottlingException"),
                    ErrorKind::Invalid => (StatusCode::BAD_REQUEST, "InvalidRequestException"),
                    ErrorKind::Misconfigured => {
                        (StatusCode::INTERNAL_SERVER_ERROR, "InternalServiceError")
                    }
                    _ => (StatusCode::SERVICE_UNAVAILABLE, "InternalServiceError"),
                };
                match e.upstream() {
                    Some(Upstream::Code(code)) => (status, code.as_str()),
                    _ => (status, usual),
                }
            }
            Failure::Denied(_) => (StatusCode::FORBIDDEN, "AccessDeniedException"),
            Failure::Unauthenticated(_) => {
                (StatusCode::UNAUTHORIZED, "UnrecognizedClientException")
            }
            Failure::BadRequest(_) | Failure::TooLarge(_) | Failure::SlowBody(_) => {
                (self.status(), "InvalidParameterException")
            }
            Failure::NoRoute(_) | Failure::Method(_) => (self.status(), "InvalidRequestException"),
        };
        json(
            status,
            &AwsError {
                kind: kind.to_owned(),
                message: self.message(),
            },
        )
    }
}

/// Native status for a resolver error kind.
pub(crate) fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::Throttled => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// A JSON reply without secret content.
pub(crate) fn json(status: StatusCode, body: &impl serde::Serialize) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    with_type(status, Bytes::from(bytes), "application/json")
}

/// A reply whose body holds a secret: the buffer is zeroized when hyper drops it, and the response says
/// `Cache-Control: no-store`.
pub(crate) fn secret(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Reply {
    let mut reply = with_type(status, Bytes::from_owner(Wiped(body)), content_type);
    reply
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

pub(crate) fn text(status: StatusCode, body: &'static str) -> Reply {
    with_type(status, Bytes::from_static(body.as_bytes()), "text/plain")
}

pub(crate) fn with_type(status: StatusCode, body: Bytes, content_type: &'static str) -> Reply {
    let mut reply = Response::new(Full::new(body));
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    reply
}

/// A response buffer zeroized on drop.
struct Wiped(Vec<u8>);

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Wiped {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}
