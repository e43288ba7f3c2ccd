//! The AWS Secrets Manager Agent's configuration file and command line, read as the agent 2.1.0 reads them
//! (aws/aws-secretsmanager-agent `config.rs`, `main.rs`, `utils.rs`): `keyway serve --aws-agent-config FILE`,
//! and `keyway` installed under the agent's name (`aws_secretsmanager_agent [--config FILE]`), so a unit file or
//! a sidecar spec changes only its binary.
//!
//! The file: TOML, JSON or YAML by its extension; keys in any case; numbers as integers or strings; every key
//! optional with the agent's default; an unknown key refused with the agent's message; values checked in the
//! agent's order with its messages. What each key becomes in Keyway is [`AgentSettings::apply`];
//! docs/daemon.md lists what differs on purpose.

use std::path::{Path, PathBuf};

use keyway_config::Config;
use keyway_daemon::{AwsAgentSection, TokenConfig};
use keyway_providers::aws::AwsConfig;
use keyway_providers::config::{Backend, ProviderConfig};
use serde_json::Value;

const INVALID_LOG_LEVEL: &str = "The log level specified in the configuration file isn't valid. The log level must be DEBUG, INFO, WARN, ERROR, or NONE.";
const INVALID_HTTP_PORT: &str = "The HTTP port specified in the configuration file isn't valid. The HTTP port must be in the range 1024 to 65535.";
const INVALID_TTL_SECONDS: &str = "The TTL in seconds specified in the configuration file isn't valid. The TTL in seconds must be in the range 0 to 3600.";
const INVALID_CACHE_SIZE: &str = "The cache size specified in the configuration file isn't valid. The cache size must be in the range 1 to 1000.";
const BAD_MAX_CONN: &str = "The maximum number of connections specified in the configuration file isn't valid. The maximum number of connections must be in the range 1 to 1000.";
const EMPTY_SSRF_LIST: &str = "The list of SSRF headers in the configuration file can't be empty.";
const EMPTY_ENV_LIST: &str =
    "The list of SSRF environment variables in the configuration file can't be empty.";
const BAD_PREFIX: &str = "The path prefix specified in the configuration file must begin with /.";
const BAD_MAX_ROLES: &str = "The maximum number of roles specified in the configuration file isn't valid. The maximum number of roles must be in the range 1 to 20.";
const INVALID_CACHE_BUFFER_RATIO: &str = "The cache_buffer_ratio specified in the prefetch configuration isn't valid. The cache_buffer_ratio must be between 0.1 and 1.0.";
const INVALID_MAX_JITTER: &str = "The max_jitter_seconds specified in the prefetch configuration isn't valid. The max_jitter_seconds must be in the range 0 to 10.";

/// The agent's keys, in its order (its `unknown field` message lists them so).
const KEYS: [&str; 14] = [
    "log_level",
    "log_to_file",
    "http_port",
    "ttl_seconds",
    "cache_size",
    "ssrf_headers",
    "ssrf_env_variables",
    "path_prefix",
    "max_conn",
    "max_roles",
    "region",
    "ignore_transient_errors",
    "validate_credentials",
    "prefetch",
];
const PREFETCH_KEYS: [&str; 4] = [
    "cache_buffer_ratio",
    "max_jitter_seconds",
    "filter_tags",
    "secrets",
];

/// The agent's version this reads as, for the usage and the first line.
pub const AGENT_NAME: &str = "aws_secretsmanager_agent";

/// The agent's log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    None,
}

impl LogLevel {
    /// As a tracing filter directive.
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::None => "off",
        }
    }
}

/// One checked agent configuration, with the agent's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    pub log_level: LogLevel,
    pub log_to_file: bool,
    pub http_port: u16,
    pub ttl_seconds: u64,
    pub cache_size: usize,
    pub ssrf_headers: Vec<String>,
    pub ssrf_env_variables: Vec<String>,
    pub path_prefix: String,
    pub max_conn: usize,
    pub max_roles: usize,
    pub region: Option<String>,
    pub ignore_transient_errors: bool,
    pub validate_credentials: bool,
    pub prefetch: Vec<String>,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            log_level: LogLevel::Info,
            log_to_file: true,
            http_port: 2773,
            ttl_seconds: 300,
            cache_size: 1000,
            ssrf_headers: vec![
                "X-Aws-Parameters-Secrets-Token".to_owned(),
                "X-Vault-Token".to_owned(),
            ],
            ssrf_env_variables: vec![
                "AWS_TOKEN".to_owned(),
                "AWS_SESSION_TOKEN".to_owned(),
                "AWS_CONTAINER_AUTHORIZATION_TOKEN".to_owned(),
            ],
            path_prefix: "/v1/".to_owned(),
            max_conn: 800,
            max_roles: 20,
            region: None,
            ignore_transient_errors: true,
            validate_credentials: true,
            prefetch: Vec::new(),
        }
    }
}

/// The largest secret Secrets Manager stores (64 KiB), and what a cached entry costs besides.
const LARGEST_SECRET: u64 = 65_536 + 1_024;

/// Reads the agent's configuration file as the agent does. The error is the agent's one line.
pub fn load(path: &Path) -> Result<AgentSettings, String> {
    let path = locate(path)?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "configuration file {:?} cannot be read: {e}",
            path.display().to_string()
        )
    })?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let value: Value = match extension.as_deref() {
        Some("toml") => {
            let table: toml::Table =
                toml::from_str(&text).map_err(|e| e.to_string().trim_end().to_owned())?;
            serde_json::to_value(table).map_err(|e| e.to_string())?
        }
        Some("json") => serde_json::from_str(&text).map_err(|e| e.to_string())?,
        Some("yaml" | "yml") => {
            if text.trim().is_empty() {
                Value::Object(serde_json::Map::new())
            } else {
                serde_norway::from_str(&text).map_err(|e| e.to_string())?
            }
        }
        _ => {
            let absolute = std::path::absolute(&path).unwrap_or(path.clone());
            return Err(format!(
                "configuration file {:?} is not of a registered file format",
                absolute.display().to_string()
            ));
        }
    };
    let name = path.display().to_string();
    parse(&value, &name)
}

/// The file as named, else with the extensions the agent's loader tries; the agent's message when none exists.
fn locate(path: &Path) -> Result<PathBuf, String> {
    if path.is_file() {
        return Ok(path.to_owned());
    }
    for extension in ["toml", "json", "yaml", "yml"] {
        let mut name = path.as_os_str().to_owned();
        name.push(".");
        name.push(extension);
        let candidate = PathBuf::from(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "configuration file {:?} not found",
        path.display().to_string()
    ))
}

/// Checks a parsed file: unknown keys and wrong types first (as the agent's deserializer), then the values in the
/// agent's order, the first problem reported.
pub fn parse(value: &Value, file: &str) -> Result<AgentSettings, String> {
    let empty = serde_json::Map::new();
    let top = match value {
        Value::Object(map) => map,
        Value::Null => &empty,
        _ => return Err("the configuration file does not hold a table of settings".into()),
    };
    let top = lowercase_keys(top);
    if let Some(key) = top.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(unknown_field(key, &KEYS));
    }
    let mut settings = AgentSettings::default();
    let text = |key: &str| -> Result<Option<String>, String> {
        match top.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(format!(
                "invalid type: {}, expected a string for key `{key}` in {file}",
                type_name(other)
            )),
        }
    };
    let flag = |key: &str, default: bool| -> Result<bool, String> {
        match top.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(value) => coerce_bool(value).ok_or_else(|| {
                format!(
                    "invalid type: {}, expected a boolean for key `{key}` in {file}",
                    type_name(value)
                )
            }),
        }
    };
    let list = |key: &str, default: &[String]| -> Result<Vec<String>, String> {
        match top.get(key) {
            None | Some(Value::Null) => Ok(default.to_vec()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    other => Err(format!(
                        "invalid type: {}, expected a string for key `{key}` in {file}",
                        type_name(other)
                    )),
                })
                .collect(),
            Some(other) => Err(format!(
                "invalid type: {}, expected a sequence",
                type_name(other)
            )),
        }
    };
    // Types first, as the agent's deserializer meets them.
    let log_level = text("log_level")?;
    settings.log_to_file = flag("log_to_file", settings.log_to_file)?;
    let http_port = text("http_port")?;
    let ttl = text("ttl_seconds")?;
    let cache_size = text("cache_size")?;
    settings.ssrf_headers = list("ssrf_headers", &settings.ssrf_headers)?;
    settings.ssrf_env_variables = list("ssrf_env_variables", &settings.ssrf_env_variables)?;
    let path_prefix = text("path_prefix")?;
    let max_conn = text("max_conn")?;
    let max_roles = text("max_roles")?;
    settings.region = text("region")?;
    settings.ignore_transient_errors =
        flag("ignore_transient_errors", settings.ignore_transient_errors)?;
    settings.validate_credentials = flag("validate_credentials", settings.validate_credentials)?;
    if let Some(prefetch) = top.get("prefetch") {
        settings.prefetch = parse_prefetch(prefetch)?;
    }
    check(
        settings,
        &Unchecked {
            log_level,
            http_port,
            ttl,
            cache_size,
            path_prefix,
            max_conn,
            max_roles,
        },
    )
}

/// The values the agent checks for range after reading them, as read.
struct Unchecked {
    log_level: Option<String>,
    http_port: Option<String>,
    ttl: Option<String>,
    cache_size: Option<String>,
    path_prefix: Option<String>,
    max_conn: Option<String>,
    max_roles: Option<String>,
}

/// The values, in the agent's order, the first problem reported.
fn check(mut settings: AgentSettings, raw: &Unchecked) -> Result<AgentSettings, String> {
    if let Some(level) = &raw.log_level {
        settings.log_level = match level.to_lowercase().as_str() {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            "none" => LogLevel::None,
            _ => return Err(INVALID_LOG_LEVEL.into()),
        };
    }
    if let Some(port) = &raw.http_port {
        settings.http_port = number::<u16>(port, INVALID_HTTP_PORT)
            .filter(|p| !(1..1024).contains(p))
            .ok_or(INVALID_HTTP_PORT)?;
    }
    if let Some(ttl) = &raw.ttl {
        settings.ttl_seconds = number::<u64>(ttl, INVALID_TTL_SECONDS)
            .filter(|t| *t <= 3600)
            .ok_or(INVALID_TTL_SECONDS)?;
    }
    if let Some(size) = &raw.cache_size {
        settings.cache_size = number::<usize>(size, INVALID_CACHE_SIZE)
            .filter(|s| (1..=1000).contains(s))
            .ok_or(INVALID_CACHE_SIZE)?;
    }
    if let Some(max) = &raw.max_conn {
        settings.max_conn = number::<usize>(max, BAD_MAX_CONN)
            .filter(|m| (1..=1000).contains(m))
            .ok_or(BAD_MAX_CONN)?;
    }
    if let Some(max) = &raw.max_roles {
        settings.max_roles = number::<usize>(max, BAD_MAX_ROLES)
            .filter(|m| (1..=20).contains(m))
            .ok_or(BAD_MAX_ROLES)?;
    }
    if settings.ssrf_headers.is_empty() {
        return Err(EMPTY_SSRF_LIST.into());
    }
    if settings.ssrf_env_variables.is_empty() {
        return Err(EMPTY_ENV_LIST.into());
    }
    if let Some(prefix) = &raw.path_prefix {
        if !prefix.starts_with('/') {
            return Err(BAD_PREFIX.into());
        }
        settings.path_prefix.clone_from(prefix);
    }
    Ok(settings)
}

/// `[prefetch]`: its checks come first in the agent, and only `secrets` without a role is something Keyway does.
fn parse_prefetch(value: &Value) -> Result<Vec<String>, String> {
    let empty = serde_json::Map::new();
    let table = match value {
        Value::Object(map) => lowercase_keys(map),
        Value::Null => lowercase_keys(&empty),
        other => {
            return Err(format!(
                "invalid type: {}, expected struct PrefetchConfig",
                type_name(other)
            ));
        }
    };
    if let Some(key) = table.keys().find(|k| !PREFETCH_KEYS.contains(&k.as_str())) {
        return Err(unknown_field(key, &PREFETCH_KEYS));
    }
    if let Some(ratio) = table.get("cache_buffer_ratio") {
        let ok = float(ratio).is_some_and(|r| (0.1..=1.0).contains(&r));
        if !ok {
            return Err(INVALID_CACHE_BUFFER_RATIO.into());
        }
    }
    if let Some(jitter) = table.get("max_jitter_seconds") {
        let ok = scalar_text(jitter)
            .and_then(|t| number::<u64>(&t, ""))
            .is_some_and(|j| j <= 10);
        if !ok {
            return Err(INVALID_MAX_JITTER.into());
        }
    }
    if table
        .get("filter_tags")
        .is_some_and(|t| t.as_array().is_none_or(|a| !a.is_empty()))
    {
        return Err(
            "prefetch filter_tags is not supported by Keyway: list the secrets under [[prefetch.secrets]] (docs/daemon.md)"
                .into(),
        );
    }
    let mut secrets = Vec::new();
    for entry in table
        .get("secrets")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
    {
        let entry = entry.as_object().map(lowercase_keys).unwrap_or_default();
        if let Some(key) = entry
            .keys()
            .find(|k| !["secret_id", "role_arn"].contains(&k.as_str()))
        {
            return Err(unknown_field(key, &["secret_id", "role_arn"]));
        }
        if entry.contains_key("role_arn") {
            return Err(
                "prefetch role_arn is not supported by Keyway: the daemon reads as the identity its configuration gives (docs/daemon.md)"
                    .into(),
            );
        }
        match entry.get("secret_id") {
            Some(Value::String(id)) if !id.is_empty() => secrets.push(id.clone()),
            _ => return Err("missing field `secret_id`".into()),
        }
    }
    Ok(secrets)
}

fn unknown_field(key: &str, expected: &[&str]) -> String {
    let list: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
    format!("unknown field `{key}`, expected one of {}", list.join(", "))
}

fn lowercase_keys(
    map: &serde_json::Map<String, Value>,
) -> std::collections::BTreeMap<String, Value> {
    map.iter()
        .map(|(k, v)| (k.to_lowercase(), v.clone()))
        .collect()
}

fn type_name(value: &Value) -> String {
    match value {
        Value::Null => "unit value".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".into(),
        Value::Object(_) => "map".into(),
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn float(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A number written as an integer or a string; anything else (a fraction, a sign, a word) is `None`.
fn number<T: std::str::FromStr>(text: &str, _message: &str) -> Option<T> {
    text.parse().ok()
}

/// The config crate's reading of a boolean: `true`/`false`, and the strings `true`, `on`, `yes`, `1` (and their
/// opposites) in any case, an integer by whether it is zero.
fn coerce_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        Value::String(s) => match s.to_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Some(true),
            "false" | "off" | "no" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

impl AgentSettings {
    /// The settings in Keyway's terms: the `aws-sm` instance (its region, TTL, and stale-if-error only with
    /// `ignore_transient_errors`), the cache bound (`cache_size` of the largest secrets), TCP only on
    /// `127.0.0.1:http_port`, the token from the first of `ssrf_env_variables` that is set (a value, or
    /// `file://PATH`), the routes' headers, prefix and `max_conn`, and the secrets to prefetch. The error is one
    /// line, as the agent's.
    pub fn apply(&self, config: &mut Config) -> Result<(), String> {
        let provider = config
            .providers
            .providers
            .entry("aws-sm".to_owned())
            .or_insert_with(|| ProviderConfig::new(Backend::Aws(AwsConfig::default())));
        if let (Backend::Aws(aws), Some(region)) = (&mut provider.backend, &self.region) {
            aws.region = Some(region.clone());
        }
        #[allow(clippy::cast_precision_loss, reason = "at most 3600 seconds")]
        let ttl = keyway_core::Ttl::from_secs_f64(self.ttl_seconds as f64);
        provider.policy.ttl = Some(ttl);
        if !self.ignore_transient_errors {
            provider.policy.max_stale = Some(std::time::Duration::ZERO);
        }
        config.providers.cache.max_bytes = LARGEST_SECRET * self.cache_size as u64;
        config.server.unix = false;
        config.server.tcp = Some(format!("127.0.0.1:{}", self.http_port));
        "aws-sm".clone_into(&mut config.server.aws_compat_instance);
        config.server.aws_agent = AwsAgentSection {
            token_headers: self.ssrf_headers.clone(),
            path_prefix: self.path_prefix.clone(),
            max_conn: Some(self.max_conn),
        };
        config.server.tokens = vec![self.token()?];
        config
            .server
            .prefetch
            .extend(self.prefetch.iter().map(|id| format!("aws-sm://{id}")));
        Ok(())
    }

    /// The token source, as the agent's `get_token`: the first variable set (even to nothing), its value or the
    /// file a `file://` value names (read now, so a missing file stops the start as in the agent; Keyway then
    /// re-reads it when it changes).
    fn token(&self) -> Result<TokenConfig, String> {
        let unreadable = |why: String| {
            format!(
                "Could not read SSRF token variable(s) {:?}: {why}",
                self.ssrf_env_variables
            )
        };
        let Some((var, value)) = self
            .ssrf_env_variables
            .iter()
            .find_map(|var| std::env::var(var).ok().map(|v| (var.clone(), v)))
        else {
            return Err(unreadable("environment variable not found".into()));
        };
        if let Some(path) = value.strip_prefix("file://") {
            std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
            return Ok(TokenConfig {
                name: "aws".into(),
                file: Some(PathBuf::from(path)),
                env: None,
            });
        }
        if value.is_empty() {
            return Err(unreadable(format!(
                "{var} is empty; Keyway needs a token to compare with"
            )));
        }
        Ok(TokenConfig {
            name: "aws".into(),
            file: None,
            env: Some(var),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toml(text: &str) -> Result<AgentSettings, String> {
        let table: toml::Table = toml::from_str(text).unwrap();
        parse(&serde_json::to_value(table).unwrap(), "agent.toml")
    }

    /// The agent's `tests/resources/configs/config_file_valid.toml`, verbatim.
    #[test]
    fn the_agents_valid_example_reads_as_the_agent_reads_it() {
        let settings = toml(
            r#"# checking that all caps for log level is accpeted.
log_level = "DEBUG"
http_port = "65535"
ssrf_headers = ["X-Aws-Parameters-Secrets-Token"]
ssrf_env_variables = ["MY_TOKEN"]
path_prefix = "/other"
# checking that number with no quotes work.
ttl_seconds = 300
# checking that number with single quote works
cache_size = '1000'
max_conn = 10
region = "us-west-2"
ignore_transient_errors = false
validate_credentials = false
"#,
        )
        .unwrap();
        assert_eq!(
            settings,
            AgentSettings {
                log_level: LogLevel::Debug,
                http_port: 65535,
                ssrf_headers: vec!["X-Aws-Parameters-Secrets-Token".into()],
                ssrf_env_variables: vec!["MY_TOKEN".into()],
                path_prefix: "/other".into(),
                max_conn: 10,
                region: Some("us-west-2".into()),
                ignore_transient_errors: false,
                validate_credentials: false,
                ..AgentSettings::default()
            }
        );
        // config_file_empty.toml and config_file_anyport.toml.
        assert_eq!(toml("").unwrap(), AgentSettings::default());
        let any = toml("http_port = \"0\"\nmax_conn = 1\n").unwrap();
        assert_eq!((any.http_port, any.max_conn), (0, 1));
    }

    /// The agent's `config.rs` tests: every out-of-range value and its message.
    #[test]
    fn bad_values_get_the_agents_messages() {
        for (text, message) in [
            ("http_port = \"1023\"", INVALID_HTTP_PORT),
            ("http_port = \"-1\"", INVALID_HTTP_PORT),
            ("http_port = \"65536\"", INVALID_HTTP_PORT),
            ("http_port = \"not a number\"", INVALID_HTTP_PORT),
            ("http_port = 2773.5", INVALID_HTTP_PORT),
            ("max_conn = \"1001\"", BAD_MAX_CONN),
            ("max_conn = \"-1\"", BAD_MAX_CONN),
            ("max_conn = \"0\"", BAD_MAX_CONN),
            ("max_conn = \"not a number\"", BAD_MAX_CONN),
            ("max_roles = \"21\"", BAD_MAX_ROLES),
            ("max_roles = \"0\"", BAD_MAX_ROLES),
            ("ttl_seconds = \"-1\"", INVALID_TTL_SECONDS),
            ("ttl_seconds = \"3601\"", INVALID_TTL_SECONDS),
            ("ttl_seconds = \"not a number\"", INVALID_TTL_SECONDS),
            ("cache_size = \"-1\"", INVALID_CACHE_SIZE),
            ("cache_size = \"0\"", INVALID_CACHE_SIZE),
            ("cache_size = \"1001\"", INVALID_CACHE_SIZE),
            ("path_prefix = \"v1\"", BAD_PREFIX),
            ("log_level = \"information\"", INVALID_LOG_LEVEL),
            // config_file_with_invalid_config.toml
            (
                "log_level = \"an invalid log level\"\nhttp_port = \"9999\"",
                INVALID_LOG_LEVEL,
            ),
            ("ssrf_headers = []", EMPTY_SSRF_LIST),
            ("ssrf_env_variables = []", EMPTY_ENV_LIST),
            (
                "[prefetch]\ncache_buffer_ratio = 0.05",
                INVALID_CACHE_BUFFER_RATIO,
            ),
            ("[prefetch]\nmax_jitter_seconds = 11", INVALID_MAX_JITTER),
        ] {
            assert_eq!(toml(text), Err(message.to_owned()), "{text}");
        }
    }

    #[test]
    fn unknown_keys_and_types_are_refused_as_the_agent_refuses_them() {
        // config_file_with_unrecognized_override.toml
        assert_eq!(
            toml("max_connections = \"1001\""),
            Err("unknown field `max_connections`, expected one of `log_level`, `log_to_file`, `http_port`, `ttl_seconds`, `cache_size`, `ssrf_headers`, `ssrf_env_variables`, `path_prefix`, `max_conn`, `max_roles`, `region`, `ignore_transient_errors`, `validate_credentials`, `prefetch`".to_owned())
        );
        assert_eq!(
            toml("[prefetch]\nbogus = 1"),
            Err("unknown field `bogus`, expected one of `cache_buffer_ratio`, `max_jitter_seconds`, `filter_tags`, `secrets`".to_owned())
        );
        assert_eq!(
            toml("log_to_file = \"maybe\""),
            Err("invalid type: string \"maybe\", expected a boolean for key `log_to_file` in agent.toml".to_owned())
        );
        assert_eq!(
            toml("ssrf_headers = \"X-Foo\""),
            Err("invalid type: string \"X-Foo\", expected a sequence".to_owned())
        );
        // Keys in any case; booleans as the config crate coerces them; a number where a string belongs.
        let settings = toml("HTTP_PORT = 3000\nlog_to_file = \"no\"\nregion = 5").unwrap();
        assert_eq!(settings.http_port, 3000);
        assert!(!settings.log_to_file);
        assert_eq!(settings.region.as_deref(), Some("5"));
    }

    #[test]
    fn prefetch_secrets_are_kept_and_what_keyway_does_not_do_is_named() {
        let settings = toml(
            "[prefetch]\ncache_buffer_ratio = 0.6\n[[prefetch.secrets]]\nsecret_id = \"app/db\"\n",
        )
        .unwrap();
        assert_eq!(settings.prefetch, ["app/db"]);
        let err = toml("[prefetch]\nfilter_tags = [{key = \"team\"}]").unwrap_err();
        assert!(err.contains("filter_tags is not supported"), "{err}");
    }
}
