//! What the extension keeps per process: its tokio runtime and where secrets come from (the daemon, or a
//! `Resolver` with its cache), built on first use from `keyway.configure(...)` or the environment.
//!
//! A process forked after first use (`multiprocessing` with `fork`, PyTorch's DataLoader workers) inherits
//! both, but not the runtime's threads: every call would wait for them for ever. The package registers
//! [`after_fork`] with `os.register_at_fork`, so the child builds its own runtime and state on its first call,
//! from the same `configure` settings. The parent's are forgotten in the child, never dropped (dropping a
//! runtime waits for its threads). Reads take no lock (arc-swap); the locks below (and `Backend`'s) are held only
//! while the runtime or the state is built, once per process, and only by a thread that holds the GIL, never
//! across a `detach`: `os.fork` runs holding the GIL too, so no fork from Python lands while one is held.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;
use keyway_core::Resolver;
use pyo3::prelude::*;

use crate::{ConfigurationError, KeywayError};

/// Where secrets come from.
pub(crate) enum Backend {
    Daemon(keyway_client::Client),
    Direct(Resolver),
}

pub(crate) struct State {
    pub(crate) runtime: &'static tokio::runtime::Runtime,
    pub(crate) backend: Backend,
}

/// What `keyway.configure` was given; `None` until it is called (then the environment decides).
#[derive(Clone)]
struct Settings {
    config: Option<PathBuf>,
    daemon: String,
    socket: Option<PathBuf>,
    local_dir: Option<PathBuf>,
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            config: env_path("KEYWAY_CONFIG"),
            daemon: std::env::var("KEYWAY_DAEMON").unwrap_or_else(|_| "auto".to_owned()),
            socket: env_path("KEYWAY_SOCKET"),
            local_dir: env_path("KEYWAY_LOCAL_DIR"),
        }
    }
}

static RUNTIME: ArcSwapOption<&'static tokio::runtime::Runtime> = ArcSwapOption::const_empty();
/// How many forks this process is from the one that loaded the extension: what a [`crate::backend::Backend`]
/// compares to learn that it was built in a parent.
static GENERATION: AtomicU64 = AtomicU64::new(0);
static STATE: ArcSwapOption<State> = ArcSwapOption::const_empty();
static SETTINGS: Mutex<Option<Settings>> = Mutex::new(None);
/// Serializes building the runtime: two first calls at once build one.
static BUILDING_RUNTIME: Mutex<()> = Mutex::new(());
/// Serializes building and replacing the state, so that a first call's state from the environment cannot
/// replace the one `configure` just stored.
static BUILDING_STATE: Mutex<()> = Mutex::new(());

/// This process's runtime, shared by `get_secret` & co. and every `Backend`; built on first use.
pub(crate) fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    if let Some(rt) = RUNTIME.load().as_deref() {
        return Ok(rt);
    }
    let _building = BUILDING_RUNTIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(rt) = RUNTIME.load().as_deref() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| KeywayError::new_err(format!("cannot start the async runtime: {e}")))?;
    // Never dropped: see the module's documentation.
    let rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(rt));
    RUNTIME.store(Some(Arc::new(rt)));
    Ok(rt)
}

/// Polls `future` once on the calling thread, inside `rt` (so it can reach the runtime's timers and sockets),
/// with a no-op waker: an answer from memory (a cache hit) comes back at once. A future left `Pending` may still
/// be run to its end on the runtime: that first poll there registers its own waker, as the `Future` contract
/// allows.
pub(crate) fn poll_once<F: Future + ?Sized>(
    rt: &tokio::runtime::Runtime,
    future: std::pin::Pin<&mut F>,
) -> std::task::Poll<F::Output> {
    let _entered = rt.enter();
    future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
}

/// Where secrets come from in this process; built on first use from the `configure` settings, or the
/// environment (KEYWAY_CONFIG, KEYWAY_DAEMON, KEYWAY_SOCKET, KEYWAY_LOCAL_DIR).
pub(crate) fn state() -> PyResult<Arc<State>> {
    if let Some(state) = STATE.load_full() {
        return Ok(state);
    }
    let _building = BUILDING_STATE
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(state) = STATE.load_full() {
        return Ok(state);
    }
    let settings = SETTINGS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_else(Settings::from_env);
    let state = Arc::new(build(&settings)?);
    STATE.store(Some(state.clone()));
    Ok(state)
}

fn build(settings: &Settings) -> PyResult<State> {
    let runtime = runtime()?;
    let config = match &settings.config {
        Some(path) => keyway_config::Config::load(path)
            .map_err(|e| ConfigurationError::new_err(e.to_string()))?,
        None => keyway_config::Config::default(),
    };
    let socket = settings
        .socket
        .clone()
        .or_else(|| config.server.socket.clone())
        .unwrap_or_else(keyway_api::default_socket_path);
    let client = keyway_client::Client::new(socket);
    let use_daemon = match settings.daemon.as_str() {
        "always" => true,
        "never" => false,
        "auto" => client.is_listening(),
        other => {
            return Err(ConfigurationError::new_err(format!(
                "daemon = {other:?}; use \"auto\", \"always\" or \"never\""
            )));
        }
    };
    let backend = if use_daemon {
        Backend::Daemon(client)
    } else {
        let local = settings
            .local_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("secrets"));
        let _guard = runtime.enter();
        Backend::Direct(
            config
                .providers
                .resolver(local)
                .map_err(|e| ConfigurationError::new_err(e.to_string()))?,
        )
    };
    Ok(State { runtime, backend })
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Sets where secrets come from (otherwise taken from KEYWAY_CONFIG, KEYWAY_DAEMON, KEYWAY_SOCKET and
/// KEYWAY_LOCAL_DIR on first use). `daemon` is "auto" (the daemon when its socket accepts connections),
/// "always" or "never". Returns "daemon" or "direct". A process forked later keeps these settings.
#[pyfunction]
#[pyo3(signature = (config=None, daemon="auto", socket=None, local_dir=None))]
pub(crate) fn configure(
    config: Option<PathBuf>,
    daemon: &str,
    socket: Option<PathBuf>,
    local_dir: Option<PathBuf>,
) -> PyResult<&'static str> {
    let settings = Settings {
        config,
        daemon: daemon.to_owned(),
        socket,
        local_dir,
    };
    let _building = BUILDING_STATE
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let state = Arc::new(build(&settings)?);
    let mode = match state.backend {
        Backend::Daemon(_) => "daemon",
        Backend::Direct(_) => "direct",
    };
    *SETTINGS.lock().unwrap_or_else(PoisonError::into_inner) = Some(settings);
    STATE.store(Some(state));
    Ok(mode)
}

/// In a child just forked (`os.register_at_fork(after_in_child=...)`): forget the parent's runtime and state,
/// so that the first call here builds this process's own.
#[pyfunction]
#[pyo3(name = "_after_fork")]
pub(crate) fn after_fork() {
    // Forgotten, not dropped: the runtime's threads, and the tasks the state's cache and connections belong to,
    // are not in this process.
    std::mem::forget(STATE.swap(None));
    std::mem::forget(RUNTIME.swap(None));
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// This process's place in its line of forks; changes in a child just forked.
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::SeqCst)
}
