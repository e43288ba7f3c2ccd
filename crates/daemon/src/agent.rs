//! The AWS Secrets Manager Agent's routes, answered as the agent answers them (aws/aws-secretsmanager-agent
//! 2.1.0, `server.rs` and `parse.rs`): every path but Keyway's own native ones (`/v1/secret`, `/v1/secrets`,
//! `/v1/list`, `/metrics`, `/healthz`, `/readyz`).
//!
//! In the agent's order: the connection limit (`max_conn`: 429 `Connection limit exceeded`), then on TCP and
//! for every path but `/ping` a forwarded request (`X-Forwarded-For`: 400 `Forwarded`) and the token (each
//! configured header tried; missing or wrong: 403 `Bad Token`), then the method (anything but GET: 405 `Not
//! allowed`, `/ping` too), then the route: `/ping` (`healthy`), `/secretsmanager/get?secretId=...`, the
//! path-style `<path_prefix><secret id>`, else 404 `Not found`. These bodies are plain text, without a
//! content type, as the agent's. A secret is the agent's JSON; a failure of the upstream keeps AWS's own status,
//! code and message ([`crate::respond::Failure::agent`]). docs/daemon.md lists what Keyway does differently on
//! purpose. The Lambda extension's Parameter Store route passes the same checks and is answered by
//! [`crate::lambda`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use keyway_api::{AwsSecretValue, header, path};
use keyway_core::{BackendKind, Lookup, Rendering, Resolved, SecretRef};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::State;
use crate::auth::Identity;
use crate::listen::Peer;
use crate::respond::{self, Failure, Reply};

/// One of the agent's own refusals: a status and its plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal(pub StatusCode, pub Cow<'static, str>);

impl Refusal {
    fn new(status: StatusCode, body: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal(status, body.into())
    }

    pub fn reply(self) -> Reply {
        let mut reply = Response::new(Full::new(match self.1 {
            Cow::Borrowed(text) => bytes::Bytes::from_static(text.as_bytes()),
            Cow::Owned(text) => bytes::Bytes::from(text),
        }));
        *reply.status_mut() = self.0;
        reply
    }
}

/// The agent's answer to a request for any path outside the native API; the route's name for metrics.
pub(crate) async fn handle(
    state: &State,
    peer: Peer,
    request: &Request<Incoming>,
) -> (&'static str, Reply) {
    match answer(state, peer, request).await {
        Ok(done) => done,
        Err((route, refusal)) => (route, refusal.reply()),
    }
}

async fn answer(
    state: &State,
    peer: Peer,
    request: &Request<Incoming>,
) -> Result<(&'static str, Reply), (&'static str, Refusal)> {
    let settings = &state.settings.aws_agent;
    let uri_path = request.uri().path();
    let ping = uri_path == path::PING;
    if let (Peer::Tcp { open, .. }, Some(max)) = (peer, settings.max_conn) {
        // The agent counts the connections open when this one was accepted, this one included; probes get two
        // more.
        let limit = if ping { max + 2 } else { max };
        if open > limit {
            return Err((
                "limit",
                Refusal::new(StatusCode::TOO_MANY_REQUESTS, "Connection limit exceeded"),
            ));
        }
    }
    let identity = match peer {
        Peer::Unix { uid, gid, pid } => Some(Identity::Unix { uid, gid, pid }),
        Peer::Tcp { .. } | Peer::Metrics(_) if ping => None,
        Peer::Tcp { addr, .. } | Peer::Metrics(addr) => Some(
            token_identity(state, request.headers(), addr).map_err(|r| ("unauthenticated", r))?,
        ),
    };
    if request.method() != Method::GET {
        return Err((
            "method",
            Refusal::new(StatusCode::METHOD_NOT_ALLOWED, "Not allowed"),
        ));
    }
    let (query, path_id) = match uri_path {
        path::PING => return Ok(("ping", Refusal::new(StatusCode::OK, "healthy").reply())),
        p if p.trim_end_matches('/') == path::PARAMETERS_GET => {
            let identity = identity.unwrap_or_else(Identity::nobody);
            let query = request.uri().query().unwrap_or("");
            return Ok((
                "ssm",
                crate::lambda::parameter(state, &identity, query).await,
            ));
        }
        path::AWS_GET => (request.uri().query(), None),
        p if p.starts_with(settings.path_prefix.as_str()) => (
            request.uri().query(),
            Some(&p[settings.path_prefix.len()..]),
        ),
        _ => {
            return Err(("unknown", Refusal::new(StatusCode::NOT_FOUND, "Not found")));
        }
    };
    let query = Query::parse(query.unwrap_or(""), path_id).map_err(|r| ("aws", r))?;
    let identity = identity.unwrap_or_else(Identity::nobody);
    let reply = match get(state, &identity, &query).await {
        Ok(resolved) => secret_reply(&query.secret_id, &resolved),
        Err(failure) => failure.agent(),
    };
    Ok(("aws", reply))
}

/// The caller's token from any of the configured headers (the first value of each; `Authorization: Bearer`,
/// Keyway's own clients' header, too), after refusing forwarded requests.
fn token_identity(
    state: &State,
    headers: &HeaderMap,
    addr: std::net::SocketAddr,
) -> Result<Identity, Refusal> {
    if headers.contains_key(header::FORWARDED_FOR) {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "Forwarded"));
    }
    let bearer = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    let found = state
        .settings
        .aws_agent
        .token_headers
        .iter()
        .filter_map(|name| {
            headers
                .get(name.as_str())
                .map(hyper::header::HeaderValue::as_bytes)
        })
        .chain(bearer)
        .find_map(|presented| state.tokens.check(presented));
    if let Some(token) = found {
        return Ok(Identity::Token { token });
    }
    tracing::warn!(peer = %addr, "request without a valid token refused");
    Err(Refusal::new(StatusCode::FORBIDDEN, "Bad Token"))
}

/// The agent's query, read as its `GSVQuery` reads it; borrowed from the request unless decoding changed it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Query<'a> {
    pub secret_id: Cow<'a, str>,
    pub version_id: Option<Cow<'a, str>>,
    pub version_stage: Option<Cow<'a, str>>,
    pub refresh_now: bool,
}

impl<'a> Query<'a> {
    /// `query` as form data (`+` is a space), each parameter once or the last one winning, in order, so the
    /// first mistake is the one named; `path_id` is the path-style id after the prefix (percent-decoded, where
    /// the agent passes the escapes on: docs/daemon.md).
    pub fn parse(query: &'a str, path_id: Option<&'a str>) -> Result<Query<'a>, Refusal> {
        let bad = |text: String| Refusal::new(StatusCode::BAD_REQUEST, text);
        let mut parsed = Query::default();
        if let Some(id) = path_id {
            if id.is_empty() {
                return Err(bad("missing secret ID".into()));
            }
            parsed.secret_id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
        }
        let mut role_arn = None;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "secretId" if path_id.is_none() => parsed.secret_id = value,
                "versionId" => parsed.version_id = Some(value),
                "versionStage" => parsed.version_stage = Some(value),
                "refreshNow" => {
                    parsed.refresh_now = if value.eq_ignore_ascii_case("true") || value == "1" {
                        true
                    } else if value.eq_ignore_ascii_case("false") || value == "0" {
                        false
                    } else {
                        return Err(bad("invalid refreshNow value".into()));
                    };
                }
                "roleArn" => role_arn = Some(value),
                other => return Err(bad(format!("unknown parameter: {other}"))),
            }
        }
        if parsed.secret_id.is_empty() {
            return Err(bad("missing parameter secretId".into()));
        }
        if let Some(arn) = role_arn {
            if !is_role_arn(&arn) {
                return Err(bad(
                    "invalid roleArn format, expected arn:<partition>:iam::<account>:role/<name>"
                        .into(),
                ));
            }
            return Err(bad(
                "roleArn is not supported by Keyway: the daemon reads as the identity its configuration gives each instance (docs/daemon.md)"
                    .into(),
            ));
        }
        Ok(parsed)
    }
}

/// The agent's check, `^arn:[\w-]+:iam::\d{12}:role/[\w+=,.@/-]+$`.
fn is_role_arn(arn: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let Some(rest) = arn.strip_prefix("arn:") else {
        return false;
    };
    let Some((partition, rest)) = rest.split_once(":iam::") else {
        return false;
    };
    let Some((account, name)) = rest.split_once(":role/") else {
        return false;
    };
    !partition.is_empty()
        && partition.chars().all(|c| word(c) || c == '-')
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && name.chars().all(|c| word(c) || "+=,.@/-".contains(c))
}

/// The reference the query names on the instance behind these routes, checked against the access rules, and
/// resolved.
async fn get(state: &State, identity: &Identity, query: &Query<'_>) -> Result<Resolved, Failure> {
    let lookup = Lookup {
        ttl: None,
        refresh_now: query.refresh_now,
    };
    // Only a bare secret id is remembered: a version in the query makes another reference.
    let bare = query.version_id.is_none() && query.version_stage.is_none();
    let known = bare
        .then(|| state.agent_references.get(&query.secret_id))
        .flatten();
    let reference = if let Some(known) = known {
        known
    } else {
        let reference = Arc::new(reference(state, query)?);
        if bare {
            state
                .agent_references
                .remember(&query.secret_id, Arc::clone(&reference));
        }
        reference
    };
    crate::routes::check_access(state, identity, "aws", &reference)?;
    crate::routes::resolve(state, identity, "aws", &reference, lookup).await
}

/// The reference a query names: `INSTANCE://ID[?version-id=...&version-stage=...]`.
fn reference(state: &State, query: &Query<'_>) -> Result<SecretRef, Failure> {
    let instance = &state.settings.aws_compat_instance;
    if query.secret_id.contains(['?', '#']) {
        return Err(Failure::BadRequest(
            "invalid secretId: a secret name or ARN holds no `?` or `#`".into(),
        ));
    }
    let mut text = format!("{instance}://{}", query.secret_id);
    let is_aws = state.resolver.kind(instance) == Some(BackendKind::Aws);
    let mut separator = '?';
    for (key, value) in [
        ("version-id", &query.version_id),
        ("version-stage", &query.version_stage),
    ] {
        let Some(value) = value else { continue };
        if !is_aws {
            return Err(Failure::BadRequest(format!(
                "versionId and versionStage apply to AWS instances; `{instance}` is not one"
            )));
        }
        text.push(separator);
        text.push_str(key);
        text.push('=');
        text.extend(utf8_percent_encode(value, NON_ALPHANUMERIC));
        separator = '&';
    }
    state.resolver.parse(&text).map_err(Failure::Resolve)
}

/// The references the agent's routes were asked for before, by secret id, so that a cached read parses none
/// (a parse allocates). Bounded: past [`References::MAX`] ids it forgets them all and starts over.
#[derive(Default)]
pub(crate) struct References(Mutex<HashMap<Box<str>, Arc<SecretRef>>>);

impl References {
    const MAX: usize = 16_384;

    fn get(&self, secret_id: &str) -> Option<Arc<SecretRef>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(secret_id)
            .cloned()
    }

    fn remember(&self, secret_id: &str, reference: Arc<SecretRef>) {
        let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= Self::MAX {
            known.clear();
        }
        known.insert(secret_id.into(), reference);
    }
}

/// The agent's body for a secret, with Keyway's freshness headers. The body is rendered once per version and
/// kept with the value ([`keyway_core::SecretValue::rendered`]); it echoes the requested id only where the
/// backend names the secret without an ARN, and is then kept for that id.
fn secret_reply(secret_id: &str, resolved: &Resolved) -> Reply {
    let name = resolved.secret.meta.name.as_str();
    let echoes_id = name.is_empty() || friendly_name(name).is_none();
    let body = resolved.secret.value.rendered(
        Rendering::AwsAgent,
        if echoes_id { secret_id } else { "" },
        || secret_body(secret_id, resolved),
    );
    let mut reply = respond::secret_untyped(StatusCode::OK, body);
    crate::routes::add_freshness(&mut reply, resolved);
    reply
}

/// The agent's JSON for a secret: `ARN`, `Name`, `VersionId`, `SecretString` or `SecretBinary`,
/// `VersionStages`, `CreatedDate`.
fn secret_body(secret_id: &str, resolved: &Resolved) -> Vec<u8> {
    let meta = &resolved.secret.meta;
    let (value, encoding) = crate::routes::encoded_value(resolved);
    let binary = encoding == keyway_api::ENCODING_BASE64;
    let arn = if meta.name.is_empty() {
        secret_id
    } else {
        meta.name.as_str()
    };
    let body = AwsSecretValue {
        name: Some(friendly_name(arn).unwrap_or(secret_id).to_owned()),
        arn: Some(arn.to_owned()),
        version_id: (!meta.version_id.is_empty()).then(|| meta.version_id.clone()),
        secret_string: (!binary).then_some(value.as_str()),
        secret_binary: binary.then_some(value.as_str()),
        version_stages: (!meta.stages.is_empty()).then(|| meta.stages.clone()),
        created_date: meta.created.and_then(created_date),
    };
    // Sized for the whole body at once (the value, escaped, and the metadata), not grown by doubling.
    let mut bytes = Vec::with_capacity(value.len() + value.len() / 4 + 2 * arn.len() + 256);
    if serde_json::to_writer(&mut bytes, &body).is_err() {
        bytes.clear();
    }
    bytes
}

/// The agent's `CreatedDate`: the seconds since the epoch as Rust prints an `f64` (serde_with's
/// `TimestampSecondsWithFrac<String>`): `1569534789.046`, a whole second without a fraction.
fn created_date(time: std::time::SystemTime) -> Option<String> {
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(since.as_secs_f64().to_string())
}

/// The secret's name from its ARN (`arn:aws:secretsmanager:R:A:secret:NAME-AbCdEf`): AWS appends a dash and
/// six random characters to every name.
fn friendly_name(arn: &str) -> Option<&str> {
    let (_, tail) = arn.split_once(":secret:")?;
    let (name, suffix) = tail.rsplit_once('-')?;
    (suffix.len() == 6).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<'a>(query: &'a str, path_id: Option<&'a str>) -> Result<Query<'a>, String> {
        Query::parse(query, path_id)
            .map_err(|Refusal(status, body)| format!("{} {body}", status.as_u16()))
    }

    /// The agent's own `parse.rs` tests and its `main.rs` request cases, with their expected answers.
    #[test]
    fn queries_read_as_the_agent_reads_them() {
        assert_eq!(
            parse(
                "secretId=MyTest&versionStage=AWSPENDING&versionId=000000000000&refreshNow=true",
                None
            ),
            Ok(Query {
                secret_id: "MyTest".into(),
                version_id: Some("000000000000".into()),
                version_stage: Some("AWSPENDING".into()),
                refresh_now: true,
            })
        );
        for (query, path_id, answer) in [
            (
                "secretId=MyTest&refreshNow=123",
                None,
                "400 invalid refreshNow value",
            ),
            (
                "secretId=MyTest&refreshNow",
                None,
                "400 invalid refreshNow value",
            ),
            (
                "secretId=MyTest&versionStage=AWSPENDING&abc=XXXXXXXXXXXX",
                None,
                "400 unknown parameter: abc",
            ),
            (
                "&versionId=1&versionStage=AWSPENDING",
                None,
                "400 missing parameter secretId",
            ),
            ("", None, "400 missing parameter secretId"),
            ("secretId=", None, "400 missing parameter secretId"),
            ("versionId=1&abc=123", Some(""), "400 missing secret ID"),
            ("secretId=Z", Some("q"), "400 unknown parameter: secretId"),
            ("SecretId=A", None, "400 unknown parameter: SecretId"),
            // In order: the first mistake is the one named.
            ("abc=1&refreshNow=bad", None, "400 unknown parameter: abc"),
            ("refreshNow=bad&abc=1", None, "400 invalid refreshNow value"),
            (
                "secretId=MyTest&roleArn=not-a-valid-arn",
                None,
                "400 invalid roleArn format, expected arn:<partition>:iam::<account>:role/<name>",
            ),
        ] {
            assert_eq!(parse(query, path_id), Err(answer.to_owned()), "{query}");
        }
        for (flag, value) in [("TRUE", true), ("1", true), ("False", false), ("0", false)] {
            assert_eq!(
                parse(&format!("secretId=a&refreshNow={flag}"), None)
                    .unwrap()
                    .refresh_now,
                value
            );
        }
        // Last one wins; form decoding (`+` is a space); empty pieces skipped.
        assert_eq!(parse("secretId=A&secretId=B", None).unwrap().secret_id, "B");
        assert_eq!(
            parse("&&secretId=My%2FTest+x&", None).unwrap().secret_id,
            "My/Test x"
        );
        assert_eq!(
            parse("versionStage=AWSPENDING", Some("My/Test"))
                .unwrap()
                .secret_id,
            "My/Test"
        );
    }

    #[test]
    fn role_arns_are_checked_with_the_agents_pattern() {
        for good in [
            "arn:aws:iam::123456789012:role/TestRole",
            "arn:aws-us-gov:iam::123456789012:role/service-role/MyRole",
        ] {
            assert!(is_role_arn(good), "{good}");
        }
        for bad in [
            "arn:aws:iam::12345:role/r",
            "arn:aws:iam::1234567890123:role/r",
            "arn:aws:iam:us-east-1:123456789012:role/r",
            "arn:aws:s3::123456789012:role/r",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/a\"b",
            "arn:aws:iam::123456789012:role/a\\b",
        ] {
            assert!(!is_role_arn(bad), "{bad}");
        }
    }

    #[test]
    fn created_dates_print_as_the_agent_prints_them() {
        let at =
            |secs: u64, nanos: u32| std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
        assert_eq!(
            created_date(at(1_569_534_789, 46_000_000)).unwrap(),
            "1569534789.046"
        );
        assert_eq!(created_date(at(1_700_000_000, 0)).unwrap(), "1700000000");
        assert_eq!(
            created_date(at(1_569_534_789, 500_000_000)).unwrap(),
            "1569534789.5"
        );
    }

    #[test]
    fn friendly_name_strips_the_random_suffix() {
        assert_eq!(
            friendly_name(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:ci/github-token-AbCdEf"
            ),
            Some("ci/github-token")
        );
        assert_eq!(friendly_name("ci/github"), None);
        assert_eq!(
            friendly_name("arn:aws:secretsmanager:us-east-1:1:secret:x-abc"),
            None
        );
    }
}
