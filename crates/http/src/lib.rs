//! # portcullis-http
//!
//! How the authorization server and the gateway serve HTTP connections: one accept loop, the limits that keep a
//! hostile client from holding resources, and a bounded drain at shutdown.
//!
//! At most `max_connections` connections are served at once: past that, new ones wait in the kernel's listen
//! backlog until one closes, instead of taking file descriptors the process needs for everything else (its
//! upstream connections, its database, its log). Without such a bound, a client that opens connections faster
//! than the header timeout closes them exhausts the descriptors, and every accept and outgoing connect fails.
//!
//! A client must send each request head within the header timeout, counted from when the server starts waiting
//! for it: on a new connection, and on a kept-alive one after the previous response (so it also closes idle
//! connections); a head is at most the configured size (431 above it). A slowloris client, which opens many
//! connections and sends a byte now and then (or nothing), would otherwise hold a task and a socket each for as
//! long as it likes.
//!
//! Not a framework: routing and handlers belong to the caller, which passes an axum [`Router`](axum::Router)
//! (or any tower service of requests that never fails) and, per connection, a handshake step (a TLS accept, or
//! nothing). [`tls::Tls`] makes that TLS accept from a certificate and key file, and replaces the certificate
//! when the files change.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::time::Duration;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
//! let limits = portcullis_http::Limits {
//!     header_timeout: Duration::from_secs(10),
//!     max_header_bytes: 16 * 1024,
//!     drain_timeout: Duration::from_secs(10),
//!     max_connections: 10_000,
//! };
//! let shutdown = std::future::pending::<()>(); // e.g. a signal handler
//! portcullis_http::serve(listener, router, limits, shutdown, |stream| async move { Some(stream) }).await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod forwarded;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// What a connection may cost before it has sent a request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send a request head (and a TLS handshake, where there is one).
    pub header_timeout: Duration,
    /// The largest request head (request line and headers).
    pub max_header_bytes: usize,
    /// How long shutdown waits for open connections to finish their requests.
    pub drain_timeout: Duration,
    /// The most connections served at once (at least 1); more wait in the listen backlog.
    pub max_connections: usize,
}

/// Makes room for `needed` open file descriptors: raises the process's soft limit (`RLIMIT_NOFILE`, often 1024)
/// towards the hard one when it is lower, as a server that holds thousands of connections must. Returns a warning
/// for the log when the limit stays below `needed` (the hard limit is lower: raise it, e.g. systemd's
/// `LimitNOFILE=`, or serve fewer connections).
pub fn make_room_for_open_files(needed: u64) -> Option<String> {
    match rlimit::increase_nofile_limit(needed) {
        Ok(limit) if limit >= needed => None,
        Ok(limit) => Some(format!(
            "the open-files limit is {limit}, below the {needed} that max_connections may need: raise the hard \
             limit (ulimit -Hn, systemd LimitNOFILE=) or lower max_connections"
        )),
        Err(e) => Some(format!("cannot raise the open-files limit to {needed}: {e}")),
    }
}

/// What [`serve`] serves: an axum [`Router`](axum::Router), or any tower service of requests that never fails
/// and can be cloned for each connection.
pub trait Serves<B>:
    tower::Service<Request<Incoming>, Response = hyper::Response<B>, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S, B> Serves<B> for S where
    S: tower::Service<Request<Incoming>, Response = hyper::Response<B>, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// The body of a response [`serve`] writes.
pub trait ResponseBody:
    hyper::body::Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

impl<B> ResponseBody for B where
    B: hyper::body::Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

/// Serves `router` (an axum [`Router`](axum::Router), or any service of requests that never fails) on
/// `listener` until `shutdown` resolves, then drains open connections for at most `limits.drain_timeout`. Each
/// accepted stream goes through `handshake` first (a TLS handshake, or nothing); a stream it refuses (`None`) is
/// closed. Handlers find the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve<S, B, H, F, I>(
    listener: TcpListener,
    router: S,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    handshake: H,
) where
    S: Serves<B>,
    B: ResponseBody,
    H: Fn(TcpStream) -> F,
    F: Future<Output = Option<I>> + Send + 'static,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(limits.max_header_bytes as u32);
    tokio::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(limits.max_connections.clamp(1, Semaphore::MAX_PERMITS)));
    // Under a flood the limit is reached again and again: one warning a minute says so.
    let mut warned: Option<tokio::time::Instant> = None;
    loop {
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    warned = Some(tokio::time::Instant::now());
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached: new connections wait until one closes"
                    );
                }
                metrics::counter!("portcullis_connection_limit_waits_total").increment(1);
                tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
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
        let service = router.clone().map_request(move |mut request: Request<Incoming>| {
            seen.store(true, Ordering::Relaxed);
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let service = TowerToHyperService::new(service);
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let handshaking = handshake(stream);
        // Dropped when the connection's task ends (or is aborted), which ends its deadline's task too.
        let (open, closed) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            let (_open, _slot) = (open, slot);
            let Some(io) = handshaking.await else { return };
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
        // hyper times a head once it reads HTTP/1, after the first bytes that tell HTTP/1 from HTTP/2 (a client
        // that sends none, or the start of the HTTP/2 preface, is not timed): the first request has a deadline
        // of its own, which also bounds the handshake. A task of its own, which sleeps once, so that serving
        // requests never polls its timer.
        let connection = serving.abort_handle();
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(limits.header_timeout) => if !asked.load(Ordering::Relaxed) {
                    connection.abort();
                    tracing::debug!(%peer, "no request within the header timeout: connection closed");
                },
                _ = closed => {}
            }
        });
    }
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after {:?}; closing them", limits.drain_timeout);
    }
}

/// [`serve`] with TLS: each connection's handshake with `tls` (bounded by the header timeout), its certificate
/// replaced when the files change while [`tls::Tls::watch`] runs.
pub async fn serve_tls<S, B>(
    listener: TcpListener,
    router: S,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    tls: &tls::Tls,
) where
    S: Serves<B>,
    B: ResponseBody,
{
    let acceptor = tls.acceptor();
    let handshake = move |stream| {
        let accepting = acceptor.accept(stream);
        async move {
            match accepting.await {
                Ok(stream) => Some(stream),
                Err(e) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    None
                }
            }
        }
    };
    serve(listener, router, limits, shutdown, handshake).await;
}
