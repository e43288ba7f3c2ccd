//! Every error to an HTTP status and body, in one place: native JSON (`{"error": {"kind", "message"}}`) and
//! the AWS agent's shape (`{"__type", "message"}`, [`Failure::agent`]; its own refusals, plain text, are
//! `agent::Refusal`). Bodies holding secret values are zeroized when dropped.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use keyway_api::{AwsError, ErrorBody, ErrorDetail};
use keyway_core::{ErrorKind, Upstream};
use zeroize::Zeroizing;

pub(crate) type Reply = Response<Full<Bytes>>;

/// Why a request failed, before any status is chosen.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Malformed request (missing parameter, bad reference): 400.
    BadRequest(String),
    /// No valid token on TCP (native API): 401.
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

    /// The AWS agent's answer to a failure (its `cache_manager.rs`): an error AWS answered keeps AWS's own
    /// status, code and message (`{"__type", "message"}`; without a message `{"__type":"InternalFailure"}`,
    /// 500); a timeout is 504 `TimeoutError`, an unreachable endpoint 502 `ConnectionError` (`Read Error`), an
    /// unreadable answer 502 `ConnectionError` (`Response Error`), missing credentials or region 500
    /// `InternalFailure`. What the agent has no answer for (a Keyway access rule, a backend other than AWS
    /// behind these routes) gets AWS's shape with the nearest code and Keyway's message.
    pub fn agent(&self) -> Reply {
        let internal = || (StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure", None);
        let (status, kind, message): (StatusCode, &str, Option<String>) = match self {
            Failure::Resolve(e) => match (e.upstream(), e.answer()) {
                (Some(Upstream::Code(code)), Some(answer)) if !answer.message.is_empty() => (
                    StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_REQUEST),
                    code.as_str(),
                    Some(answer.message.clone()),
                ),
                (Some(Upstream::Code(_) | Upstream::NoCredentials | Upstream::NoRegion), _) => {
                    tracing::warn!(error = %self.message(), "answered as the agent does: InternalFailure");
                    internal()
                }
                (Some(Upstream::ReadTimeout | Upstream::ConnectTimeout), _) => (
                    StatusCode::GATEWAY_TIMEOUT,
                    "TimeoutError",
                    Some("Timeout".to_owned()),
                ),
                (Some(Upstream::Unreachable), _) => (
                    StatusCode::BAD_GATEWAY,
                    "ConnectionError",
                    Some("Read Error".to_owned()),
                ),
                (Some(Upstream::BadResponse), _) => (
                    StatusCode::BAD_GATEWAY,
                    "ConnectionError",
                    Some("Response Error".to_owned()),
                ),
                _ => {
                    let (status, code) = match e.kind() {
                        ErrorKind::NotFound => {
                            (StatusCode::BAD_REQUEST, "ResourceNotFoundException")
                        }
                        ErrorKind::PermissionDenied => {
                            (StatusCode::BAD_REQUEST, "AccessDeniedException")
                        }
                        ErrorKind::Throttled => (StatusCode::BAD_REQUEST, "ThrottlingException"),
                        ErrorKind::Invalid => {
                            (StatusCode::BAD_REQUEST, "InvalidParameterException")
                        }
                        ErrorKind::Unavailable => {
                            (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
                        }
                        _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure"),
                    };
                    (status, code, Some(self.message()))
                }
            },
            Failure::Denied(_) => (
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                Some(self.message()),
            ),
            _ => (
                self.status(),
                "InvalidParameterException",
                Some(self.message()),
            ),
        };
        let body = serde_json::to_vec(&AwsError {
            kind: kind.to_owned(),
            message,
        })
        .unwrap_or_default();
        let mut reply = Response::new(Full::new(Bytes::from(body)));
        *reply.status_mut() = status;
        reply
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
    let mut reply = with_type(status, wiped(body), content_type);
    reply
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

/// A secret body without a content type (the AWS agent labels none), made by
/// [`keyway_core::SecretValue::rendered`] or [`wiped`]: zeroized when its last copy is dropped.
pub(crate) fn secret_untyped(status: StatusCode, body: Bytes) -> Reply {
    let mut reply = Response::new(Full::new(body));
    *reply.status_mut() = status;
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

/// An `Age` header: from static text below [`AGES`] seconds (no allocation on a cached read), else made.
pub(crate) fn age(secs: u64) -> HeaderValue {
    let n = match usize::try_from(secs) {
        Ok(n) if n < AGES => n,
        _ => return HeaderValue::from(secs),
    };
    // 0-9 take one digit each, 10-99 two, 100-999 three, 1000-9999 four, laid end to end.
    let (start, len) = match n {
        0..10 => (n, 1),
        10..100 => (10 + (n - 10) * 2, 2),
        100..1000 => (190 + (n - 100) * 3, 3),
        _ => (2890 + (n - 1000) * 4, 4),
    };
    match std::str::from_utf8(&AGE_DIGITS[start..start + len]) {
        Ok(text) => HeaderValue::from_static(text),
        Err(_) => HeaderValue::from(secs),
    }
}

/// Ages under this many seconds (2h46m) are written from [`AGE_DIGITS`].
const AGES: usize = 10_000;

/// The decimal text of 0 to 9999, end to end (38,890 bytes), built at compile time.
static AGE_DIGITS: [u8; 38_890] = {
    let mut digits = [0_u8; 38_890];
    let (mut n, mut at) = (0, 0);
    while n < AGES {
        let len = if n < 10 {
            1
        } else if n < 100 {
            2
        } else if n < 1000 {
            3
        } else {
            4
        };
        let (mut i, mut rest) = (len, n);
        while i > 0 {
            i -= 1;
            digits[at + i] = b"0123456789"[rest % 10];
            rest /= 10;
        }
        at += len;
        n += 1;
    }
    digits
};

/// A secret body zeroized when hyper drops it (as `SecretValue::rendered`'s bodies are).
pub(crate) fn wiped(body: Vec<u8>) -> Bytes {
    Bytes::from_owner(Zeroizing::new(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_their_decimal_text() {
        for secs in (0..12_000).chain([u64::from(u32::MAX), u64::MAX]) {
            assert_eq!(age(secs).to_str().unwrap(), secs.to_string(), "{secs}");
        }
    }
}
