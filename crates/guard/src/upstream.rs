//! The gateway's upstream client: HTTP/1.1 keep-alive connections, pooled per worker and per upstream.
//!
//! Each gateway worker owns one [`Upstreams`] (see [`crate::workers`]), so checking a connection out and back in
//! takes an uncontended lock on a short list, and a connection's task runs on the thread that uses it. A
//! connection goes back to the pool when the response body it carried has been read to its end; one whose body
//! was abandoned halfway is closed (HTTP/1.1 cannot reuse it). Idle connections are dropped after
//! [`IDLE_TIMEOUT`], checked whenever the pool is used, and at most [`MAX_IDLE`] stay open per upstream.
//!
//! An upstream is reached over plain TCP, or over TLS for an `https://` upstream ([`Origin::https`]); the two are
//! pooled apart.
//!
//! A request that never left the gateway because a pooled connection turned out closed (the upstream ended an
//! idle keep-alive connection) is sent again on another connection; one that may have reached the upstream is
//! not, and answers 502.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

/// How long an idle upstream connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The most idle connections kept per upstream and worker.
pub const MAX_IDLE: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an upstream request failed (the gateway answers 502).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("the route has no upstream")]
    NoUpstream,
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// A failed upstream request, with the request itself when it never left the gateway: no connection to the
/// upstream could be made (refused, timed out, TLS handshake failed), so another upstream may take it.
#[derive(Debug)]
pub struct Failed {
    pub error: UpstreamError,
    pub unsent: Option<Request<Body>>,
}

impl Failed {
    fn sent(error: impl Into<UpstreamError>) -> Failed {
        Failed { error: error.into(), unsent: None }
    }
}

/// Where an upstream is: its host and port, and for HTTPS, how to reach it.
#[derive(Clone)]
pub struct Origin {
    authority: Authority,
    /// For `https://`: the TLS client and the name the upstream's certificate must carry.
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", if self.tls.is_some() { "https" } else { "http" }, self.authority)
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

impl Origin {
    /// An `http://` upstream.
    pub fn http(authority: Authority) -> Origin {
        Origin { authority, tls: None }
    }

    /// An `https://` upstream, reached through `tls`; its certificate must name the authority's host (a DNS name
    /// or an IP address). `None` when the host is neither.
    pub fn https(authority: Authority, tls: TlsConnector) -> Option<Origin> {
        let host = authority.host();
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let name = ServerName::try_from(host.to_owned()).ok()?;
        Some(Origin { authority, tls: Some((tls, name)) })
    }

    pub fn is_https(&self) -> bool {
        self.tls.is_some()
    }

    fn port(&self) -> u16 {
        self.authority.port_u16().unwrap_or(if self.tls.is_some() { 443 } else { 80 })
    }

    /// Whether connections to `self` may serve `other`.
    fn same(&self, other: &Origin) -> bool {
        self.authority == other.authority && self.tls.is_some() == other.tls.is_some()
    }
}

/// A connection to an upstream: plain TCP, or TLS over it.
type Stream = Either<TcpStream, Box<TlsStream<TcpStream>>>;

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// One worker's pooled upstream connections.
#[derive(Default)]
pub struct Upstreams {
    /// Per upstream, the idle connections, oldest first. Routes name few upstreams: a list beats a hash map.
    idle: Mutex<Vec<(Origin, VecDeque<Idle>)>>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams").field("idle", &self.idle_count()).finish()
    }
}

impl Upstreams {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(Origin, VecDeque<Idle>)>> {
        // A panic while holding the lock leaves a list of connections, which is still a valid list.
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Idle connections open now, over all upstreams.
    pub fn idle_count(&self) -> usize {
        self.lock().iter().map(|(_, list)| list.len()).sum()
    }

    /// The most recently used idle connection to `origin` that is still open; drops the expired ones.
    fn checkout(&self, origin: &Origin) -> Option<SendRequest<Body>> {
        let mut pools = self.lock();
        let (_, list) = pools.iter_mut().find(|(o, _)| o.same(origin))?;
        let now = Instant::now();
        while list.front().is_some_and(|c| c.sender.is_closed() || now.duration_since(c.since) > IDLE_TIMEOUT) {
            list.pop_front();
        }
        while let Some(c) = list.pop_back() {
            if !c.sender.is_closed() {
                return Some(c.sender);
            }
        }
        None
    }

    fn checkin(&self, origin: Origin, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut pools = self.lock();
        let since = Instant::now();
        let list = match pools.iter().position(|(o, _)| o.same(&origin)) {
            Some(i) => &mut pools[i].1,
            None => {
                pools.push((origin, VecDeque::new()));
                let last = pools.len() - 1;
                &mut pools[last].1
            }
        };
        if list.len() >= MAX_IDLE {
            list.pop_front();
        }
        list.push_back(Idle { sender, since });
    }

    async fn connect(origin: &Origin) -> Result<SendRequest<Body>, UpstreamError> {
        let (sender, connection) = Self::handshake(origin).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    async fn handshake(
        origin: &Origin,
    ) -> Result<(SendRequest<Body>, http1::Connection<TokioIo<Stream>, Body>), UpstreamError> {
        // The connect timeout bounds the TCP connection and the TLS handshake together.
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, Self::open(origin))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout)??;
        Ok(http1::Builder::new().handshake(TokioIo::new(stream)).await?)
    }

    async fn open(origin: &Origin) -> Result<Stream, UpstreamError> {
        // `host:port` as text: an IPv6 host keeps its brackets, which the address parser wants.
        let addr = format!("{}:{}", origin.authority.host(), origin.port());
        let stream = TcpStream::connect(addr).await.map_err(UpstreamError::Connect)?;
        stream.set_nodelay(true).map_err(UpstreamError::Connect)?;
        match &origin.tls {
            None => Ok(Either::Left(stream)),
            Some((tls, name)) => {
                let stream = tls.connect(name.clone(), stream).await.map_err(UpstreamError::Tls)?;
                Ok(Either::Right(Box::new(stream)))
            }
        }
    }

    /// Sends `request` (an upgrade: `Connection: upgrade` and `Upgrade` set) to `authority` on a connection of its
    /// own, never pooled: after a `101 Switching Protocols` the connection belongs to the new protocol, whose
    /// bytes [`hyper::upgrade::on`] on the response yields.
    pub async fn send_upgrade(origin: &Origin, request: Request<Body>) -> Result<Response<Incoming>, Failed> {
        let (mut sender, connection) = match Self::handshake(origin).await {
            Ok(connected) => connected,
            Err(error) => return Err(Failed { error, unsent: Some(request) }),
        };
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        sender.send_request(request).await.map_err(Failed::sent)
    }

    /// Sends `request` (origin-form target, `Host` set) to `origin` on a pooled connection or a new one.
    pub async fn send(
        self: &Arc<Self>,
        origin: &Origin,
        mut request: Request<Body>,
    ) -> Result<Response<PooledBody>, Failed> {
        // Pooled connections found closed are skipped; after two, a new connection is made.
        let mut reused_tries = 0;
        loop {
            let pooled = if reused_tries < 2 { self.checkout(origin) } else { None };
            let reused = pooled.is_some();
            let mut sender = match pooled {
                Some(sender) => sender,
                // Boxed: a new connection is the rare case, and its futures (TCP, TLS, handshake) would otherwise
                // make every request's future larger, copied whole each time one is made.
                None => match Box::pin(Self::connect(origin)).await {
                    Ok(sender) => sender,
                    Err(error) => return Err(Failed { error, unsent: Some(request) }),
                },
            };
            reused_tries += usize::from(reused);
            if let Err(e) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(Failed::sent(e));
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let back = Some((sender, Arc::clone(self), origin.clone()));
                    return Ok(response.map(|inner| PooledBody { inner, back, ended: false }));
                }
                Err(mut e) => match e.take_message() {
                    // Not written to the connection: safe to send again on another one.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(Failed::sent(e.into_error())),
                },
            }
        }
    }
}

/// An upstream response body that returns its connection to the pool once read to the end.
pub struct PooledBody {
    inner: Incoming,
    back: Option<(SendRequest<Body>, Arc<Upstreams>, Origin)>,
    ended: bool,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody").field("ended", &self.ended).finish()
    }
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((sender, pool, origin)) = self.back.take() {
            pool.checkin(origin, sender);
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                self.ended = true;
                self.release();
            }
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body dropped before its end leaves unread bytes on the connection: it is not reused.
        if self.ended || self.inner.is_end_stream() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A raw HTTP/1.1 upstream that counts its connections and answers `ok`, or `body_len` bytes when that is
    /// larger; with `close_after_each`, it answers `Connection: close` and hangs up after every response.
    async fn upstream(close_after_each: bool, body_len: usize) -> (Authority, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&connections);
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let Ok(n) = stream.read(&mut buf).await else { return };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let close = if close_after_each { "Connection: close\r\n" } else { "" };
                            let body = if body_len > 2 { "x".repeat(body_len) } else { "ok".to_owned() };
                            let answer =
                                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{close}\r\n{body}", body.len());
                            if stream.write_all(answer.as_bytes()).await.is_err() || close_after_each {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (authority, connections)
    }

    fn request(authority: &Authority) -> Request<Body> {
        Request::builder().uri("/x").header("host", authority.as_str()).body(Body::empty()).unwrap()
    }

    async fn fetch(pool: &Arc<Upstreams>, authority: &Authority) -> Bytes {
        let response = pool.send(&Origin::http(authority.clone()), request(authority)).await.unwrap();
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_connection_read_to_its_end_is_reused() {
        let (authority, connections) = upstream(false, 2).await;
        let pool = Upstreams::new();
        for _ in 0..5 {
            assert_eq!(fetch(&pool, &authority).await, "ok");
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn an_abandoned_body_does_not_return_its_connection() {
        // A megabyte cannot have arrived with the head: dropping the body leaves unread bytes on the connection.
        let (authority, connections) = upstream(false, 1 << 20).await;
        let pool = Upstreams::new();
        let response = pool.send(&Origin::http(authority.clone()), request(&authority)).await.unwrap();
        let body = response.into_body();
        assert!(!body.is_end_stream());
        drop(body);
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(fetch(&pool, &authority).await.len(), 1 << 20);
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn an_upstream_that_hangs_up_costs_a_new_connection_not_a_failed_request() {
        let (authority, connections) = upstream(true, 2).await;
        let pool = Upstreams::new();
        for _ in 0..4 {
            assert_eq!(fetch(&pool, &authority).await, "ok");
            // Let the closed connection's task see the hang-up, as it would between real requests.
            tokio::task::yield_now().await;
        }
        assert_eq!(connections.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        drop(listener);
        let pool = Upstreams::new();
        let failed = pool.send(&Origin::http(authority.clone()), request(&authority)).await.unwrap_err();
        assert!(matches!(failed.error, UpstreamError::Connect(_)), "{}", failed.error);
        assert_eq!(failed.unsent.unwrap().uri(), "/x", "a request that never left is handed back");
    }
}
