//! Error kinds shared by every backend, and the errors the core itself raises.

use std::sync::Arc;

/// What kind of failure happened, independent of the backend. The CLI maps kinds to exit codes and the
/// daemon to HTTP statuses, so a caller can act on the kind without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The secret, version or field does not exist (or is disabled or destroyed).
    NotFound,
    /// The caller's identity may not read the secret, or has no valid credentials.
    PermissionDenied,
    /// The backend refused because of rate limits or quotas.
    Throttled,
    /// The backend could not be reached, timed out or failed internally.
    Unavailable,
    /// The request itself is malformed (bad reference, unknown instance, wrong version syntax).
    Invalid,
    /// The provider instance is set up so that it cannot serve any request (no AWS region, an encrypted local
    /// file and no age identity, a local store file that does not parse): fixed where keyway is configured, not
    /// in the request, so the daemon answers it as its own failure (500), not the caller's (400).
    Misconfigured,
}

impl ErrorKind {
    /// Transient kinds are worth retrying and allow serving a stale cached value.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Throttled | ErrorKind::Unavailable)
    }

    /// Parses [`ErrorKind::as_str`]'s names back.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        Some(match name {
            "not_found" => ErrorKind::NotFound,
            "permission_denied" | "access_denied" => ErrorKind::PermissionDenied,
            "throttled" => ErrorKind::Throttled,
            "unavailable" => ErrorKind::Unavailable,
            "invalid" => ErrorKind::Invalid,
            "misconfigured" => ErrorKind::Misconfigured,
            _ => return None,
        })
    }

    /// A short stable name (`not_found`, ...) for machine-readable output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Misconfigured => "misconfigured",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the backend answered, or what the transport hit before an answer came, beyond the [`ErrorKind`]:
/// for callers that mirror a backend's own client library (the Python drop-ins raise botocore's and
/// `google.api_core`'s exception classes from it). Never holds a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Upstream {
    /// The backend answered with this error code: AWS `ThrottlingException`, gRPC `PERMISSION_DENIED`.
    Code(String),
    /// No connection to the endpoint could be made (refused, reset, no route, DNS).
    Unreachable,
    /// Connecting to the endpoint timed out.
    ConnectTimeout,
    /// The request went out but no answer came in time.
    ReadTimeout,
    /// No credentials were found to sign the request with.
    NoCredentials,
    /// No region was configured to send the request to (AWS).
    NoRegion,
    /// An answer came that could not be read as the backend's protocol (a proxy's page, a cut body).
    BadResponse,
}

impl Upstream {
    const FAILURES: [(Upstream, &'static str); 6] = [
        (Upstream::Unreachable, "unreachable"),
        (Upstream::ConnectTimeout, "connect_timeout"),
        (Upstream::ReadTimeout, "read_timeout"),
        (Upstream::NoCredentials, "no_credentials"),
        (Upstream::NoRegion, "no_region"),
        (Upstream::BadResponse, "bad_response"),
    ];

    /// A short stable name of a transport failure (`unreachable`, `connect_timeout`, `read_timeout`,
    /// `no_credentials`, `no_region`, `bad_response`); `None` for a backend's code.
    pub fn failure_name(&self) -> Option<&'static str> {
        Self::FAILURES
            .iter()
            .find(|(failure, _)| failure == self)
            .map(|(_, name)| *name)
    }

    /// Parses [`Upstream::failure_name`]'s names back.
    pub fn from_failure_name(name: &str) -> Option<Upstream> {
        Self::FAILURES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(failure, _)| failure.clone())
    }

    /// The wire form: the backend's code, and the failure's name.
    pub fn to_parts(upstream: Option<&Upstream>) -> (Option<String>, Option<String>) {
        match upstream {
            Some(Upstream::Code(code)) => (Some(code.clone()), None),
            Some(other) => (None, other.failure_name().map(str::to_owned)),
            None => (None, None),
        }
    }

    /// Back from [`Upstream::to_parts`]; an unknown failure name (a newer daemon's) is dropped.
    pub fn from_parts(code: Option<String>, failure: Option<&str>) -> Option<Upstream> {
        code.map(Upstream::Code)
            .or_else(|| failure.and_then(Upstream::from_failure_name))
    }
}

/// A backend's own answer to a request it refused, as it gave it: the AWS-agent route passes it on unchanged, as
/// the agent does. Backends' error messages name resources and actions, never values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status (AWS answers most refusals with 400).
    pub status: u16,
    /// The backend's message (AWS's `message`); may be empty.
    pub message: String,
}

/// A failure reported by a backend, already classified. The message names the secret and says what to do
/// (which permission on which resource, which name was not found); it never contains a secret value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    kind: ErrorKind,
    message: String,
    upstream: Option<Upstream>,
    // Boxed: errors travel in every `Result` of the read path, and most have no answer.
    answer: Option<Box<Answer>>,
    #[source]
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl ProviderError {
    /// A classified error with an actionable message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            upstream: None,
            answer: None,
            source: None,
        }
    }

    /// Records the backend's own answer: its HTTP status and message.
    #[must_use]
    pub fn with_answer(mut self, answer: impl Into<Option<Answer>>) -> Self {
        self.answer = answer.into().map(Box::new);
        self
    }

    /// The backend's own answer, where it answered with an error.
    pub fn answer(&self) -> Option<&Answer> {
        self.answer.as_deref()
    }

    /// Records the backend's error code or the transport failure behind the kind (`None` leaves it unset).
    #[must_use]
    pub fn with_upstream(mut self, upstream: impl Into<Option<Upstream>>) -> Self {
        self.upstream = upstream.into();
        self
    }

    /// The backend's error code or the transport failure, where the backend classified one.
    pub fn upstream(&self) -> Option<&Upstream> {
        self.upstream.as_ref()
    }

    /// Attaches the underlying SDK or IO error, shown by `{:#}` formatting.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The failure's kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// Everything resolving a reference can fail with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The reference text does not parse.
    #[error("invalid secret reference `{input}`: {reason}")]
    InvalidRef {
        /// The text as given (a reference holds names, never values).
        input: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// The text is not of the form `INSTANCE://PATH`. It is not kept: a value pasted where a reference belongs
    /// (`password = "ghp_..."`, `--env TOKEN=...`) would otherwise be printed.
    #[error(
        "not a secret reference ({chars} characters, not shown: it may be a value): expected INSTANCE://PATH, for example aws-sm://NAME or local://NAME"
    )]
    NotARef {
        /// How long the text was, to help find it.
        chars: usize,
    },
    /// The reference names a provider instance that is not configured.
    #[error(
        "no provider instance named `{instance}`{hint}; configured instances: {known}. Add a [providers.{instance}] table to keyway.toml"
    )]
    UnknownInstance {
        /// The instance named by the reference's scheme.
        instance: String,
        /// Comma-separated configured instance names.
        known: String,
        /// ` (did you mean `NAME`?)` when the name is a likely typo of a configured one, else empty.
        hint: String,
    },
    /// The backend failed.
    #[error("{reference}: {source}")]
    Provider {
        /// The canonical reference.
        reference: String,
        /// The classified backend error.
        #[source]
        source: ProviderError,
    },
    /// The upstream failed and the cached value is too old to serve.
    #[error(
        "{reference}: the upstream failed and the cached value is {age_secs}s old, past max_stale ({max_stale_secs}s): {source}"
    )]
    StaleExpired {
        /// The canonical reference.
        reference: String,
        /// Age of the cached value in seconds.
        age_secs: u64,
        /// The configured bound.
        max_stale_secs: u64,
        /// The upstream failure.
        #[source]
        source: ProviderError,
    },
    /// A failure reported by a Keyway daemon, already classified and worded there.
    #[error("{message}")]
    Remote {
        /// The daemon's classification.
        kind: ErrorKind,
        /// The daemon's one-line message.
        message: String,
        /// The backend's code or transport failure, as the daemon reported it.
        upstream: Option<Upstream>,
    },
    /// `#FIELD` was given but the secret's value is not a JSON object or array.
    #[error(
        "{reference}: the value is not a JSON object, so field `{field}` cannot be selected; drop the `#{field}` part to get the whole value"
    )]
    NotJson {
        /// The canonical reference.
        reference: String,
        /// The requested field.
        field: String,
    },
    /// A secret of several entries (a Kubernetes Secret) was asked for whole: the reference must name one.
    #[error("{reference} holds several keys ({available}); name one: {reference}#KEY")]
    EntryRequired {
        /// The canonical reference.
        reference: String,
        /// The entries' names.
        available: String,
    },
    /// `#FIELD` names a key that is not in the JSON value.
    #[error("{reference}: field `{field}` not found; fields present: {available}")]
    FieldNotFound {
        /// The canonical reference.
        reference: String,
        /// The requested field.
        field: String,
        /// The keys that do exist at that level (names only, never values).
        available: String,
    },
}

impl Error {
    /// The failure's kind, for exit codes and HTTP statuses.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidRef { .. }
            | Error::NotARef { .. }
            | Error::UnknownInstance { .. }
            | Error::EntryRequired { .. } => ErrorKind::Invalid,
            Error::Provider { source, .. } | Error::StaleExpired { source, .. } => source.kind(),
            Error::NotJson { .. } | Error::FieldNotFound { .. } => ErrorKind::NotFound,
            Error::Remote { kind, .. } => *kind,
        }
    }

    /// The backend's own answer behind a provider error (not carried across a daemon).
    pub fn answer(&self) -> Option<&Answer> {
        match self {
            Error::Provider { source, .. } | Error::StaleExpired { source, .. } => source.answer(),
            _ => None,
        }
    }

    /// The backend's error code or transport failure behind a provider error, here or in a daemon (`None`
    /// for the core's own errors).
    pub fn upstream(&self) -> Option<&Upstream> {
        match self {
            Error::Provider { source, .. } | Error::StaleExpired { source, .. } => {
                source.upstream()
            }
            Error::Remote { upstream, .. } => upstream.as_ref(),
            _ => None,
        }
    }
}

/// What is wrong with a JSON document and where, never what it held there: serde's own messages quote the value
/// they met (`invalid type: integer `1234`, expected a string`), and a document sent to Keyway may hold a secret
/// where a name belongs. Only the messages that name keys (`missing field`, `unknown field`) are kept. Shown as
/// `WHAT (line L, column C)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonProblem {
    /// What is wrong, without the document's text.
    pub what: String,
    /// Where, from 1.
    pub line: usize,
    /// Where on the line, from 1.
    pub column: usize,
}

impl From<&serde_json::Error> for JsonProblem {
    fn from(e: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let what = match e.classify() {
            Category::Syntax => "not JSON".to_owned(),
            Category::Eof => "it ends early".to_owned(),
            Category::Io => "it cannot be read".to_owned(),
            Category::Data => {
                let text = e.to_string();
                match text.split_once(" at line ") {
                    Some((keys, _))
                        if keys.starts_with("missing field `")
                            || keys.starts_with("unknown field `") =>
                    {
                        keys.to_owned()
                    }
                    _ => "a value of the wrong type or form".to_owned(),
                }
            }
        };
        JsonProblem {
            what,
            line: e.line(),
            column: e.column(),
        }
    }
}

impl std::fmt::Display for JsonProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (line {}, column {})",
            self.what, self.line, self.column
        )
    }
}
