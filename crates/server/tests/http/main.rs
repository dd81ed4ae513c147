//! End-to-end tests: the real server on a loopback port with a temporary SQLite file, driven over HTTP.
//! Time moves with a shifted clock, so lifetimes, lockouts and key rotations are tested without sleeping.

// Test helpers fail loudly: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::sync::Arc;

use portcullis_jose::{jwt, Algorithm, KeySet, Policy, AT_JWT};
use portcullis_server::admin::{Admin, ClientKind, NewClient};
use portcullis_server::clock::{Clock, ShiftedClock};
use portcullis_server::config::Config;
use portcullis_server::model::{GrantType, TokenDelivery};
use portcullis_server::serve::{self, Running};
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;
use zeroize::Zeroizing;

struct Server {
    base: String,
    http: reqwest::Client,
    clock: Arc<ShiftedClock>,
    running: Running,
    admin: Admin,
    stop: Option<oneshot::Sender<()>>,
    dir: TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An empty directory of the test's own, removed when the test lets go of it (also when the test fails).
fn temp_dir(name: &str) -> TempDir {
    tempfile::Builder::new().prefix(&format!("portcullis-it-{name}-")).tempdir().unwrap()
}

async fn start_in(dir: TempDir, clock: Arc<ShiftedClock>, port: u16) -> Server {
    start_with(dir, clock, port, Config { login_rate_per_second: 0, ..Config::default() }).await
}

async fn start_with(dir: TempDir, clock: Arc<ShiftedClock>, port: u16, base: Config) -> Server {
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = Config { listen: format!("127.0.0.1:{port}"), data_dir: dir.path().to_path_buf(), ..base };
    let settings = config.validate().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let (running, _notes) = serve::start(&settings, clock.clone(), async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let admin = Admin::new(Arc::clone(&running.authority.store), clock.clone());
    Server {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
        clock,
        running,
        admin,
        stop: Some(stop),
        dir,
    }
}

async fn start(name: &str) -> Server {
    start_in(temp_dir(name), Arc::new(ShiftedClock::default()), free_port()).await
}

impl Server {
    async fn stop(mut self) -> (TempDir, Arc<ShiftedClock>, u16) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.running.task.await;
        (self.dir, self.clock, self.running.addr.port())
    }

    async fn form(&self, path: &str, auth: Option<(&str, &str)>, params: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).form(params);
        if let Some((id, secret)) = auth {
            req = req.basic_auth(id, Some(secret));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A `client_credentials` access token for `scope`.
    async fn client_token(&self, id: &str, secret: &str, scope: &str) -> String {
        let form = [("grant_type", "client_credentials"), ("scope", scope)];
        let (_, body) = self.form("/oauth2/token", Some((id, secret)), &form).await;
        s(&body, "access_token")
    }

    async fn json(&self, path: &str, body: Value) -> (u16, Value, Vec<String>) {
        let resp = self.http.post(format!("{}{path}", self.base)).json(&body).send().await.unwrap();
        let status = resp.status().as_u16();
        let cookies = resp.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        (status, resp.json().await.unwrap_or(Value::Null), cookies)
    }

    /// A JSON document served at `path` (discovery, say).
    async fn get_json(&self, path: &str) -> Value {
        self.http.get(format!("{}{path}", self.base)).send().await.unwrap().json().await.unwrap()
    }

    async fn jwks(&self) -> KeySet {
        let text = self.http.get(format!("{}/jwks.json", self.base)).send().await.unwrap().text().await.unwrap();
        KeySet::from_jwks(&text, &[]).unwrap()
    }

    /// A `client_credentials` token of a new service client `id` holding `scope` alone.
    async fn service_token(&self, id: &str, scope: &str) -> String {
        let secret = self.service_client(id, &[scope]).await;
        self.client_token(id, &secret, scope).await
    }

    async fn service_client(&self, id: &str, scopes: &[&str]) -> String {
        let (_, secret) = self
            .admin
            .add_client(NewClient {
                id: id.into(),
                credential: ClientKind::GenerateSecret,
                grants: vec![GrantType::ClientCredentials],
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                audiences: vec!["api".into()],
                ..NewClient::default()
            })
            .await
            .unwrap();
        secret.unwrap().expose().to_owned()
    }

    async fn first_party(&self, id: &str, delivery: TokenDelivery) {
        self.admin
            .add_client(NewClient {
                id: id.into(),
                credential: ClientKind::Public,
                grants: vec![GrantType::Password, GrantType::RefreshToken],
                scopes: vec!["read write admin".into()],
                audiences: vec!["api".into()],
                first_party: true,
                token_delivery: delivery,
                ..NewClient::default()
            })
            .await
            .unwrap();
    }

    async fn user(&self, name: &str, password: &str, roles: &[(&str, &str)]) {
        for (role, scopes) in roles {
            let _ = self.admin.add_role(role, &[scopes.to_string()]).await;
        }
        let roles: Vec<String> = roles.iter().map(|(r, _)| r.to_string()).collect();
        self.admin.add_user(name, Zeroizing::new(password.into()), &roles).await.unwrap();
    }

    fn policy(&self, aud: &str) -> Policy {
        Policy::access_token(&self.base, aud).unwrap()
    }

    async fn login(&self, client: &str, user: &str, password: &str) -> (u16, Value) {
        let (status, body, _) = self
            .json("/auth/login", serde_json::json!({"username": user, "password": password, "client_id": client}))
            .await;
        (status, body)
    }
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_tokens_verify_offline_and_errors_follow_rfc_6749() {
    let srv = start("cc").await;
    let secret = srv.service_client("svc", &["read", "write"]).await;
    let (status, body) = srv
        .form("/oauth2/token", Some(("svc", &secret)), &[("grant_type", "client_credentials"), ("scope", "read")])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "read");
    assert!(body.get("refresh_token").is_none(), "RFC 6749 §4.4.3: no refresh token");
    let keys = srv.jwks().await;
    let verified = jwt::verify(&s(&body, "access_token"), &keys, &srv.policy("api"), srv.clock.now()).unwrap();
    assert_eq!(verified.header.typ().as_deref(), Some(AT_JWT));
    assert_eq!(verified.header.algorithm(), Algorithm::ES256);
    assert_eq!(verified.claims.sub().as_deref(), Some("svc"));
    assert_eq!(verified.claims.client_id().as_deref(), Some("svc"));

    // client_secret_post works too; no scope asked means every allowed scope.
    let (status, body) = srv
        .form(
            "/oauth2/token",
            None,
            &[("grant_type", "client_credentials"), ("client_id", "svc"), ("client_secret", &secret)],
        )
        .await;
    assert_eq!((status, s(&body, "scope").as_str()), (200, "read write"));

    let resp = srv
        .http
        .post(format!("{}/oauth2/token", srv.base))
        .basic_auth("svc", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Basic realm=\"portcullis\"");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    type Case<'a> = (Option<(&'a str, &'a str)>, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (Some(("nobody", "x")), vec![("grant_type", "client_credentials")], 401, "invalid_client"),
        (Some(("svc", &secret)), vec![("grant_type", "implicit")], 400, "unsupported_grant_type"),
        (Some(("svc", &secret)), vec![], 400, "invalid_request"),
        (
            Some(("svc", &secret)),
            vec![("grant_type", "password"), ("username", "a"), ("password", "b")],
            400,
            "unauthorized_client",
        ),
        (Some(("svc", &secret)), vec![("grant_type", "client_credentials"), ("scope", "admin")], 400, "invalid_scope"),
        (Some(("svc", &secret)), vec![("grant_type", "client_credentials"), ("scope", "a\"b")], 400, "invalid_scope"),
        (
            Some(("svc", &secret)),
            vec![("grant_type", "client_credentials"), ("resource", "https://evil")],
            400,
            "invalid_target",
        ),
        (
            Some(("svc", &secret)),
            vec![("grant_type", "client_credentials"), ("grant_type", "client_credentials")],
            400,
            "invalid_request",
        ),
        (None, vec![("grant_type", "client_credentials")], 401, "invalid_client"),
    ];
    for (auth, params, want_status, want_error) in cases {
        let (status, body) = srv.form("/oauth2/token", auth, &params).await;
        assert_eq!((status, s(&body, "error").as_str()), (want_status, want_error), "{params:?}: {body}");
    }
    // A disabled client is refused from the next second on (clients are cached for the current second).
    srv.admin.set_client_disabled("svc", true).await.unwrap();
    srv.clock.advance(1);
    let (status, body) =
        srv.form("/oauth2/token", Some(("svc", &secret)), &[("grant_type", "client_credentials")]).await;
    assert_eq!((status, s(&body, "error").as_str()), (401, "invalid_client"));
    srv.admin.set_client_disabled("svc", false).await.unwrap();
    srv.clock.advance(1);
    // JSON instead of a form is refused with the RFC error, not a framework message.
    let resp = srv.http.post(format!("{}/oauth2/token", srv.base)).json(&serde_json::json!({})).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // An oversized body is refused before it is read.
    let big = "x".repeat(100 * 1024);
    let resp =
        srv.http.post(format!("{}/oauth2/token", srv.base)).form(&[("grant_type", big.as_str())]).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_locks_out_and_never_reveals_whether_a_user_exists() {
    let srv = start("login").await;
    srv.first_party("web", TokenDelivery::Body).await;
    srv.user("alice", "correct horse battery", &[("staff", "read write")]).await;
    let (status, body) = srv.login("web", "alice", "correct horse battery").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "read write", "client ∩ roles");
    let keys = srv.jwks().await;
    let claims = jwt::verify(&s(&body, "access_token"), &keys, &srv.policy("api"), srv.clock.now()).unwrap().claims;
    assert_eq!(claims.get("roles").unwrap().text(), r#"["staff"]"#);
    assert!(claims.string("sid").is_some());

    let timed = |user: &'static str| {
        let srv = &srv;
        async move {
            let t = std::time::Instant::now();
            let (_, body) = srv.login("web", user, "wrong password").await;
            (body, t.elapsed())
        }
    };
    let (unknown, unknown_time) = timed("mallory").await;
    let (wrong, wrong_time) = timed("alice").await;
    assert_eq!(unknown, wrong, "unknown user and wrong password answer alike");
    // An unknown user costs a full Argon2id check too (a dummy hash), not a fast early return.
    assert!(unknown_time * 2 > wrong_time, "unknown {unknown_time:?} vs wrong password {wrong_time:?}");
    assert_eq!(wrong["error"], "invalid_grant");

    for _ in 0..5 {
        srv.login("web", "alice", "wrong password").await;
    }
    // Six failures: locked for 30 s, even with the right password, and the answer does not say so.
    let (status, body) = srv.login("web", "alice", "correct horse battery").await;
    assert_eq!((status, body.clone()), (400, wrong.clone()), "locked");
    srv.clock.advance(31);
    let (status, _) = srv.login("web", "alice", "correct horse battery").await;
    assert_eq!(status, 200, "the lock ends");

    // The password grant on the token endpoint shares the path.
    let (status, body) = srv
        .form(
            "/oauth2/token",
            None,
            &[
                ("grant_type", "password"),
                ("client_id", "web"),
                ("username", "alice"),
                ("password", "correct horse battery"),
                ("scope", "read"),
            ],
        )
        .await;
    assert_eq!((status, s(&body, "scope").as_str()), (200, "read"), "{body}");
    // A client that is not first-party cannot use /auth/login.
    srv.service_client("svc", &["read"]).await;
    let (status, body) = srv.login("svc", "alice", "correct horse battery").await;
    assert!(status == 400 || status == 401, "{status} {body}");
    let audit = srv.running.authority.store.audit_since(0, 1000).await.unwrap();
    for kind in ["token_issued", "login_failed", "lockout"] {
        assert!(audit.iter().any(|e| e.kind == kind), "audit has {kind}");
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_and_reuse_burns_the_family() {
    let srv = start("refresh").await;
    srv.first_party("web", TokenDelivery::Body).await;
    srv.user("bob", "correct horse battery", &[("staff", "read write")]).await;
    let (_, first) = srv.login("web", "bob", "correct horse battery").await;
    let r1 = s(&first, "refresh_token");
    let refresh = |token: String| {
        let srv = &srv;
        async move { srv.json("/auth/refresh", serde_json::json!({"refresh_token": token, "client_id": "web"})).await }
    };
    let (status, second, _) = refresh(r1.clone()).await;
    assert_eq!(status, 200, "{second}");
    let r2 = s(&second, "refresh_token");
    assert_ne!(r1, r2, "rotated");
    // Inside the grace period a duplicate is refused without harm.
    let (status, dup, _) = refresh(r1.clone()).await;
    assert_eq!((status, s(&dup, "error").as_str()), (400, "invalid_grant"));
    let (status, third, _) = refresh(r2.clone()).await;
    assert_eq!(status, 200, "the family still lives: {third}");
    let r3 = s(&third, "refresh_token");
    // After it, reuse of an old token revokes the family and its access tokens.
    srv.clock.advance(30);
    let (status, _, _) = refresh(r2.clone()).await;
    assert_eq!(status, 400);
    let (status, _, _) = refresh(r3.clone()).await;
    assert_eq!(status, 400, "the newest token died with its family");
    let secret = srv.service_client("rs", &["read"]).await;
    let (_, intro) =
        srv.form("/oauth2/introspect", Some(("rs", &secret)), &[("token", &s(&third, "access_token"))]).await;
    assert_eq!(intro, serde_json::json!({"active": false}), "the family's access token is revoked");
    let metrics = srv.http.get(format!("{}/metrics", srv.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("portcullis_refresh_reuse_total"), "{metrics}");

    // "Log out everywhere" from the CLI: every session and access token of the user dies; the server learns
    // it from the store (its background sync runs every second; here it is run at once).
    let (_, a) = srv.login("web", "bob", "correct horse battery").await;
    let (_, b) = srv.login("web", "bob", "correct horse battery").await;
    srv.admin.revoke_user("bob").await.unwrap();
    let authority = &srv.running.authority;
    authority.revocations.sync(authority.store.as_ref(), srv.clock.now().as_secs()).await.unwrap();
    for session in [&a, &b] {
        let (_, intro) =
            srv.form("/oauth2/introspect", Some(("rs", &secret)), &[("token", &s(session, "access_token"))]).await;
        assert_eq!(intro, serde_json::json!({"active": false}));
        let (status, _, _) = refresh(s(session, "refresh_token")).await;
        assert_eq!(status, 400);
    }
    srv.clock.advance(1);
    let (status, c) = srv.login("web", "bob", "correct horse battery").await;
    assert_eq!(status, 200, "a new login works after the revocation");
    let (_, intro) = srv.form("/oauth2/introspect", Some(("rs", &secret)), &[("token", &s(&c, "access_token"))]).await;
    assert_eq!(intro["active"], true, "tokens issued after the revocation live");

    // Concurrent refreshes with one token: exactly one wins.
    let (_, fresh) = srv.login("web", "bob", "correct horse battery").await;
    let token = s(&fresh, "refresh_token");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url, token) = (srv.http.clone(), format!("{}/auth/refresh", srv.base), token.clone());
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .json(&serde_json::json!({"refresh_token": token, "client_id": "web"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 1, "exactly one concurrent refresh succeeds");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_seen_by_introspection_and_the_event_feed() {
    let srv = start("revoke").await;
    let secret = srv.service_client("svc", &["read", "portcullis:events"]).await;
    let token = |scope: &'static str| srv.client_token("svc", &secret, scope);
    let at = token("read").await;
    let feed = token("portcullis:events").await;
    let (_, intro) = srv.form("/oauth2/introspect", Some(("svc", &secret)), &[("token", &at)]).await;
    assert_eq!(intro["active"], true);
    assert_eq!(intro["client_id"], "svc");
    assert_eq!(intro["token_type"], "Bearer");
    for junk in ["", "garbage", "a.b.c"] {
        let (status, intro) = srv.form("/oauth2/introspect", Some(("svc", &secret)), &[("token", junk)]).await;
        assert!(status == 200 && intro["active"] == false || status == 400, "{junk}: {status} {intro}");
    }
    // A long-poll waits for the revocation and delivers it as a signed SET.
    let poll = {
        let (http, url, feed) = (srv.http.clone(), format!("{}/events", srv.base), feed.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let resp = http
                .post(url)
                .bearer_auth(feed)
                .json(&serde_json::json!({"ack": ["0"], "maxEvents": 10}))
                .send()
                .await
                .unwrap();
            (resp.json::<Value>().await.unwrap(), started.elapsed())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, _) = srv
        .form("/oauth2/revoke", Some(("svc", &secret)), &[("token", &at), ("token_type_hint", "access_token")])
        .await;
    assert_eq!(status, 200);
    let (events, waited) = poll.await.unwrap();
    assert!(waited.as_secs_f64() < 2.0, "the feed answered {waited:?} after the revocation");
    let sets = events["sets"].as_object().unwrap();
    assert_eq!(sets.len(), 1, "{events}");
    let set = sets.values().next().unwrap().as_str().unwrap();
    let policy =
        Policy::builder().issuer(&srv.base).audience("svc").typ("secevent+jwt").danger_allow_no_exp().build().unwrap();
    let claims = jwt::verify(set, &srv.jwks().await, &policy, srv.clock.now()).unwrap().claims;
    let event = claims.get("events").unwrap().text().to_owned();
    assert!(event.contains("\"kind\":\"jti\""), "{event}");
    let (_, intro) = srv.form("/oauth2/introspect", Some(("svc", &secret)), &[("token", &at)]).await;
    assert_eq!(intro, serde_json::json!({"active": false}));
    // Without the events scope, or without a token, the feed refuses.
    let resp = srv.http.post(format!("{}/events", srv.base)).bearer_auth(token("read").await).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let resp = srv.http.post(format!("{}/events", srv.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // Someone else's token, or an unknown one, is "revoked" without effect (RFC 7009 §2.2).
    let (status, _) = srv.form("/oauth2/revoke", Some(("svc", &secret)), &[("token", "unknown")]).await;
    assert_eq!(status, 200);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_jwks_always_holds_the_signing_key_across_a_rotation() {
    let srv = start("rotate").await;
    let secret = srv.service_client("svc", &["read"]).await;
    let max_age: i64 = {
        let resp = srv.http.get(format!("{}/jwks.json", srv.base)).send().await.unwrap();
        let cc = resp.headers()["cache-control"].to_str().unwrap().to_owned();
        cc.rsplit('=').next().unwrap().parse().unwrap()
    };
    assert_eq!(max_age, 300);
    let mut caches: Vec<(i64, KeySet)> = Vec::new();
    let authority = Arc::clone(&srv.running.authority);
    let first_kid = authority.keys.ring().current().signer.as_ref().unwrap().key().kid().unwrap().to_owned();
    let rotated = authority.keys.rotate(srv.clock.now().as_secs()).await.unwrap();
    for _ in 0..16 {
        let now = srv.clock.now().as_secs();
        authority.keys.maintain(now).await.unwrap();
        caches.push((now, srv.jwks().await));
        let (_, body) =
            srv.form("/oauth2/token", Some(("svc", &secret)), &[("grant_type", "client_credentials")]).await;
        let token = s(&body, "access_token");
        for (cached_at, keys) in &caches {
            if now - cached_at < max_age {
                assert!(
                    jwt::verify(&token, keys, &srv.policy("api"), srv.clock.now()).is_ok(),
                    "a JWKS cached {}s ago cannot verify a fresh token",
                    now - cached_at
                );
            }
        }
        srv.clock.advance(60);
    }
    let current = authority.keys.ring().current().signer.as_ref().unwrap().key().kid().unwrap().to_owned();
    assert_eq!(current, rotated, "the new key signs after the pre-publication window");
    assert_ne!(current, first_kid);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_sessions_survive_a_restart() {
    let srv = start("restart").await;
    srv.first_party("web", TokenDelivery::Body).await;
    srv.user("carol", "correct horse battery", &[("staff", "read")]).await;
    let (_, body) = srv.login("web", "carol", "correct horse battery").await;
    let jwks_before = srv.jwks().await;
    let (dir, clock, port) = srv.stop().await;
    let srv = start_in(dir, clock, port).await;
    let claims = jwt::verify(&s(&body, "access_token"), &srv.jwks().await, &srv.policy("api"), srv.clock.now());
    assert!(claims.is_ok(), "the same key after restart");
    assert_eq!(srv.jwks().await.keys().len(), jwks_before.keys().len());
    let (status, _, _) = srv
        .json("/auth/refresh", serde_json::json!({"refresh_token": s(&body, "refresh_token"), "client_id": "web"}))
        .await;
    assert_eq!(status, 200, "the refresh token still works");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_clients_get_httponly_cookies_and_logout_clears_them() {
    let srv = start("cookie").await;
    srv.first_party("spa", TokenDelivery::Cookie).await;
    srv.user("dave", "correct horse battery", &[("staff", "read")]).await;
    let (status, body, cookies) = srv
        .json(
            "/auth/login",
            serde_json::json!({"username": "dave", "password": "correct horse battery", "client_id": "spa"}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none(), "{body}");
    let csrf = s(&body, "csrf_token");
    assert_eq!(csrf.len(), 22, "a CSRF token for the session: {body}");
    let named = |cookies: &[String], name: &str| {
        cookies.iter().find(|c| c.starts_with(&format!("{name}="))).cloned().unwrap_or_else(|| panic!("{name}"))
    };
    for name in ["portcullis_at", "portcullis_rt"] {
        let c = named(&cookies, name);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"), "{c}");
    }
    assert!(named(&cookies, "portcullis_rt").contains("Path=/auth;"), "the refresh cookie goes to /auth only");
    let csrf_cookie = named(&cookies, "portcullis_csrf");
    assert!(!csrf_cookie.contains("HttpOnly") && csrf_cookie.starts_with(&format!("portcullis_csrf={csrf};")));
    let rt_value = named(&cookies, "portcullis_rt").split(';').next().unwrap().to_owned();
    let post = |path: &'static str, cookie: String, csrf: Option<String>| {
        let (http, base) = (srv.http.clone(), srv.base.clone());
        async move {
            let mut req = http.post(format!("{base}{path}")).header("cookie", cookie);
            if let Some(t) = csrf {
                req = req.header("x-csrf-token", t);
            }
            req.json(&serde_json::json!({"client_id": "spa"})).send().await.unwrap()
        }
    };
    // Riding on the cookie alone (what a cross-site request could do) is refused; the token makes it work.
    assert_eq!(post("/auth/refresh", rt_value.clone(), None).await.status().as_u16(), 403);
    assert_eq!(post("/auth/refresh", rt_value.clone(), Some("A".repeat(22))).await.status().as_u16(), 403);
    let resp = post("/auth/refresh", rt_value.clone(), Some(csrf.clone())).await;
    assert_eq!(resp.status().as_u16(), 200);
    let set: Vec<String> =
        resp.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let new_rt = named(&set, "portcullis_rt").split(';').next().unwrap().to_owned();
    assert_eq!(resp.json::<Value>().await.unwrap()["csrf_token"], csrf.as_str(), "the session's token stays");
    assert_eq!(post("/auth/logout", new_rt.clone(), None).await.status().as_u16(), 403, "logout needs it too");
    let resp = post("/auth/logout", new_rt.clone(), Some(csrf.clone())).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().get_all("set-cookie").iter().all(|c| c.to_str().unwrap().contains("Max-Age=0")));
    assert_eq!(resp.headers().get_all("set-cookie").iter().count(), 3, "all three cookies cleared");
    assert_eq!(post("/auth/refresh", new_rt, Some(csrf)).await.status().as_u16(), 400, "logged out");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_health_and_metrics() {
    let srv = start("ops").await;
    let meta = srv.get_json("/.well-known/openid-configuration").await;
    assert_eq!(meta["issuer"], srv.base.as_str());
    assert_eq!(meta["token_endpoint"], format!("{}/oauth2/token", srv.base));
    assert_eq!(meta["jwks_uri"], format!("{}/jwks.json", srv.base));
    let rfc8414 = srv.get_json("/.well-known/oauth-authorization-server").await;
    assert_eq!(rfc8414, meta);
    assert_eq!(srv.http.get(format!("{}/healthz", srv.base)).send().await.unwrap().status().as_u16(), 200);
    let ready = srv.http.get(format!("{}/readyz", srv.base)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let metrics = srv.http.get(format!("{}/metrics", srv.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("portcullis_signing_key_age_seconds"), "{metrics}");
    assert!(metrics.contains("portcullis_http_requests_total"), "{metrics}");
    let resp = srv.http.get(format!("{}/nothing", srv.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert!(resp.headers().contains_key("x-request-id"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_when_a_certificate_is_configured() {
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = temp_dir("tls");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    let port = free_port();
    let settings = Config {
        listen: format!("127.0.0.1:{port}"),
        issuer: Some(format!("https://localhost:{port}")),
        data_dir: dir.path().join("data"),
        tls_cert: Some(dir.path().join("cert.pem")),
        tls_key: Some(dir.path().join("key.pem")),
        metrics_listen: Some("127.0.0.1:0".into()),
        ..Config::default()
    }
    .validate()
    .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let (running, _) = serve::start(&settings, Arc::new(ShiftedClock::default()), async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    assert!(running.tls);
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", running.addr)
        .build()
        .unwrap();
    let meta: Value = http
        .get(format!("https://localhost:{port}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["token_endpoint"], format!("https://localhost:{port}/oauth2/token"));
    // With metrics_listen, /metrics is served there (plain HTTP, for the monitoring network), not on the API.
    let on_api = http.get(format!("https://localhost:{port}/metrics")).send().await.unwrap();
    assert_eq!(on_api.status().as_u16(), 404);
    let metrics_addr = running.metrics_addr.expect("a metrics listener");
    let scraped = reqwest::get(format!("http://{metrics_addr}/metrics")).await.unwrap();
    assert_eq!(scraped.status().as_u16(), 200);
    assert!(scraped.text().await.unwrap().contains("portcullis_http_requests_total"));
    assert_eq!(reqwest::get(format!("http://{metrics_addr}/readyz")).await.unwrap().status().as_u16(), 200);
    assert_eq!(reqwest::get(format!("http://{metrics_addr}/jwks.json")).await.unwrap().status().as_u16(), 404);
    // Plain HTTP on the TLS port gets nowhere.
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/healthz")).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // A missing key file refuses to start, naming the file.
    let bad = Config {
        listen: format!("127.0.0.1:{}", free_port()),
        data_dir: dir.path().join("data2"),
        tls_cert: Some(dir.path().join("cert.pem")),
        tls_key: Some(dir.path().join("missing.pem")),
        ..Config::default()
    }
    .validate()
    .unwrap();
    let err = serve::start(&bad, Arc::new(ShiftedClock::default()), std::future::pending()).await.unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let _ = stop.send(());
    let _ = running.task.await;
    // The metrics listener stops with the server.
    let mut waited = 0;
    while tokio::net::TcpStream::connect(metrics_addr).await.is_ok() {
        assert!(waited < 100, "the metrics listener outlived the server");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        waited += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_attempts_are_rate_limited_per_ip_and_oversized_headers_refused() {
    let config = Config { login_rate_per_second: 1, login_rate_burst: 2, ..Config::default() };
    let srv = start_with(temp_dir("ratelimit"), Arc::new(ShiftedClock::default()), free_port(), config).await;
    srv.first_party("web", TokenDelivery::Body).await;
    srv.user("erin", "correct horse battery", &[("staff", "read")]).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(srv.login("web", "erin", "wrong password").await.0);
    }
    assert_eq!(&statuses[..2], &[400, 400], "{statuses:?}");
    assert!(statuses[2..].iter().all(|s| *s == 429), "{statuses:?}");
    // Other grants are not limited by it.
    let secret = srv.service_client("svc", &["read"]).await;
    let (status, _) = srv.form("/oauth2/token", Some(("svc", &secret)), &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200);
    // A request head larger than the limit is refused.
    let resp = srv.http.get(format!("{}/healthz", srv.base)).header("x-big", "a".repeat(32 * 1024)).send().await;
    assert!(resp.is_err() || resp.unwrap().status().as_u16() == 431);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_client_is_the_last_untrusted_forwarded_address() {
    // Password attempts are limited per client address: here one attempt, then 429.
    let attempts = |trusted: &'static str| async move {
        let config = Config {
            login_rate_per_second: 1,
            login_rate_burst: 1,
            trusted_proxies: trusted.into(),
            ..Config::default()
        };
        let srv = start_with(temp_dir("proxies"), Arc::new(ShiftedClock::default()), free_port(), config).await;
        srv.first_party("web", TokenDelivery::Body).await;
        let body = serde_json::json!({"username": "nobody", "password": "wrong", "client_id": "web"});
        let mut statuses = Vec::new();
        // Two clients behind the load balancer (this test, on 127.0.0.1), the second one also naming the
        // first one's address in front of its own, as any client can.
        for forwarded in ["198.51.100.7", "198.51.100.7", "203.0.113.9", "198.51.100.7, 203.0.113.9"] {
            let resp = srv
                .http
                .post(format!("{}/auth/login", srv.base))
                .header("x-forwarded-for", forwarded)
                .json(&body)
                .send()
                .await
                .unwrap();
            statuses.push(resp.status().as_u16());
        }
        srv.stop().await;
        statuses
    };
    // Trusted: each client has its own allowance, and what a client writes before its own address is not read.
    assert_eq!(attempts("127.0.0.0/8").await, [400, 429, 400, 429]);
    // Not trusted (the default): every request comes from the connection's address, whatever the header says.
    assert_eq!(attempts("").await, [400, 429, 429, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_send_no_request_in_time_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = start("slow-clients").await;
    let addr = srv.base.trim_start_matches("http://").to_owned();
    let timeout = portcullis_server::serve::HEADER_TIMEOUT;
    // Nothing at all; the start of the HTTP/2 preface; half a request head. Each must be closed once the
    // header timeout has passed, not held open for as long as the client likes.
    let clients = [&b""[..], b"PRI * HTTP/2.0\r\n", b"POST /oauth2/token HTTP/1.1\r\nhost: a\r\n"].map(|sent| {
        let addr = addr.clone();
        tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.write_all(sent).await.unwrap();
            let started = std::time::Instant::now();
            let mut buf = [0u8; 1024];
            let closed = tokio::time::timeout(timeout + std::time::Duration::from_secs(5), async {
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
            (String::from_utf8_lossy(sent).into_owned(), closed.is_ok(), started.elapsed())
        })
    });
    for client in clients {
        let (sent, closed, after) = client.await.unwrap();
        assert!(closed, "{sent:?}: still open after {after:?}");
        assert!(after >= timeout - std::time::Duration::from_millis(500), "{sent:?}: closed after {after:?}");
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_clients_and_resource_indicators() {
    use portcullis_jose::SigningKey;
    let srv = start("pkjwt").await;
    let key = SigningKey::generate(Algorithm::ES256).unwrap().with_kid("c1");
    let jwks = format!(r#"{{"keys":[{}]}}"#, key.verifying_key().to_jwk().unwrap());
    srv.admin
        .add_client(NewClient {
            id: "signer".into(),
            credential: ClientKind::Jwks(jwks),
            grants: vec![GrantType::ClientCredentials],
            scopes: vec!["read".into()],
            audiences: vec!["api".into(), "https://billing.example".into()],
            ..NewClient::default()
        })
        .await
        .unwrap();
    let signer = jwt::Signer::new(key, None);
    let now = srv.clock.now().as_secs();
    let assertion = |jti: &str| {
        signer
            .sign_json(&format!(
                r#"{{"iss":"signer","sub":"signer","aud":"{}/oauth2/token","iat":{now},"exp":{},"jti":"{jti}"}}"#,
                srv.base,
                now + 60
            ))
            .unwrap()
    };
    let a1 = assertion("a1");
    let params = |a: &str, resource: Option<&'static str>| {
        let mut p = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned()),
            ("client_assertion", a.to_owned()),
        ];
        if let Some(r) = resource {
            p.push(("resource", r.to_owned()));
        }
        p
    };
    let post = |p: Vec<(&'static str, String)>| {
        let srv = &srv;
        async move {
            let resp = srv.http.post(format!("{}/oauth2/token", srv.base)).form(&p).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = post(params(&a1, Some("https://billing.example"))).await;
    assert_eq!(status, 200, "{body}");
    let claims = jwt::verify(
        &s(&body, "access_token"),
        &srv.jwks().await,
        &srv.policy("https://billing.example"),
        srv.clock.now(),
    )
    .unwrap()
    .claims;
    assert_eq!(claims.sub().as_deref(), Some("signer"), "RFC 8707: the resource is the audience");
    let (status, body) = post(params(&a1, None)).await;
    assert_eq!((status, s(&body, "error").as_str()), (401, "invalid_client"), "an assertion is single-use");
    let (status, body) = post(params(&assertion("a2"), Some("https://elsewhere.example"))).await;
    assert_eq!((status, s(&body, "error").as_str()), (400, "invalid_target"));
    let forged = jwt::Signer::new(SigningKey::generate(Algorithm::ES256).unwrap().with_kid("c1"), None)
        .sign_json(&format!(r#"{{"iss":"signer","sub":"signer","aud":"{}","exp":{},"jti":"f"}}"#, srv.base, now + 60))
        .unwrap();
    let (status, _) = post(params(&forged, None)).await;
    assert_eq!(status, 401, "an assertion signed by another key");
    srv.stop().await;
}

mod admin_api;
mod cluster;
mod code_flow;
mod dpop;
mod guard;
mod risk;
