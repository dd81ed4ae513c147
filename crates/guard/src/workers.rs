//! The gateway on one thread per core, in the manner of nginx's worker processes. Each worker has its own
//! single-threaded runtime, its own listening socket on the shared address (`SO_REUSEPORT`: the kernel spreads
//! new connections over them) and its own upstream connection pool, so a request stays on one thread from
//! accept to response. A work-stealing runtime instead wakes other threads for every socket event; on a loaded
//! host the profile showed about 30 % of the gateway's time in those wake-ups and context switches.
//!
//! The guard (JWKS refresh, revocation feed) keeps running on the runtime that started it; the workers share it.
//!
//! Connections are served by [`portcullis_http::serve`], which bounds what a client may hold without sending a
//! request: a request head must arrive within the header timeout, and a head is at most [`MAX_HEADER_BYTES`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::TcpSocket;
use tokio::sync::watch;

use crate::gateway::Gateway;
use crate::GuardError;

/// The largest request head (request line and headers) the gateway reads; a larger one is answered 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long shutdown waits for open connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection to the gateway may cost, on one of `workers` listeners (which share `max_connections`).
pub(crate) fn limits(gateway: &Gateway, workers: usize) -> portcullis_http::Limits {
    portcullis_http::Limits {
        header_timeout: gateway.header_timeout(),
        max_header_bytes: MAX_HEADER_BYTES,
        drain_timeout: DRAIN_TIMEOUT,
        max_connections: gateway.max_connections().div_ceil(workers.max(1)),
    }
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then drains open connections (for at most 10 s).
/// A client must send each request head within the gateway's `header_timeout` (which also bounds a TLS handshake).
pub(crate) async fn serve_listener(
    listener: tokio::net::TcpListener,
    gateway: &Arc<Gateway>,
    workers: usize,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limits = limits(gateway, workers);
    let router = gateway.service();
    match gateway.tls() {
        None => portcullis_http::serve(listener, router, limits, shutdown, |stream| async move { Some(stream) }).await,
        Some(tls) => portcullis_http::serve_tls(listener, router, limits, shutdown, tls).await,
    }
}

/// Serves `gateway` on `listen` with `workers` threads (0: one per core) until `shutdown` turns true; each worker
/// then drains its connections. Returns the bound address and the threads, which end after draining.
pub fn serve_workers(
    gateway: &Arc<Gateway>,
    listen: &str,
    workers: usize,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, Vec<JoinHandle<()>>), GuardError> {
    let workers = if workers == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { workers };
    let cannot = |e: std::io::Error| GuardError::Config(format!("cannot listen on {listen}: {e}"));
    let wanted = listen
        .to_socket_addrs()
        .map_err(cannot)?
        .next()
        .ok_or_else(|| GuardError::Config(format!("cannot listen on {listen}: the name has no address")))?;
    // Bind every socket here, so that an error is reported at start and port 0 becomes one port for all.
    let mut sockets = Vec::with_capacity(workers);
    let mut addr = wanted;
    for _ in 0..workers {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(cannot)?;
        socket.set_reuseaddr(true).map_err(cannot)?;
        #[cfg(unix)]
        socket.set_reuseport(true).map_err(cannot)?;
        socket.set_nodelay(true).map_err(cannot)?;
        socket.bind(addr).map_err(cannot)?;
        addr = socket.local_addr().map_err(cannot)?;
        sockets.push(socket);
    }
    // A descriptor per client connection and per upstream connection, and some for the rest.
    if let Some(warning) = portcullis_http::make_room_for_open_files(2 * gateway.max_connections() as u64 + 256) {
        tracing::warn!("{warning}");
    }
    let mut threads = Vec::with_capacity(workers);
    // Each worker says when its socket listens (or why it cannot), so that the address returned accepts
    // connections at once and a failure is the caller's error, not a log line.
    let (listening, ready) = std::sync::mpsc::channel::<Result<(), String>>();
    for (i, socket) in sockets.into_iter().enumerate() {
        let (gateway, mut shutdown) = (gateway.for_worker(), shutdown.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| GuardError::Config(format!("cannot start a worker runtime: {e}")))?;
        let listening = listening.clone();
        let thread = std::thread::Builder::new()
            .name(format!("gateway-worker-{i}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match socket.listen(1024) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = listening.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = listening.send(Ok(()));
                    let stop = async move {
                        let _ = shutdown.wait_for(|stop| *stop).await;
                    };
                    serve_listener(listener, &gateway, workers, stop).await;
                });
            })
            .map_err(|e| GuardError::Config(format!("cannot start a worker thread: {e}")))?;
        threads.push(thread);
    }
    for _ in 0..threads.len() {
        match ready.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(GuardError::Config(format!("cannot listen on {listen}: {e}"))),
            Err(_) => return Err(GuardError::Config("a gateway worker ended before it listened".into())),
        }
    }
    Ok((addr, threads))
}
