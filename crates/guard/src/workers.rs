//! The gateway on one thread per core, in the manner of nginx's worker processes. Each worker has its own
//! single-threaded runtime, its own listening socket on the shared address (`SO_REUSEPORT`: the kernel spreads
//! new connections over them) and its own upstream connection pool, so a request stays on one thread from
//! accept to response. A work-stealing runtime instead wakes other threads for every socket event; on a loaded
//! host the profile showed about 30 % of the gateway's time in those wake-ups and context switches.
//!
//! The guard (JWKS refresh, revocation feed) keeps running on the runtime that started it; the workers share it.
//!
//! Connections are served by [`serve_listener`], which bounds what a client may hold without sending a request:
//! a request head must arrive within the header timeout, and a head is at most [`MAX_HEADER_BYTES`].

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::gateway::Gateway;
use crate::GuardError;

/// The largest request head (request line and headers) the gateway reads; a larger one is answered 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long shutdown waits for open connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` resolves, then drains open connections (for at most 10 s).
///
/// A client must send each request head within `header_timeout`, counted from when the gateway starts waiting
/// for it: on a new connection, and on a kept-alive one after the previous response (so it also bounds idle
/// connections). Otherwise the connection is closed. A slowloris client, which opens many connections and
/// sends a few bytes now and then, would otherwise hold a task and a socket each for as long as it likes.
pub async fn serve_listener(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout).max_buf_size(MAX_HEADER_BYTES);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(MAX_HEADER_BYTES as u32);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, typically: wait for connections to close rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let asked = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&asked);
        let service = router.clone().map_request(move |request: Request<Incoming>| {
            seen.store(true, Ordering::Relaxed);
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
        let serving = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            // hyper times a head once it reads HTTP/1, after the first bytes that tell HTTP/1 from HTTP/2 (a
            // client that sends none, or the start of the HTTP/2 preface, is not timed): the first request
            // has a deadline of its own.
            let first_request = async {
                tokio::time::sleep(header_timeout).await;
                if asked.load(Ordering::Relaxed) {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                served = serving => if let Err(e) = served {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                },
                () = first_request => tracing::debug!(%peer, "no request within the header timeout: connection closed"),
            }
        });
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("gateway connections still open after {DRAIN_TIMEOUT:?}; closing them");
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
                        while !*shutdown.borrow_and_update() {
                            if shutdown.changed().await.is_err() {
                                break;
                            }
                        }
                    };
                    serve_listener(listener, gateway.router(), gateway.header_timeout(), stop).await;
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
