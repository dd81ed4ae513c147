//! Several server instances on one PostgreSQL database, and a guard in front: they behave as one server.
//! Needs `PORTCULLIS_TEST_POSTGRES_URL` (`.ci/run` sets it); without it the tests say they were skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use portcullis_jose::KeySet;
use portcullis_server::clock::{Clock, ShiftedClock};
use portcullis_server::config::Config;
use portcullis_server::keys::KeyState;
use portcullis_server::ledger;
use portcullis_server::model::TokenDelivery;
use portcullis_server::signing::KeyError;
use portcullis_server::store::postgres::PgStore;
use serde_json::Value;

use super::{free_port, s, start_with, temp_dir, Server};

pub const POSTGRES_URL_VAR: &str = "PORTCULLIS_TEST_POSTGRES_URL";

/// A fresh database on the test server, or `None` (and a note) when no server is configured.
pub async fn scratch_database(name: &str) -> Option<String> {
    let Ok(url) = std::env::var(POSTGRES_URL_VAR) else {
        eprintln!("SKIPPED: {POSTGRES_URL_VAR} is not set; the PostgreSQL test {name} did not run");
        return None;
    };
    let db = format!("portcullis_it_{name}_{}", std::process::id());
    Some(PgStore::scratch_database(&url, &db).await.unwrap())
}

/// The configuration of one instance of a cluster: the shared database, master key and issuer.
pub fn instance_config(database_url: &str, issuer: &str) -> Config {
    let master = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode((1..=32u8).collect::<Vec<u8>>());
    Config {
        database_url: Some(database_url.to_owned()),
        master_key: Some(master),
        issuer: Some(issuer.to_owned()),
        login_rate_per_second: 0,
        ..Config::default()
    }
}

/// `n` instances started at once on one database, sharing one clock and one issuer URL (the first's).
async fn cluster(name: &str, database_url: &str, n: usize) -> Vec<Server> {
    let clock = Arc::new(ShiftedClock::default());
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let issuer = format!("http://127.0.0.1:{}", ports[0]);
    let starts = ports.iter().enumerate().map(|(i, port)| {
        let config = instance_config(database_url, &issuer);
        start_with(temp_dir(&format!("{name}-{i}")), Arc::clone(&clock), *port, config)
    });
    futures_join_all(starts).await
}

async fn futures_join_all<F: std::future::Future<Output = Server> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<Server> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut servers = Vec::new();
    for h in handles {
        servers.push(h.await.unwrap());
    }
    servers
}

async fn jwks_kids(srv: &Server) -> Vec<String> {
    let doc: Value = srv.http.get(format!("{}/jwks.json", srv.base)).send().await.unwrap().json().await.unwrap();
    let mut kids: Vec<String> =
        doc["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
    kids.sort();
    kids
}

/// Polls `done` every 20 ms until it holds, failing after `limit`.
async fn within<F: std::future::Future<Output = bool>>(limit: Duration, what: &str, mut done: impl FnMut() -> F) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_postgres_behave_as_one_server() {
    use portcullis_guard::{Guard, GuardConfig, Requirement};
    let Some(url) = scratch_database("cluster").await else { return };
    let servers = cluster("cluster", &url, 3).await;
    let (a, b, c) = (&servers[0], &servers[1], &servers[2]);

    // Started together on an empty database, they made one signing key between them, and publish it alike.
    let kids = jwks_kids(a).await;
    assert_eq!(kids.len(), 1, "{kids:?}");
    assert_eq!(jwks_kids(b).await, kids);
    assert_eq!(jwks_kids(c).await, kids);

    let secret = a.service_client("svc", &["read"]).await;
    let feed_secret = a.service_client("gw", &["portcullis:events"]).await;
    let introspector = b.service_client("rs", &["read"]).await;
    let config = GuardConfig { events: Some(("gw".into(), feed_secret)), ..GuardConfig::new(&a.base, "api") };
    let guard = Guard::start(config).await.unwrap();
    let mut tokens = Vec::new();
    for srv in &servers {
        let (status, body) =
            srv.form("/oauth2/token", Some(("svc", &secret)), &[("grant_type", "client_credentials")]).await;
        assert_eq!(status, 200, "{body}");
        let token = s(&body, "access_token");
        let who = guard.authorize(Some(&format!("Bearer {token}")), &Requirement::scopes(["read"])).await;
        assert!(who.is_ok(), "a token from {} verifies at the guard: {who:?}", srv.base);
        tokens.push(token);
    }

    // A revocation made at B is seen by introspection at A and C, and by the guard (which follows A's feed),
    // within a second.
    let revoked = tokens[0].clone();
    let started = Instant::now();
    let (status, _) = b.form("/oauth2/revoke", Some(("svc", &secret)), &[("token", &revoked)]).await;
    assert_eq!(status, 200);
    for srv in [a, c] {
        within(Duration::from_secs(1).saturating_sub(started.elapsed()), "introspection sees the revocation", || {
            let revoked = revoked.clone();
            let introspector = introspector.clone();
            async move {
                let (_, intro) =
                    srv.form("/oauth2/introspect", Some(("rs", &introspector)), &[("token", &revoked)]).await;
                intro["active"] == false
            }
        })
        .await;
    }
    within(Duration::from_secs(1).saturating_sub(started.elapsed()), "the guard refuses the revoked token", || {
        let result = guard.verify(&revoked);
        async move { result.is_err() }
    })
    .await;
    assert!(guard.verify(&tokens[1]).is_ok(), "other tokens live");

    // Concurrent refreshes of one token, spread over the instances: exactly one succeeds.
    a.first_party("web", TokenDelivery::Body).await;
    a.user("bob", "correct horse battery", &[("staff", "read")]).await;
    let (status, login) = c.login("web", "bob", "correct horse battery").await;
    assert_eq!(status, 200, "{login}");
    let token = s(&login, "refresh_token");
    let mut tasks = Vec::new();
    for i in 0..9 {
        let srv = &servers[i % 3];
        let (http, url, token) = (srv.http.clone(), format!("{}/auth/refresh", srv.base), token.clone());
        tasks.push(tokio::spawn(async move {
            let body = serde_json::json!({"refresh_token": token, "client_id": "web"});
            http.post(url).json(&body).send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 400), "{statuses:?}");

    // Used at A after its successor was issued at B, past the grace period: reuse, and the family dies.
    let (_, second) = c.login("web", "bob", "correct horse battery").await;
    let r1 = s(&second, "refresh_token");
    let refresh = |srv: &Server, token: String| {
        let (http, url) = (srv.http.clone(), format!("{}/auth/refresh", srv.base));
        async move {
            let body = serde_json::json!({"refresh_token": token, "client_id": "web"});
            let resp = http.post(url).json(&body).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, rotated) = refresh(b, r1.clone()).await;
    assert_eq!(status, 200);
    a.clock.advance(30);
    assert_eq!(refresh(a, r1).await.0, 400, "reuse");
    assert_eq!(refresh(c, s(&rotated, "refresh_token")).await.0, 400, "the family was revoked");

    // A rotation started on two instances at once makes one new key, which every instance publishes.
    let now = a.clock.now().as_secs();
    let (ra, rb) = tokio::join!(a.running.authority.keys.rotate(now), b.running.authority.keys.rotate(now));
    let (won, lost) = match (ra, rb) {
        (Ok(kid), Err(e)) | (Err(e), Ok(kid)) => (kid, e),
        other => panic!("exactly one rotation should start: {other:?}"),
    };
    assert!(matches!(lost, KeyError::RotationPending(ref kid) if *kid == won), "{lost}");
    let keys = a.running.authority.store.list_keys().await.unwrap();
    assert_eq!(keys.iter().filter(|k| k.record.state == KeyState::Pending).count(), 1);
    for srv in &servers {
        within(Duration::from_secs(1), "every instance publishes the new key", || async {
            jwks_kids(srv).await.contains(&won)
        })
        .await;
    }

    // The audit ledger: every instance grows the one tree at once; the result is one gapless log that verifies.
    let (ga, gb, gc) = tokio::join!(
        ledger::extend(a.running.authority.store.as_ref()),
        ledger::extend(b.running.authority.store.as_ref()),
        ledger::extend(c.running.authority.store.as_ref()),
    );
    let size = ga.unwrap().max(gb.unwrap()).max(gc.unwrap());
    let store = a.running.authority.store.as_ref();
    let material = b.running.authority.keys.ring().current();
    let issuer = &a.running.authority.rules.issuer;
    let head = ledger::sign_head(store, &material, issuer, a.clock.now()).await.unwrap();
    assert!(head.tree_size >= size && size > 10, "{} events in the tree", head.tree_size);
    let keys = KeySet::from_jwks(&a.get_json("/jwks.json").await.to_string(), &[]).unwrap();
    let report = ledger::verify_store(store, &keys, issuer, a.clock.now()).await.unwrap();
    assert_eq!(report.verified.head_size, head.tree_size);
    for srv in servers {
        srv.stop().await;
    }
}

/// The PostgreSQL cluster serving the tests, as `pg_ctlcluster` names it (`15 main`), from `pg_lsclusters`.
fn postgres_cluster() -> (String, String) {
    let out = std::process::Command::new("pg_lsclusters").arg("--no-header").output().expect("pg_lsclusters");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains(" 5432 ")).unwrap_or_else(|| panic!("no cluster on 5432: {text}"));
    let mut words = line.split_whitespace();
    (words.next().unwrap().to_owned(), words.next().unwrap().to_owned())
}

/// Runs `pg_ctlcluster VERSION NAME ACTION` (restart, stop, start) and says whether it worked.
async fn pg_ctlcluster(version: &str, name: &str, action: &str) -> bool {
    let args = [version.to_owned(), name.to_owned(), action.to_owned()];
    tokio::task::spawn_blocking(move || std::process::Command::new("pg_ctlcluster").args(&args).status())
        .await
        .unwrap()
        .is_ok_and(|s| s.success())
}

/// Starts the cluster again when dropped, so that a failing test never leaves the shared server stopped.
struct Started(String, String);
impl Drop for Started {
    fn drop(&mut self) {
        let _ = std::process::Command::new("pg_ctlcluster").args([&self.0, &self.1, "start"]).status();
    }
}

/// What one refresh chain saw: its current token, and whether the last attempt's outcome is unknown (a 503
/// may come after the database committed, so a refusal right after one is not a loss).
struct Chain {
    token: String,
    after_unavailable: bool,
}

/// Restarts the shared PostgreSQL server under load, then stops it for a few seconds: requests fail with 503
/// (never a 500 or a hang), `/readyz` says not ready, the server recovers by itself, and nothing it had
/// committed is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_proof_is_single_use_across_instances_and_every_instance_takes_every_nonce() {
    use portcullis_jose::{Algorithm, SigningKey};
    let Some(url) = scratch_database("dpop").await else { return };
    let clock = Arc::new(ShiftedClock::default());
    let ports = [free_port(), free_port()];
    let issuer = format!("http://127.0.0.1:{}", ports[0]);
    let mut servers = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let config = Config { dpop_require_nonce: true, ..instance_config(&url, &issuer) };
        servers.push(start_with(temp_dir(&format!("dpop-{i}")), Arc::clone(&clock), *port, config).await);
    }
    let (a, b) = (&servers[0], &servers[1]);
    let secret = a.service_client("svc", &["read"]).await;
    let auth = Some(("svc", secret.as_str()));
    let cc = [("grant_type", "client_credentials")];
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    // Both instances answer at the issuer's token endpoint URL (as behind a load balancer).
    let proof = |nonce: &str| {
        let htu = format!("{issuer}/oauth2/token");
        let extra = format!(r#","nonce":"{nonce}""#);
        super::dpop::proof_with(&key, &super::dpop::jti(), "POST", &htu, clock.now().as_secs(), &extra)
    };
    let (status, _, nonce) = a.dpop_form(&[&proof("")], auth, &cc).await;
    assert_eq!(status, 400);
    let nonce = nonce.unwrap();
    let first = proof(&nonce);
    let (status, body, _) = b.dpop_form(&[&first], auth, &cc).await;
    assert_eq!((status, body["token_type"].as_str()), (200, Some("DPoP")), "B takes A's nonce: {body}");
    let (status, body, _) = a.dpop_form(&[&first], auth, &cc).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_dpop_proof")), "A refuses B's proof again");
    for srv in servers {
        srv.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the shared PostgreSQL server: scripts/test runs it alone, after the other tests"]
async fn postgres_restart_under_load_loses_nothing_and_recovers() {
    let Some(url) = scratch_database("restart").await else { return };
    let issuer = format!("http://127.0.0.1:{}", free_port());
    let port: u16 = issuer.rsplit(':').next().unwrap().parse().unwrap();
    let config = Config { database_statement_timeout: 2, ..instance_config(&url, &issuer) };
    let srv = Arc::new(start_with(temp_dir("restart"), Arc::new(ShiftedClock::default()), port, config).await);
    let secret = srv.service_client("svc", &["read"]).await;
    srv.first_party("web", TokenDelivery::Body).await;
    srv.user("bob", "correct horse battery", &[("staff", "read")]).await;
    let mut chains = Vec::new();
    for _ in 0..4 {
        let (status, login) = srv.login("web", "bob", "correct horse battery").await;
        assert_eq!(status, 200, "{login}");
        chains.push(Chain { token: s(&login, "refresh_token"), after_unavailable: false });
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<u16, u32>::new()));
    let mut load = Vec::new();
    let ambiguous = Arc::new(std::sync::Mutex::new(0u32));
    for mut chain in chains {
        let (srv, stop, statuses) = (Arc::clone(&srv), Arc::clone(&stop), Arc::clone(&statuses));
        let ambiguous = Arc::clone(&ambiguous);
        load.push(tokio::spawn(async move {
            let url = format!("{}/auth/refresh", srv.base);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || chain.after_unavailable {
                let body = serde_json::json!({"refresh_token": chain.token, "client_id": "web"});
                let resp = srv.http.post(&url).json(&body).timeout(Duration::from_secs(20)).send().await.unwrap();
                let status = resp.status().as_u16();
                if !(status == 400 && chain.after_unavailable) {
                    *statuses.lock().unwrap().entry(status).or_default() += 1;
                }
                match status {
                    200 => {
                        chain.token = s(&resp.json().await.unwrap(), "refresh_token");
                        chain.after_unavailable = false;
                    }
                    503 => chain.after_unavailable = true,
                    // The 503 came after the rotation committed: the client's answer was lost, not the data.
                    // Like a real client, log in again.
                    400 if chain.after_unavailable => {
                        *ambiguous.lock().unwrap() += 1;
                        let (status, login) = srv.login("web", "bob", "correct horse battery").await;
                        if status == 200 {
                            chain = Chain { token: s(&login, "refresh_token"), after_unavailable: false };
                        }
                    }
                    other => panic!("refresh answered {other} after a committed rotation: a write was lost"),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Some(chain)
        }));
    }
    {
        let (srv, stop, statuses, secret) =
            (Arc::clone(&srv), Arc::clone(&stop), Arc::clone(&statuses), secret.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (status, _) =
                    srv.form("/oauth2/token", Some(("svc", &secret)), &[("grant_type", "client_credentials")]).await;
                *statuses.lock().unwrap().entry(status).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            None
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A restart under load.
    let (version, name) = postgres_cluster();
    let _restart_on_panic = Started(version.clone(), name.clone());
    assert!(pg_ctlcluster(&version, &name, "restart").await, "pg_ctlcluster restart failed");
    let ready = |srv: Arc<Server>| async move {
        let started = Instant::now();
        let status = srv.http.get(format!("{}/readyz", srv.base)).send().await.unwrap().status().as_u16();
        assert!(started.elapsed() < Duration::from_millis(1500), "/readyz took {:?}", started.elapsed());
        status
    };
    within(Duration::from_secs(30), "ready after the restart", || {
        let srv = Arc::clone(&srv);
        async move { ready(srv).await == 200 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The database down for a while: quick 503s, and /readyz says so.
    assert!(pg_ctlcluster(&version, &name, "stop").await, "pg_ctlcluster stop failed");
    let down_at = Instant::now();
    let mut not_ready = 0;
    while down_at.elapsed() < Duration::from_secs(4) {
        if ready(Arc::clone(&srv)).await == 503 {
            not_ready += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let down = statuses.lock().unwrap().get(&503).copied().unwrap_or(0);
    assert!(pg_ctlcluster(&version, &name, "start").await, "pg_ctlcluster start failed");
    assert!(not_ready > 0, "/readyz never said not ready while the database was down");
    assert!(down > 0, "no request was refused with 503 while the database was down");
    within(Duration::from_secs(30), "ready after the database returned", || {
        let srv = Arc::clone(&srv);
        async move { ready(srv).await == 200 }
    })
    .await;
    // Let the load run on the recovered database, then stop it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut survivors = Vec::new();
    for task in load {
        if let Some(chain) = task.await.unwrap() {
            survivors.push(chain);
        }
    }
    let seen = statuses.lock().unwrap().clone();
    let ambiguous = *ambiguous.lock().unwrap();
    eprintln!("statuses during the restart: {seen:?}; refusals after an ambiguous 503 (login again): {ambiguous}");
    assert!(seen.keys().all(|s| *s == 200 || *s == 503), "only successes and 503s: {seen:?}");
    // Every token the server handed out as committed still works after the restart.
    for chain in survivors {
        let body = serde_json::json!({"refresh_token": chain.token, "client_id": "web"});
        let resp = srv.http.post(format!("{}/auth/refresh", srv.base)).json(&body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }
    let (status, _) = srv.form("/oauth2/token", Some(("svc", &secret)), &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200, "the server recovered without a restart");
    Arc::into_inner(srv).unwrap().stop().await;
}
