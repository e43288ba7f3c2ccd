//! `keyway._keyway`: the native half of the `keyway` Python package. Resolution goes through the node's
//! Keyway daemon when its socket accepts connections (or when told to), otherwise in-process with the Rust
//! providers and cache; either way the GIL is released while waiting. Values cross into Python only as
//! [`SecretValue`], which never prints itself and compares in constant time.

mod backend;
mod bridge;
mod process;

use process::{Backend, State, runtime, state};

use std::time::UNIX_EPOCH;

use keyway_core::template::Template;
use keyway_core::{Error, ErrorKind, Lookup, Resolved, SecretValue as Value, Source, Upstream};
use pyo3::IntoPyObjectExt as _;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

create_exception!(
    keyway,
    KeywayError,
    PyException,
    "A Keyway failure; the message says what to do."
);
create_exception!(
    keyway,
    NotFound,
    KeywayError,
    "The secret, version or field does not exist."
);
create_exception!(
    keyway,
    PermissionDenied,
    KeywayError,
    "The identity may not read the secret."
);
create_exception!(
    keyway,
    Throttled,
    KeywayError,
    "The backend refused because of rate limits."
);
create_exception!(
    keyway,
    Unavailable,
    KeywayError,
    "The backend or the daemon could not be reached."
);
create_exception!(
    keyway,
    InvalidReference,
    KeywayError,
    "The reference or request is malformed."
);
create_exception!(
    keyway,
    ConfigurationError,
    KeywayError,
    "Keyway's configuration cannot serve the request (a config file that does not load, no AWS region, no age identity for an encrypted file)."
);

/// The Python exception of `e`'s kind, with `upstream_code` (the backend's error code) and `failure` (a
/// transport failure: `unreachable`, `connect_timeout`, `read_timeout`, `no_credentials`, `no_region`) set on
/// the instance, `None` where the backend classified neither. Instance attributes, not class defaults: they
/// pickle with the error, and Ray's `RayTaskError` wrapper finds them on the cause only when its class has no
/// such attribute.
pub(crate) fn to_py(e: &Error) -> PyErr {
    let message = e.to_string().replace('\n', " ");
    let err = match e.kind() {
        ErrorKind::NotFound => NotFound::new_err(message),
        ErrorKind::PermissionDenied => PermissionDenied::new_err(message),
        ErrorKind::Throttled => Throttled::new_err(message),
        ErrorKind::Unavailable => Unavailable::new_err(message),
        ErrorKind::Invalid => InvalidReference::new_err(message),
        ErrorKind::Misconfigured => ConfigurationError::new_err(message),
        _ => KeywayError::new_err(message),
    };
    let (code, failure) = Upstream::to_parts(e.upstream());
    let (status, said) = e
        .answer()
        .map_or((None, None), |a| (Some(a.status), Some(a.message.clone())));
    Python::attach(|py| {
        let value = err.value(py);
        // Setting an attribute on a fresh exception instance fails only when memory runs out; the error of
        // the right kind is raised either way.
        let _ = value.setattr("upstream_code", code);
        let _ = value.setattr("failure", failure);
        // The backend's own HTTP status and message, for the drop-ins that raise what its client raises.
        let _ = value.setattr("upstream_status", status);
        let _ = value.setattr("upstream_message", said);
    });
    err
}

/// A secret's bytes: never shown by `str`, `repr`, logging or tracebacks; compared in constant time; not
/// picklable (pass references between processes, not values).
#[pyclass(frozen, module = "keyway", name = "SecretValue")]
struct SecretValue(Value);

#[pymethods]
impl SecretValue {
    /// The value as text (UTF-8).
    fn value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        // Straight into the Python string: no Rust copy left behind unzeroized.
        let text = std::str::from_utf8(self.0.expose()).map_err(|_| {
            PyValueError::new_err("the secret is binary, not UTF-8 text; use raw_value()")
        })?;
        Ok(PyString::new(py, text))
    }

    /// The value as bytes.
    fn raw_value<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.0.expose())
    }

    fn __len__(&self) -> usize {
        self.0.len()
    }

    fn __repr__(&self) -> String {
        format!("SecretValue([redacted {} bytes])", self.0.len())
    }

    fn __str__(&self) -> String {
        self.__repr__()
    }

    /// Constant-time comparison with another SecretValue, `str` or `bytes`.
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        if let Ok(other) = other.cast::<SecretValue>() {
            return self.0.ct_eq(other.get().0.expose());
        }
        if let Ok(text) = other.extract::<String>() {
            return self.0.ct_eq(text.as_bytes());
        }
        if let Ok(bytes) = other.extract::<Vec<u8>>() {
            return self.0.ct_eq(&bytes);
        }
        false
    }

    #[allow(clippy::unused_self, reason = "Python's protocol passes self")]
    fn __hash__(&self) -> PyResult<isize> {
        Err(PyTypeError::new_err("SecretValue is not hashable"))
    }

    #[allow(clippy::unused_self, reason = "Python's protocol passes self")]
    fn __reduce__(&self) -> PyResult<()> {
        Err(PyTypeError::new_err(
            "SecretValue cannot be pickled: pass the reference and resolve it where it is needed",
        ))
    }
}

/// One resolved secret: its value and where it came from.
#[pyclass(frozen, module = "keyway", name = "Secret", get_all)]
struct Secret {
    /// The canonical reference.
    reference: String,
    /// The value.
    value: Py<SecretValue>,
    /// Version id.
    version: String,
    /// The backend's full name (ARN, `projects/P/secrets/S`, local path).
    name: String,
    /// Staging labels or aliases.
    stages: Vec<String>,
    /// Creation time of the version (seconds since the epoch), when known.
    created: Option<f64>,
    /// When it was fetched from the upstream (seconds since the epoch).
    fetched_at: f64,
    /// Seconds since the fetch.
    age_seconds: f64,
    /// True when served past its TTL because the upstream failed.
    stale: bool,
}

#[pymethods]
impl Secret {
    fn __repr__(&self) -> String {
        format!(
            "Secret(reference={:?}, version={:?}, value=[redacted], stale={})",
            self.reference, self.version, self.stale
        )
    }
}

fn seconds(t: std::time::SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn to_secret(py: Python<'_>, reference: String, r: Resolved) -> PyResult<Secret> {
    // The cache shares the metadata; the Python object takes its own copy (or the last reference).
    let meta = std::sync::Arc::unwrap_or_clone(r.secret.meta);
    Ok(Secret {
        reference,
        value: Py::new(py, SecretValue(r.secret.value))?,
        version: meta.version_id,
        name: meta.name,
        stages: meta.stages,
        created: meta.created.map(seconds),
        fetched_at: seconds(r.fetched_at),
        age_seconds: r.age.as_secs_f64(),
        stale: r.source == Source::Stale,
    })
}

/// The lookup a Python call asks for: `ttl` in seconds (0 bypasses the cache, negative never expires).
pub(crate) fn lookup(ttl: Option<f64>, refresh: bool) -> Lookup {
    Lookup {
        ttl: ttl.map(keyway_core::Ttl::from_secs_f64),
        refresh_now: refresh,
    }
}

fn resolve_all(py: Python<'_>, references: &[String], lookup: Lookup) -> PyResult<Vec<Secret>> {
    to_secrets(py, resolve_raw(py, references, lookup)?)
}

/// Each (canonical reference, answer) as a Python `Secret`.
fn to_secrets(py: Python<'_>, resolved: Vec<(String, Resolved)>) -> PyResult<Vec<Secret>> {
    resolved
        .into_iter()
        .map(|(reference, r)| to_secret(py, reference, r))
        .collect()
}

/// Each reference's canonical text and answer, in order; the first failure fails all.
fn resolve_raw(
    py: Python<'_>,
    references: &[String],
    lookup: Lookup,
) -> PyResult<Vec<(String, Resolved)>> {
    let state = state()?;
    py.detach(|| {
        state
            .runtime
            .block_on(resolve_in(&state, references, lookup))
    })
    .map_err(|e| to_py(&e))
}

/// [`resolve_raw`] as a future on the extension's runtime, for the awaitable functions.
async fn resolve_in(
    state: &State,
    references: &[String],
    lookup: Lookup,
) -> Result<Vec<(String, Resolved)>, Error> {
    match &state.backend {
        Backend::Daemon(client) => {
            let results = client.resolve_all(references, lookup).await?;
            references
                .iter()
                .cloned()
                .zip(results)
                .map(|(r, v)| v.map(|v| (r, v)))
                .collect()
        }
        Backend::Direct(resolver) => {
            let mut parsed = Vec::with_capacity(references.len());
            for text in references {
                parsed.push(resolver.parse(text)?);
            }
            let results = resolver.resolve_all(&parsed, lookup).await;
            parsed
                .iter()
                .map(ToString::to_string)
                .zip(results)
                .map(|(r, v)| v.map(|v| (r, v)))
                .collect()
        }
    }
}

/// Polls `future` once on the calling thread (the GIL released; [`process::poll_once`]): an answer from memory
/// (a cache hit) comes back at once as `(True, value)`, without the two thread hops of an asyncio bridge, which
/// cost a cached read most of its rate (docs/benchmarks.md, "Python: `await keyway.aget_secret`"); any other
/// goes on on the runtime, `(False, awaitable)`, and the event loop runs meanwhile.
fn now_or_later<'py, F, T>(py: Python<'py>, state: &State, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let mut future = Box::pin(future);
    let first = py.detach(|| process::poll_once(state.runtime, future.as_mut()));
    match first {
        std::task::Poll::Ready(result) => (true, result?).into_bound_py_any(py),
        std::task::Poll::Pending => {
            (false, bridge::future_into_py(py, future)?).into_bound_py_any(py)
        }
    }
}

/// Secrets of `references` as Python objects.
async fn resolve_secrets(
    state: std::sync::Arc<State>,
    references: Vec<String>,
    lookup: Lookup,
) -> PyResult<Vec<Secret>> {
    let resolved = resolve_in(&state, &references, lookup)
        .await
        .map_err(|e| to_py(&e))?;
    Python::attach(|py| to_secrets(py, resolved))
}

/// [`get_secret`] for `keyway.aget_secret`, a coroutine around it (so that `asyncio.run` and `create_task` take
/// it): `(True, Secret)` when answered from memory, else `(False, awaitable)`; see [`now_or_later`].
#[pyfunction]
#[pyo3(signature = (reference, ttl=None, refresh=false))]
fn aget_secret(
    py: Python<'_>,
    reference: String,
    ttl: Option<f64>,
    refresh: bool,
) -> PyResult<Bound<'_, PyAny>> {
    let state = state()?;
    let future = resolve_secrets(state.clone(), vec![reference], lookup(ttl, refresh));
    now_or_later(py, &state, async move {
        future
            .await?
            .pop()
            .ok_or_else(|| KeywayError::new_err("no result"))
    })
}

/// [`get_secrets`] for `keyway.aget_secrets`, as [`aget_secret`].
#[pyfunction]
#[pyo3(signature = (references, ttl=None, refresh=false))]
fn aget_secrets<'py>(
    py: Python<'py>,
    references: &Bound<'py, PyAny>,
    ttl: Option<f64>,
    refresh: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let references = reference_list(references)?;
    let state = state()?;
    let future = resolve_secrets(state.clone(), references, lookup(ttl, refresh));
    now_or_later(py, &state, future)
}

/// [`list_secrets`] for `keyway.alist_secrets`, as [`aget_secret`].
#[pyfunction]
#[pyo3(signature = (provider, filter=None))]
fn alist_secrets(
    py: Python<'_>,
    provider: String,
    filter: Option<String>,
) -> PyResult<Bound<'_, PyAny>> {
    let state = state()?;
    let listing = state.clone();
    now_or_later(py, &state, async move {
        list_in(&listing, &provider, filter.as_deref())
            .await
            .map_err(|e| to_py(&e))
    })
}

/// Resolves one reference (`aws-sm://NAME#field`, `gcp-sm://PROJECT/SECRET`, `local://NAME`). `ttl` in
/// seconds overrides the cache's (0 asks the upstream, negative never expires); `refresh` asks the upstream now.
#[pyfunction]
#[pyo3(signature = (reference, ttl=None, refresh=false))]
fn get_secret(
    py: Python<'_>,
    reference: &str,
    ttl: Option<f64>,
    refresh: bool,
) -> PyResult<Secret> {
    let mut all = resolve_all(py, &[reference.to_owned()], lookup(ttl, refresh))?;
    all.pop().ok_or_else(|| KeywayError::new_err("no result"))
}

/// Resolves many references concurrently; raises the first failure (all or nothing).
#[pyfunction]
#[pyo3(signature = (references, ttl=None, refresh=false))]
fn get_secrets(
    py: Python<'_>,
    references: &Bound<'_, PyAny>,
    ttl: Option<f64>,
    refresh: bool,
) -> PyResult<Vec<Secret>> {
    resolve_all(py, &reference_list(references)?, lookup(ttl, refresh))
}

/// The references given to `get_secrets`/`aget_secrets`: any iterable of `str`, but not one `str`, whose
/// characters would otherwise each be taken for a reference.
fn reference_list(references: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if references.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "get_secrets takes a list of references, not one string; for one reference use get_secret",
        ));
    }
    references
        .try_iter()?
        .map(|item| {
            item?.extract::<String>().map_err(|_| {
                PyTypeError::new_err("get_secrets takes a list of references, each a str")
            })
        })
        .collect()
}

/// The references of a template's `{{ REF }}` placeholders, each once, in order (other `{{ ... }}` are text);
/// raises `InvalidReference` naming the line of a placeholder that is not closed.
#[pyfunction]
fn template_references(template: &str) -> PyResult<Vec<String>> {
    Ok(reference_texts(&read_template(template)?))
}

fn read_template(template: &str) -> PyResult<Template> {
    Template::new(template).map_err(|e| InvalidReference::new_err(format!("template, {e}")))
}

fn reference_texts(template: &Template) -> Vec<String> {
    template
        .references()
        .iter()
        .map(|p| p.reference.clone())
        .collect()
}

/// Fills a template's `{{ REF }}` placeholders with the values (fetched concurrently, all or nothing; other
/// `{{ ... }}` stay text), for files read whole: `.env`, `.netrc`, a config file. Returns a `SecretValue`.
#[pyfunction]
#[pyo3(signature = (template, ttl=None, refresh=false))]
fn render_template(
    py: Python<'_>,
    template: &str,
    ttl: Option<f64>,
    refresh: bool,
) -> PyResult<SecretValue> {
    let template = read_template(template)?;
    let references = reference_texts(&template);
    let values = if references.is_empty() {
        Vec::new()
    } else {
        resolve_raw(py, &references, lookup(ttl, refresh))?
    };
    let mut filled = template.fill(|i| values[i].1.secret.value.expose());
    // Moved out, not copied: the Zeroizing wrapper is left holding an empty buffer.
    Ok(SecretValue(Value::new(std::mem::take(&mut *filled))))
}

/// Secret names of a provider instance (every page), optionally filtered.
#[pyfunction]
#[pyo3(signature = (provider, filter=None))]
fn list_secrets(py: Python<'_>, provider: &str, filter: Option<&str>) -> PyResult<Vec<String>> {
    let state = state()?;
    py.detach(|| state.runtime.block_on(list_in(&state, provider, filter)))
        .map_err(|e| to_py(&e))
}

async fn list_in(
    state: &State,
    provider: &str,
    filter: Option<&str>,
) -> Result<Vec<String>, Error> {
    match &state.backend {
        Backend::Daemon(client) => client.list(provider, filter).await,
        Backend::Direct(resolver) => resolver.list(provider, filter).await,
    }
}

/// The GCP project Google's client libraries would name (`keyway._gcp`): the Rust providers' own lookup
/// (`keyway_providers::gcp::project`), so the two can never disagree. `None` when no source names one.
#[pyfunction]
fn _default_gcp_project(py: Python<'_>) -> PyResult<Option<String>> {
    let rt = process::runtime()?;
    Ok(py.detach(|| rt.block_on(keyway_providers::gcp::project::default_project())))
}

#[pymodule]
fn _keyway(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<SecretValue>()?;
    m.add_class::<Secret>()?;
    m.add_class::<backend::Backend>()?;
    m.add_function(wrap_pyfunction!(process::configure, m)?)?;
    m.add_function(wrap_pyfunction!(process::after_fork, m)?)?;
    m.add_function(wrap_pyfunction!(get_secret, m)?)?;
    m.add_function(wrap_pyfunction!(get_secrets, m)?)?;
    m.add_function(wrap_pyfunction!(list_secrets, m)?)?;
    m.add_function(wrap_pyfunction!(aget_secret, m)?)?;
    m.add_function(wrap_pyfunction!(aget_secrets, m)?)?;
    m.add_function(wrap_pyfunction!(alist_secrets, m)?)?;
    m.add_function(wrap_pyfunction!(render_template, m)?)?;
    m.add_function(wrap_pyfunction!(template_references, m)?)?;
    m.add_function(wrap_pyfunction!(_default_gcp_project, m)?)?;
    m.add("KeywayError", py.get_type::<KeywayError>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("PermissionDenied", py.get_type::<PermissionDenied>())?;
    m.add("Throttled", py.get_type::<Throttled>())?;
    m.add("Unavailable", py.get_type::<Unavailable>())?;
    m.add("InvalidReference", py.get_type::<InvalidReference>())?;
    m.add("ConfigurationError", py.get_type::<ConfigurationError>())?;
    Ok(())
}
