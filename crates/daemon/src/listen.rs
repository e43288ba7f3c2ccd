//! Listeners: the unix socket (peer credentials), loopback TCP, and the accept loops that hand connections to
//! hyper with the connection limit, head size limit and head timeout applied.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::ServerSection;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpListener, UnixListener};

use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::{Current, DaemonError};

/// hyper refuses buffers smaller than this.
const MIN_BUF: usize = 8 * 1024;

/// Who is on the other end of a connection, as the kernel or the socket says.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Peer {
    /// A unix socket peer (`SO_PEERCRED`).
    Unix {
        uid: u32,
        gid: u32,
        pid: Option<i32>,
    },
    /// A TCP peer; its identity comes from the token of each request. `open`: the TCP connections open when it
    /// was accepted, itself included (the AWS agent's `max_conn` counts them so).
    Tcp { addr: SocketAddr, open: usize },
    /// A peer of the metrics listener: it gets metrics and probes, never a secret.
    Metrics(SocketAddr),
}

/// The bound unix socket; remembers its path for removal at shutdown.
pub(crate) struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Passed by the service manager (socket activation): its file is the manager's, not ours to remove.
    activated: bool,
}

impl UnixSocket {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting and returns the path to remove once connections are drained (none when the service
    /// manager owns the socket: it keeps listening, and connections wait for the next start).
    pub fn close(self) -> Option<PathBuf> {
        drop(self.listener);
        (!self.activated).then_some(self.path)
    }
}

/// Listening sockets the service manager passed (systemd socket activation, `LISTEN_FDS`), taken before any
/// thread started; each is served instead of binding the configured address.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Activated {
    /// The daemon's unix socket, instead of `[server] socket`.
    pub unix: Option<std::os::unix::net::UnixListener>,
    /// The token-guarded TCP listener, instead of `[server] tcp` (loopback unless `allow_non_loopback`).
    pub tcp: Option<std::net::TcpListener>,
    /// The metrics listener, instead of `[server] metrics`.
    pub metrics: Option<std::net::TcpListener>,
}

/// A TCP socket the service manager passed, as `what` (`tcp` or `metrics`); `check` tests its address as
/// the configured one's would be.
pub(crate) fn adopt_tcp(
    listener: std::net::TcpListener,
    what: &str,
    configured: Option<&String>,
    check: impl FnOnce(&str) -> Result<SocketAddr, DaemonError>,
) -> Result<TcpListener, DaemonError> {
    let listen_err = |source| DaemonError::Listen {
        address: format!("the {what} socket passed by the service manager (LISTEN_FDS)"),
        source,
    };
    let addr = listener.local_addr().map_err(listen_err)?;
    check(&addr.to_string())?;
    listener.set_nonblocking(true).map_err(listen_err)?;
    let instead = configured.map_or_else(String::new, |a| format!(", not {what} = \"{a}\""));
    tracing::info!(%addr, "serving {what} on the socket the service manager passed{instead}");
    TcpListener::from_std(listener).map_err(listen_err)
}

/// The unix socket: `activated` when the service manager passed one (systemd socket activation, taken from
/// `LISTEN_FDS` before any thread started), else bound at `socket` with `socket_mode` and `socket_group`.
pub(crate) fn bind_unix(
    settings: &ServerSection,
    activated: Option<std::os::unix::net::UnixListener>,
) -> Result<UnixSocket, DaemonError> {
    let path = socket_path(settings);
    if let Some(listener) = activated {
        let listen_err = |source| DaemonError::Listen {
            address: "the socket passed by the service manager (LISTEN_FDS)".to_owned(),
            source,
        };
        listener.set_nonblocking(true).map_err(listen_err)?;
        let passed = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            .unwrap_or(path);
        tracing::info!(socket = %passed.display(), "serving on the socket the service manager passed; its SocketMode and SocketGroup apply, not socket_mode and socket_group");
        return Ok(UnixSocket {
            listener: UnixListener::from_std(listener).map_err(listen_err)?,
            path: passed,
            activated: true,
        });
    }
    let listen_err = |source| DaemonError::Listen {
        address: format!("unix:{}", path.display()),
        source,
    };
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        std::fs::create_dir_all(parent).map_err(listen_err)?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
            .map_err(listen_err)?;
    }
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                return Err(DaemonError::Config(format!(
                    "another process is serving on {}; stop it or set another `socket`",
                    path.display()
                )));
            }
            // A stale socket left by a daemon that did not shut down cleanly.
            std::fs::remove_file(&path).map_err(listen_err)?;
        }
        Ok(_) => {
            return Err(DaemonError::Config(format!(
                "{} exists and is not a socket; remove it or set another `socket`",
                path.display()
            )));
        }
        Err(_) => {}
    }
    let (mode, gid) = socket_owner(settings)?;
    let listener = UnixListener::bind(&path).map_err(listen_err)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(listen_err)?;
    if let Some(gid) = gid {
        rustix::fs::chown(&path, None, Some(rustix::fs::Gid::from_raw(gid)))
            .map_err(|e| listen_err(e.into()))?;
    }
    Ok(UnixSocket {
        listener,
        path,
        activated: false,
    })
}

/// Where the unix socket is bound: `[server] socket`, else the default path.
pub(crate) fn socket_path(settings: &ServerSection) -> PathBuf {
    settings
        .socket
        .clone()
        .unwrap_or_else(keyway_api::default_socket_path)
}

/// The socket file's mode and group, from `socket_mode` and `socket_group`.
pub(crate) fn socket_owner(settings: &ServerSection) -> Result<(u32, Option<u32>), DaemonError> {
    let mode = settings
        .socket_mode
        .map_or(0o666, keyway_core::FileMode::bits);
    let gid = settings.socket_group.as_deref().map(group_id).transpose()?;
    Ok((mode, gid))
}

/// A numeric gid or a group name from `/etc/group`.
fn group_id(group: &str) -> Result<u32, DaemonError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let gid = fields.nth(1)?.parse::<u32>().ok()?;
            (name == group).then_some(gid)
        })
        .ok_or_else(|| {
            DaemonError::Config(format!(
                "socket_group = \"{group}\": no such group in /etc/group; give a group name or a numeric gid"
            ))
        })
}

pub(crate) async fn bind_tcp(
    address: &str,
    allow_non_loopback: bool,
) -> Result<TcpListener, DaemonError> {
    let addr = tcp_address(address, allow_non_loopback)?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "serving secrets on a NON-LOOPBACK address, as allow_non_loopback asks; every request still needs a token");
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Listen {
            address: format!("tcp:{address}"),
            source,
        })
}

/// `metrics` as an address: IP:PORT, any interface (it serves no secret).
pub(crate) fn metrics_address(address: &str) -> Result<SocketAddr, DaemonError> {
    address.parse().map_err(|_| {
        DaemonError::Config(format!(
            "metrics = \"{address}\" is not an IP:PORT address; write e.g. \"0.0.0.0:9102\""
        ))
    })
}

pub(crate) async fn bind_metrics(address: &str) -> Result<TcpListener, DaemonError> {
    let addr = metrics_address(address)?;
    TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Listen {
            address: format!("metrics:{address}"),
            source,
        })
}

/// `tcp` as an address: IP:PORT, loopback unless `allow_non_loopback`.
pub(crate) fn tcp_address(
    address: &str,
    allow_non_loopback: bool,
) -> Result<SocketAddr, DaemonError> {
    let addr: SocketAddr = address.parse().map_err(|_| {
        DaemonError::Config(format!(
            "tcp = \"{address}\" is not an IP:PORT address; write e.g. \"127.0.0.1:2773\""
        ))
    })?;
    if !addr.ip().is_loopback() && !allow_non_loopback {
        return Err(DaemonError::Config(format!(
            "tcp = \"{address}\" is not a loopback address; secrets would be served to the network. Use 127.0.0.1, or set allow_non_loopback = true if you mean it"
        )));
    }
    Ok(addr)
}

/// Accept loops. Each listener has its own connection limit; over it, new connections wait in the kernel's
/// backlog instead of costing memory here.
pub(crate) struct Server {
    current: Arc<Current>,
    unix_slots: Arc<Semaphore>,
    tcp_slots: Arc<Semaphore>,
    metrics_slots: Arc<Semaphore>,
    /// TCP connections open now.
    tcp_open: Arc<AtomicUsize>,
}

/// A connection's place: its permit and, on TCP, its count among the open connections, both given back when
/// the connection ends.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    open: Option<Arc<AtomicUsize>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(open) = &self.open {
            open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Server {
    pub fn new(current: Arc<Current>) -> Server {
        let n = current.load().settings.max_connections.max(1);
        Server {
            current,
            unix_slots: Arc::new(Semaphore::new(n)),
            tcp_slots: Arc::new(Semaphore::new(n)),
            // Scrapers and probes: a few at a time.
            metrics_slots: Arc::new(Semaphore::new(n.min(64))),
            tcp_open: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub async fn accept_unix(&self, socket: Option<&UnixSocket>, graceful: &GracefulShutdown) {
        let Some(socket) = socket else {
            return std::future::pending().await;
        };
        loop {
            let Ok(permit) = self.unix_slots.clone().acquire_owned().await else {
                return;
            };
            let (stream, _) = match socket.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            };
            let peer = match stream.peer_cred() {
                Ok(cred) => Peer::Unix {
                    uid: cred.uid(),
                    gid: cred.gid(),
                    pid: cred.pid(),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the peer credentials; closing");
                    continue;
                }
            };
            let slot = Slot {
                _permit: permit,
                open: None,
            };
            self.serve(stream, peer, slot, graceful);
        }
    }

    pub async fn accept_tcp(&self, listener: Option<&TcpListener>, graceful: &GracefulShutdown) {
        let counter = Some(&self.tcp_open);
        self.accept_on(
            listener,
            &self.tcp_slots,
            counter,
            graceful,
            |addr, stream, open| {
                // One hop at most: a packet to us cannot be routed on (the AWS agent does the same).
                let _ = stream.set_ttl(1);
                Peer::Tcp { addr, open }
            },
        )
        .await;
    }

    pub async fn accept_metrics(
        &self,
        listener: Option<&TcpListener>,
        graceful: &GracefulShutdown,
    ) {
        self.accept_on(
            listener,
            &self.metrics_slots,
            None,
            graceful,
            |addr, _, _| Peer::Metrics(addr),
        )
        .await;
    }

    async fn accept_on(
        &self,
        listener: Option<&TcpListener>,
        slots: &Arc<Semaphore>,
        counter: Option<&Arc<AtomicUsize>>,
        graceful: &GracefulShutdown,
        peer: impl Fn(SocketAddr, &tokio::net::TcpStream, usize) -> Peer,
    ) {
        let Some(listener) = listener else {
            return std::future::pending().await;
        };
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (stream, addr) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let open = counter.map_or(0, |c| c.fetch_add(1, Ordering::Relaxed) + 1);
            let slot = Slot {
                _permit: permit,
                open: counter.cloned(),
            };
            let peer = peer(addr, &stream, open);
            self.serve(stream, peer, slot, graceful);
        }
    }

    fn serve<S>(&self, stream: S, peer: Peer, slot: Slot, graceful: &GracefulShutdown)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        // Each request is served by the configuration current when it arrives (a reload swaps it).
        let current = self.current.clone();
        let now = self.current.load_full();
        let settings = &now.settings;
        let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let state = current.load_full();
            // A span per request: method and path (references are names, never values).
            let span = tracing::debug_span!("request", method = %request.method(), path = %request.uri().path());
            async move { Ok::<_, Infallible>(crate::routes::handle(&state, peer, request).await) }
                .instrument(span)
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_timeout)
            .max_buf_size(settings.max_request_bytes.max(MIN_BUF))
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        let span = match peer {
            Peer::Unix { uid, gid, pid } => tracing::debug_span!("connection", uid, gid, pid),
            Peer::Tcp { addr, .. } | Peer::Metrics(addr) => {
                tracing::debug_span!("connection", %addr)
            }
        };
        tokio::spawn(
            async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                drop(slot);
            }
            .instrument(span),
        );
    }
}

/// Accept errors (out of file descriptors, mostly) are transient: back off briefly instead of spinning.
async fn accept_failed(e: &std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}
