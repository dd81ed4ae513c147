//! Starting and stopping the server: open the store (running migrations), load the master key, bring the
//! signing keys up to date, start the background tasks (key schedule, revocation sync, purge), and serve
//! HTTP or HTTPS until asked to stop, then drain connections.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use portcullis_http::tls::Tls;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::audit::Audit;
use crate::authority::{Authority, DerivedSecrets, PasswordPool, Rules};
use crate::clock::Clock;
use crate::config::Settings;
use crate::http::{self, AppState, LoginRateLimit};
use crate::ledger;
use crate::signing::KeyManager;
use crate::store::{Store, StoreChange};
use crate::vault::load_master_key;

/// The largest request head (request line and headers) a connection may send.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long a client may take to send a request head: from when the connection opens, and on a kept-alive one
/// from the end of the previous response (so it also closes idle connections).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the TLS certificate and key files are read again (a renewal is served without a restart).
const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(60);
/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// What a connection may cost, on the main listener and on the monitoring one.
fn limits(settings: &Settings) -> portcullis_http::Limits {
    portcullis_http::Limits {
        header_timeout: HEADER_TIMEOUT,
        max_header_bytes: MAX_HEADER_BYTES,
        drain_timeout: DRAIN_TIMEOUT,
        max_connections: settings.max_connections,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database {url}: {why}")]
    Store { url: String, why: String },
    #[error("{0}")]
    MasterKey(String),
    #[error("signing keys: {0}")]
    Keys(String),
    #[error("cannot listen on {addr}: {why}")]
    Listen { addr: SocketAddr, why: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Risk(String),
}

/// Opens the store the settings name (`sqlite://` or `postgres://`), with their pool options.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, StartError> {
    crate::store::open(&settings.database_url, &settings.database_pool)
        .await
        .map_err(|e| StartError::Store { url: redacted_url(&settings.database_url), why: e.to_string() })
}

/// A database URL fit for a log or an error message: any password replaced by `***`.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => url.to_owned(),
    }
}

/// The process-wide Prometheus recorder (installed once; later servers in the same process share it).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be incomplete");
            }
            // Histogram samples are kept until drained, which a scrape does; without a scraper, memory would
            // grow by every request. The upkeep drains them on its own.
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                upkeep.run_upkeep();
            });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the metrics upkeep; histogram samples wait for /metrics");
            }
            handle
        })
        .clone()
}

/// A server that is running.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when not on `addr` (`metrics_listen`).
    pub metrics_addr: Option<SocketAddr>,
    pub authority: Arc<Authority>,
    pub tls: bool,
    /// Finishes when the server has drained after shutdown.
    pub task: JoinHandle<()>,
}

/// Everything built from the configuration, before listening.
pub async fn build(settings: &Settings, clock: Arc<dyn Clock>) -> Result<(Arc<Authority>, Vec<String>), StartError> {
    let mut notes = Vec::new();
    let store = open_store(settings).await?;
    let (master, warning) = load_master_key(&settings.master_key).map_err(|e| StartError::MasterKey(e.to_string()))?;
    notes.extend(warning);
    let secrets = DerivedSecrets::from_master(&master).map_err(|e| StartError::MasterKey(e.to_string()))?;
    let keys = KeyManager::new(Arc::clone(&store), master, settings.key_rules, settings.signing_alg);
    let changes = keys.start(clock.now().as_secs()).await.map_err(|e| StartError::Keys(e.to_string()))?;
    for c in changes {
        notes.push(format!("signing key {} {}", c.kid, c.change));
    }
    let rules = Rules::from_settings(settings);
    let passwords = PasswordPool::new(PasswordPool::cores(), 64 * PasswordPool::cores(), rules.password_cost);
    let audit = Audit::start(Arc::clone(&store), settings.audit_head_interval.is_some());
    let risk = match &settings.risk {
        Some(r) => Some(Arc::new(crate::risk::RiskService::new(r, Arc::clone(&store)).map_err(StartError::Risk)?)),
        None => None,
    };
    let mut authority = Authority::new(store, keys, audit, clock, passwords, rules, secrets);
    if let Some(risk) = risk {
        authority = authority.with_risk(risk);
    }
    let now = authority.now().as_secs();
    authority
        .revocations
        .sync(authority.store.as_ref(), now)
        .await
        .map_err(|e| StartError::Store { url: redacted_url(&settings.database_url), why: e.to_string() })?;
    Ok((Arc::new(authority), notes))
}

/// How often the risk engine's profiles are written back to the store.
const RISK_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// Starts serving; `shutdown` resolves when the server should stop.
pub async fn start(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(Running, Vec<String>), StartError> {
    let (authority, mut notes) = build(settings, clock).await?;
    // A descriptor per connection, per database connection, and some for files, logs and the feed.
    let descriptors = settings.max_connections as u64 + u64::from(settings.database_pool.max_connections) + 256;
    notes.extend(portcullis_http::make_room_for_open_files(descriptors));
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| StartError::Listen { addr: settings.listen, why: e.to_string() })?;
    let addr = listener.local_addr().map_err(|e| StartError::Listen { addr: settings.listen, why: e.to_string() })?;
    let tls = settings.tls.as_ref().map(|(cert, key)| Tls::load(cert, key, &["h2", "http/1.1"])).transpose();
    let tls = tls.map_err(|e| StartError::Tls(e.to_string()))?;
    let login_limit = settings.login_rate.map(|(per_second, burst)| LoginRateLimit { per_second, burst });
    let (stop_polls, stopping) = tokio::sync::watch::channel(false);
    let state = AppState::new(Arc::clone(&authority), metrics_handle(), login_limit, stopping)
        .with_trusted_proxies(settings.trusted_proxies.clone());
    let background = spawn_background(state.clone());
    if let Some(interval) = settings.audit_head_interval {
        spawn_ledger(Arc::clone(&state.authority), interval);
    }
    if let Some(risk) = &state.authority.risk {
        crate::risk::spawn_flush(Arc::clone(risk), Arc::clone(&state.authority.clock), RISK_FLUSH_INTERVAL);
    }
    let metrics_addr = match settings.metrics_listen {
        None => None,
        Some(at) => {
            let listener =
                TcpListener::bind(at).await.map_err(|e| StartError::Listen { addr: at, why: e.to_string() })?;
            let bound = listener.local_addr().map_err(|e| StartError::Listen { addr: at, why: e.to_string() })?;
            let mut stopping = state.stopping.clone();
            let stop = async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            };
            let ops = http::ops_router(state.clone());
            let limits = portcullis_http::Limits { max_connections: 64, ..limits(settings) };
            tokio::spawn(portcullis_http::serve(listener, ops, limits, stop, |stream| async move { Some(stream) }));
            Some(bound)
        }
    };
    let router = http::router(state, metrics_addr.is_none());
    let is_tls = tls.is_some();
    let limits = limits(settings);
    let finishing = Arc::clone(&authority);
    let task = tokio::spawn(async move {
        serve(listener, router, tls, limits, shutdown, stop_polls).await;
        background.abort();
        // What the risk engine learnt since its last write is kept.
        if let Some(risk) = &finishing.risk {
            if let Err(e) = risk.flush(finishing.now().as_secs()).await {
                tracing::warn!(error = %e, "risk: profiles learnt in the last seconds were not stored");
            }
        }
    });
    Ok((Running { addr, metrics_addr, authority, tls: is_tls, task }, notes))
}

async fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Tls>,
    limits: portcullis_http::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    stop_polls: tokio::sync::watch::Sender<bool>,
) {
    // Long polls of /events end first, so that draining does not wait for them.
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: draining connections");
        stop_polls.send_replace(true);
    };
    match tls {
        None => portcullis_http::serve(listener, router, limits, shutdown, |stream| async move { Some(stream) }).await,
        Some(tls) => {
            // A renewed certificate is served without a restart; the watch ends when serving does.
            let _watch = tls.watch(TLS_RELOAD_INTERVAL);
            portcullis_http::serve_tls(listener, router, limits, shutdown, &tls).await;
        }
    }
}

/// Key schedule and revocation sync every second (cheap reads), purge every ten minutes. Changes another
/// instance announces (PostgreSQL `NOTIFY`) are applied as they arrive; the one-second sync covers anything a
/// dropped notification connection missed.
fn spawn_background(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let authority = Arc::clone(&state.authority);
        let mut changes = authority.store.changes();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u64 = 0;
        loop {
            let change = tokio::select! {
                _ = tick.tick() => None,
                change = next_change(&mut changes) => Some(change),
            };
            let now = authority.now().as_secs();
            if let Some(change) = change {
                apply_change(&authority, change, now).await;
                continue;
            }
            n += 1;
            if let Err(e) = authority.revocations.sync(authority.store.as_ref(), now).await {
                tracing::warn!(error = %e, "revocation sync failed; will retry");
            }
            if n % 5 == 0 {
                match authority.keys.maintain(now).await {
                    Ok(changes) => {
                        for c in changes {
                            tracing::info!(kid = %c.kid, change = c.change, "signing key lifecycle");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "key maintenance failed; will retry"),
                }
            }
            if n % 600 == 0 {
                match authority.store.purge_expired(now, &authority.rules.refresh).await {
                    Ok(removed) => tracing::debug!(removed, "purged expired records"),
                    Err(e) => tracing::warn!(error = %e, "purge failed; will retry"),
                }
                state.shrink_limiters();
            }
        }
    })
}

/// The audit ledger's background step: every second, events older than two seconds that the audit writer did not
/// add to the tree are added (a batch per transaction, off the request path); every `head_interval` seconds, if
/// the tree grew, a new head is signed. Any instance may do
/// either: growth is compare-and-set on the tree size, and heads of one size are kept once.
fn spawn_ledger(authority: Arc<Authority>, head_interval: u64) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_head = 0i64;
        loop {
            tick.tick().await;
            let store = authority.store.as_ref();
            // Events of the last two seconds are the audit writer's to add (it flushes every second); this step
            // adds the rest: events written by the CLI, on PostgreSQL, or dropped by a busy writer.
            if let Err(e) = ledger::extend_until(store, authority.now().as_secs() - 2).await {
                metrics::counter!("portcullis_ledger_errors_total").increment(1);
                tracing::error!(error = %e, "audit ledger: could not add events to the tree; will retry");
                continue;
            }
            let now = authority.now();
            if now.as_secs() - last_head >= head_interval as i64 {
                let material = authority.keys.ring().current();
                match ledger::sign_head(store, &material, &authority.rules.issuer, now).await {
                    Ok(_) => last_head = now.as_secs(),
                    Err(e) => {
                        metrics::counter!("portcullis_ledger_errors_total").increment(1);
                        tracing::warn!(error = %e, "audit ledger: could not sign a tree head; will retry");
                    }
                }
            }
        }
    });
}

/// The next announced change; never resolves when the store announces none.
async fn next_change(changes: &mut Option<tokio::sync::broadcast::Receiver<StoreChange>>) -> StoreChange {
    use tokio::sync::broadcast::error::RecvError;
    let Some(rx) = changes else { return std::future::pending().await };
    match rx.recv().await {
        Ok(change) => change,
        Err(RecvError::Lagged(_)) => StoreChange::Resync,
        Err(RecvError::Closed) => {
            *changes = None;
            std::future::pending().await
        }
    }
}

async fn apply_change(authority: &Authority, change: StoreChange, now: i64) {
    if matches!(change, StoreChange::Revocation | StoreChange::Resync) {
        if let Err(e) = authority.revocations.sync(authority.store.as_ref(), now).await {
            tracing::warn!(error = %e, "revocation sync failed; will retry");
        }
    }
    if matches!(change, StoreChange::Keys | StoreChange::Resync) {
        if let Err(e) = authority.keys.reload().await {
            tracing::warn!(error = %e, "key reload failed; will retry");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn database_passwords_never_reach_a_log_line() {
        assert_eq!(redacted_url("postgres://app:s3cret@db:5432/auth"), "postgres://app:***@db:5432/auth");
        assert_eq!(
            redacted_url("postgres://app:p@ss@db/auth?sslmode=require"),
            "postgres://app:***@db/auth?sslmode=require"
        );
        assert_eq!(redacted_url("postgres://app@db/auth"), "postgres://app@db/auth");
        assert_eq!(
            redacted_url("sqlite://./portcullis-data/portcullis.db"),
            "sqlite://./portcullis-data/portcullis.db"
        );
    }
}
