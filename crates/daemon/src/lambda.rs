//! The AWS Parameters and Secrets Lambda Extension's Parameter Store route, `GET
//! /systemsmanager/parameters/get?name=...[&version=N|&label=L][&withDecryption=true]`, answered as the extension
//! answers it, so code written for the extension reads Parameter Store through Keyway unchanged. The route
//! passes the AWS agent's checks first (token header, method; [`crate::agent`]).
//!
//! The extension is closed source; its answers as AWS's documentation and captures of the real extension show
//! them (docs/daemon.md, "The Lambda extension does / Keyway does"): the `GetParameter` JSON with every field,
//! absent ones `null`, `LastModifiedDate` as ISO 8601 with milliseconds; `version` or `label`, whichever comes
//! first in the query; every failure a 400 with the text `an unexpected error occurred while executing
//! request`. Keyway adds its own one-line reason to a failure in an `X-Keyway-Error` header.

use hyper::StatusCode;
use keyway_core::{Lookup, Resolved};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;

use crate::State;
use crate::auth::Identity;
use crate::respond::{self, Reply};

/// The extension's body for every failure.
pub(crate) const UNEXPECTED: &str = "an unexpected error occurred while executing request";

/// The header that carries Keyway's reason for a failure (the body is the extension's).
pub(crate) const ERROR_HEADER: &str = "x-keyway-error";

/// The route's answer.
pub(crate) async fn parameter(state: &State, identity: &Identity, query: &str) -> Reply {
    match answer(state, identity, query).await {
        Ok(reply) => reply,
        Err(reason) => failure(&reason),
    }
}

/// What the query asks for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Request {
    name: String,
    /// `:N` or `:LABEL`, as `GetParameter` and the answer's `Selector` write it.
    selector: Option<String>,
    decrypt: bool,
}

fn parse(query: &str) -> Result<Request, String> {
    let mut request = Request::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "name" => request.name = value.into_owned(),
            // The extension uses whichever of the two comes first.
            "version" | "label" if request.selector.is_none() => {
                request.selector = Some(format!(":{value}"));
            }
            "version" | "label" => {}
            "withDecryption" => request.decrypt = value.eq_ignore_ascii_case("true"),
            other => {
                return Err(format!(
                    "unknown parameter `{other}`; the route takes name, version, label and withDecryption"
                ));
            }
        }
    }
    if request.name.is_empty() {
        return Err("missing parameter `name`".into());
    }
    Ok(request)
}

async fn answer(state: &State, identity: &Identity, query: &str) -> Result<Reply, String> {
    let request = parse(query)?;
    let instance = &state.settings.parameter_store_instance;
    if request.name.contains(['?', '#']) {
        return Err("a parameter name holds no `?` or `#`".into());
    }
    let mut text = format!("{instance}://{}", request.name.trim_start_matches('/'));
    if let Some(selector) = &request.selector {
        let value = &selector[1..];
        let key = if value.bytes().all(|b| b.is_ascii_digit()) {
            "version"
        } else {
            "label"
        };
        text.push('?');
        text.push_str(key);
        text.push('=');
        text.extend(utf8_percent_encode(value, NON_ALPHANUMERIC));
    }
    let reference =
        crate::routes::admit(state, identity, "ssm", &text).map_err(|failure| failure.message())?;
    let resolved = crate::routes::resolve(state, identity, "ssm", &reference, Lookup::default())
        .await
        .map_err(|failure| failure.message())?;
    let attributes = &resolved.secret.meta.attributes;
    if !request.decrypt && attributes.get("Type").map(String::as_str) == Some("SecureString") {
        return Err(
            "the parameter is a SecureString: add withDecryption=true (Keyway hands out no ciphertext)".into(),
        );
    }
    let mut reply =
        respond::secret_untyped(StatusCode::OK, respond::wiped(body(&request, &resolved)));
    crate::routes::add_freshness(&mut reply, &resolved);
    Ok(reply)
}

/// `GetParameter`'s answer as the extension serializes it: fields in alphabetical order, absent ones `null`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Answer<'a> {
    parameter: Parameter<'a>,
    result_metadata: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Parameter<'a> {
    #[serde(rename = "ARN")]
    arn: Option<&'a str>,
    data_type: Option<&'a str>,
    last_modified_date: Option<String>,
    name: Option<&'a str>,
    selector: Option<&'a str>,
    source_result: Option<&'a str>,
    #[serde(rename = "Type")]
    kind: Option<&'a str>,
    value: &'a str,
    version: Option<u64>,
}

fn body(request: &Request, resolved: &Resolved) -> Vec<u8> {
    let meta = &resolved.secret.meta;
    let attribute = |key: &str| meta.attributes.get(key).map(String::as_str);
    let value = String::from_utf8_lossy(resolved.secret.value.expose());
    let answer = Answer {
        parameter: Parameter {
            arn: attribute("ARN"),
            data_type: attribute("DataType"),
            last_modified_date: meta
                .created
                .map(|t| humantime::format_rfc3339_millis(t).to_string()),
            name: attribute("Name"),
            selector: attribute("Selector").or(request.selector.as_deref()),
            source_result: attribute("SourceResult"),
            kind: attribute("Type"),
            value: &value,
            version: meta.version_id.parse().ok(),
        },
        result_metadata: serde_json::Map::new(),
    };
    // The body holds the value: built into a buffer the reply owns, as every secret body is.
    serde_json::to_vec(&answer).unwrap_or_default()
}

fn failure(reason: &str) -> Reply {
    let mut reply = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(
        UNEXPECTED.as_bytes(),
    )));
    *reply.status_mut() = StatusCode::BAD_REQUEST;
    if let Ok(value) = hyper::header::HeaderValue::from_str(&reason.replace(['\r', '\n'], " ")) {
        reply.headers_mut().insert(ERROR_HEADER, value);
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_read_as_the_extension_reads_them() {
        let read = |q: &str| parse(q);
        assert_eq!(
            read("name=%2Fapp%2Fdb&withDecryption=true").unwrap(),
            Request {
                name: "/app/db".into(),
                selector: None,
                decrypt: true
            }
        );
        assert_eq!(
            read("name=x&version=3&label=prod")
                .unwrap()
                .selector
                .as_deref(),
            Some(":3")
        );
        assert_eq!(
            read("name=x&label=prod&version=3")
                .unwrap()
                .selector
                .as_deref(),
            Some(":prod")
        );
        assert!(!read("name=x&withDecryption=false").unwrap().decrypt);
        assert!(
            read("version=3")
                .unwrap_err()
                .contains("missing parameter `name`")
        );
        assert!(
            read("name=x&secretId=y")
                .unwrap_err()
                .contains("unknown parameter `secretId`")
        );
    }
}
