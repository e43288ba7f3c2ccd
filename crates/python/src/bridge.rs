//! Awaitables for asyncio from futures on this process's runtime ([`crate::process::runtime`]), through
//! `pyo3-async-runtimes`' generic bridge. Its own tokio binding keeps the first runtime it is given for the
//! life of the process, which a forked child cannot use; this one asks for the current process's each time.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pyo3::prelude::*;
use pyo3_async_runtimes::TaskLocals;
use pyo3_async_runtimes::generic::{ContextExt, JoinError, Runtime};

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

/// The extension's runtime, as `pyo3-async-runtimes` sees it.
struct KeywayRuntime;

/// A task's failure (a panic, or cancellation at shutdown).
struct Failed(tokio::task::JoinError);

impl JoinError for Failed {
    fn is_panic(&self) -> bool {
        self.0.is_panic()
    }

    fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        self.0.into_panic()
    }
}

/// A spawned task, awaited.
struct Joined(tokio::task::JoinHandle<()>);

impl Future for Joined {
    type Output = Result<(), Failed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| r.map_err(Failed))
    }
}

/// The current process's runtime. Awaitables are made only after `state()` built it, so it is there.
fn current() -> &'static tokio::runtime::Runtime {
    crate::process::runtime().expect("the runtime exists once an awaitable is made")
}

impl Runtime for KeywayRuntime {
    type JoinError = Failed;
    type JoinHandle = Joined;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Joined(current().spawn(fut))
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        Joined(current().spawn_blocking(f))
    }
}

impl ContextExt for KeywayRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

/// An asyncio future of `future`'s result, run on the extension's runtime.
pub(crate) fn future_into_py<F, T>(py: Python<'_>, future: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    pyo3_async_runtimes::generic::future_into_py::<KeywayRuntime, _, T>(py, future)
}
