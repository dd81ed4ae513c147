//! Risk scoring in the running server: a risky login is refused like a wrong password, guards' reports of a
//! session used from two networks at once revoke it, every verdict is audited, and profiles reach the store.

use std::sync::Arc;

use portcullis_server::clock::{Clock, ShiftedClock};
use portcullis_server::config::Config;
use portcullis_server::model::TokenDelivery;
use serde_json::{json, Value};

use super::{free_port, s, start_with, temp_dir, Server};

async fn server(name: &str, signals: &str) -> Server {
    let config = Config { login_rate_per_second: 0, risk_signals: signals.into(), ..Config::default() };
    start_with(temp_dir(name), Arc::new(ShiftedClock::default()), free_port(), config).await
}

async fn audit_kinds(srv: &Server) -> Vec<(String, String)> {
    let events = srv.running.authority.store.audit_since(0, 10_000).await.unwrap();
    events.into_iter().map(|e| (e.kind, e.detail)).collect()
}

async fn report(srv: &Server, token: Option<&str>, body: String) -> (u16, Value) {
    let mut request = srv.http.post(format!("{}/risk/events", srv.base)).body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_after_a_run_of_failures_is_refused_when_configured_and_flagged_by_default() {
    for (signals, refused) in [("brute_force=deny", true), (portcullis_risk::DEFAULT_SIGNALS, false)] {
        let srv = server(if refused { "risk-deny" } else { "risk-flag" }, signals).await;
        srv.first_party("web", TokenDelivery::Body).await;
        srv.user("alice", "correct horse battery", &[("staff", "read")]).await;
        let mut wrong = Value::Null;
        for _ in 0..4 {
            wrong = srv.login("web", "alice", "wrong password").await.1;
        }
        let (status, body) = srv.login("web", "alice", "correct horse battery").await;
        let audit = audit_kinds(&srv).await;
        if refused {
            assert_eq!((status, &body), (400, &wrong), "refused exactly like a wrong password");
            let (_, detail) = audit.iter().find(|(k, _)| k == "risk_denied").expect("a risk_denied audit event");
            assert!(detail.contains("\"kind\":\"login\"") && detail.contains("a login after 4"), "{detail}");
            assert!(!audit.iter().any(|(k, d)| k == "risk_denied" && d.contains("login_failure")), "{audit:?}");
        } else {
            assert_eq!(status, 200, "{body}");
            assert!(audit.iter().any(|(k, d)| k == "risk_flagged" && d.contains("failures")), "{audit:?}");
        }
        srv.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guards_reports_of_a_session_used_from_two_networks_revoke_it() {
    let srv = server("risk-report", "shared_session=revoke").await;
    srv.first_party("web", TokenDelivery::Body).await;
    srv.user("bob", "bob's long password", &[("staff", "read")]).await;
    let (status, login) = srv.login("web", "bob", "bob's long password").await;
    assert_eq!(status, 200, "{login}");
    let keys = srv.jwks().await;
    let claims = portcullis_jose::jwt::verify(&s(&login, "access_token"), &keys, &srv.policy("api"), srv.clock.now())
        .unwrap()
        .claims;
    let field = |name: &str| claims.string(name).unwrap().to_string();
    let (sub, sid, jti) = (field("sub"), field("sid"), field("jti"));

    let guard_secret = srv.service_client("gw", &["portcullis:risk"]).await;
    let guard = srv.client_token("gw", &guard_secret, "portcullis:risk").await;
    let other_secret = srv.service_client("other", &["portcullis:events"]).await;
    let other = srv.client_token("other", &other_secret, "portcullis:events").await;

    let now = srv.clock.now().as_secs() as f64;
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
    let line = |t: f64, ip: &str| {
        json!({"ts": now + t, "kind": "token_use", "sub": sub, "client_id": "web", "ip": ip, "ua": ua,
               "jti": jti, "sid": sid})
        .to_string()
    };
    // Refused input first: no token, the wrong scope, a bad line, a kind guards do not report.
    assert_eq!(report(&srv, None, line(1.0, "127.0.0.1")).await.0, 401);
    assert_eq!(report(&srv, Some(&other), line(1.0, "127.0.0.1")).await.0, 403);
    let (status, body) = report(&srv, Some(&guard), format!("{}\nnot json\n", line(1.0, "127.0.0.1"))).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
    assert!(body["error_description"].as_str().unwrap().starts_with("line 2"), "{body}");
    let login_line = line(1.0, "127.0.0.1").replace("token_use", "login");
    let (status, body) = report(&srv, Some(&guard), login_line).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(report(&srv, Some(&guard), String::new()).await.0, 400);

    // The owner on the network the session started on, and a second party elsewhere, taking turns.
    let mut lines = Vec::new();
    for i in 0..6 {
        lines.push(line(2.0 + f64::from(i) * 10.0, "127.0.0.1"));
        lines.push(line(7.0 + f64::from(i) * 10.0, "203.0.113.9"));
    }
    let (status, body) = report(&srv, Some(&guard), lines.join("\n")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scored"], 12);
    assert!(body["revoked"].as_u64().unwrap() >= 1, "{body}");

    // The session is gone: its refresh token no longer works, and the revocation is audited with its reasons.
    let refresh = json!({"refresh_token": s(&login, "refresh_token"), "client_id": "web"});
    let (status, body, _) = srv.json("/auth/refresh", refresh).await;
    assert_eq!(status, 400, "{body}");
    let audit = audit_kinds(&srv).await;
    let (_, detail) = audit.iter().find(|(k, _)| k == "risk_revoked").expect("a risk_revoked audit event");
    assert!(detail.contains("another network at the same time") && detail.contains("203.0.113.9"), "{detail}");
    assert!(audit.iter().any(|(k, d)| k == "revoked_by_admin" && d.contains(&sid)), "{audit:?}");

    // What was learnt reaches the store, where other instances read it.
    let risk = srv.running.authority.risk.as_ref().unwrap();
    assert!(risk.flush(srv.clock.now().as_secs()).await.unwrap() >= 1);
    let stored = srv.running.authority.store.risk_profile(&sub).await.unwrap().expect("bob's profile is stored");
    let profile = portcullis_risk::Profile::from_bytes(&stored).expect("a profile this build reads");
    assert!(profile.sessions >= 1.0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_refused_when_scoring_is_off() {
    let config = Config { login_rate_per_second: 0, risk: false, ..Config::default() };
    let srv = start_with(temp_dir("risk-off"), Arc::new(ShiftedClock::default()), free_port(), config).await;
    let secret = srv.service_client("gw", &["portcullis:risk"]).await;
    let token = srv.client_token("gw", &secret, "portcullis:risk").await;
    let line = json!({"ts": 1.0, "kind": "token_use", "sub": "x", "client_id": "web", "ip": "192.0.2.1"}).to_string();
    let (status, body) = report(&srv, Some(&token), line).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{body}");
    assert!(srv.running.authority.risk.is_none());
    srv.stop().await;
}

/// The whole loop: a guard reports the token uses it lets through; the server sees one session used from two
/// networks at once and revokes it; the guard, following `/events`, refuses the session's token within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guards_reports_revoke_a_shared_session_and_the_guard_then_refuses_it() {
    use axum::routing::get;
    use portcullis_guard::layer::{Auth, GuardLayer};
    use portcullis_guard::{Clock as GuardClock, Guard, GuardConfig, Requirement};

    let srv = server("risk-loop", "shared_session=revoke").await;
    srv.first_party("web", TokenDelivery::Body).await;
    srv.user("carol", "carol's long password", &[("staff", "read")]).await;
    let secret = srv.service_client("gw", &["portcullis:events", "portcullis:risk"]).await;
    let clock = Arc::clone(&srv.clock);
    let config = GuardConfig {
        events: Some(("gw".into(), secret)),
        report_token_uses: true,
        ..GuardConfig::new(&srv.base, "api")
    };
    let guard = Guard::start_with_clock(config, GuardClock::new(move || clock.now())).await.unwrap();
    let app = axum::Router::new()
        .route("/orders", get(|Auth(who): Auth| async move { format!("orders of {}", who.subject) }))
        .layer(GuardLayer::new(guard, Requirement::scopes(["read"])));
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, app).await.unwrap()
    });

    let (status, login) = srv.login("web", "carol", "carol's long password").await;
    assert_eq!(status, 200, "{login}");
    let token = s(&login, "access_token");
    // Two clients on two networks (127.0.0.0/24 and 127.0.1.0/24 on the loopback interface).
    let owner =
        reqwest::Client::builder().local_address("127.0.0.1".parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    let other =
        reqwest::Client::builder().local_address("127.0.1.1".parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    let api = format!("http://127.0.0.1:{port}/orders");
    let call = |client: &reqwest::Client| client.get(&api).bearer_auth(&token).send();
    assert_eq!(call(&owner).await.unwrap().status(), 200);
    let mut refused_after = None;
    for round in 0..40 {
        let (a, b) = (call(&owner).await.unwrap().status(), call(&other).await.unwrap().status());
        if a == 401 && b == 401 {
            refused_after = Some(round);
            break;
        }
        srv.clock.advance(1);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(refused_after.is_some(), "the shared session was never refused");
    let audit = audit_kinds(&srv).await;
    assert!(audit.iter().any(|(k, d)| k == "risk_revoked" && d.contains("127.0.1.1")), "{audit:?}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_geoip_file_that_is_not_a_database_stops_the_start_with_its_name() {
    let dir = temp_dir("risk-geoip");
    let bogus = dir.path().join("GeoLite2-City.mmdb");
    std::fs::write(&bogus, b"not a database").unwrap();
    let config = Config {
        listen: format!("127.0.0.1:{}", free_port()),
        data_dir: dir.path().to_path_buf(),
        risk_geoip: Some(bogus.display().to_string()),
        ..Config::default()
    };
    let settings = config.validate().unwrap();
    let started = portcullis_server::serve::start(&settings, Arc::new(ShiftedClock::default()), async {}).await;
    let Err(error) = started else { panic!("a bogus GeoIP file was accepted") };
    let message = error.to_string();
    assert!(message.contains("risk_geoip") && message.contains("GeoLite2-City.mmdb"), "{message}");
    // A real one (the simulator's world) is accepted.
    let world = dir.path().join("world.mmdb");
    std::fs::write(&world, portcullis_risk::simulate::geoip(&portcullis_risk::simulate::Scenario::new(1, 10, 2)))
        .unwrap();
    let config = Config {
        listen: format!("127.0.0.1:{}", free_port()),
        data_dir: dir.path().to_path_buf(),
        risk_geoip: Some(world.display().to_string()),
        ..Config::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let settings = config.validate().unwrap();
    let (running, _) = portcullis_server::serve::start(&settings, Arc::new(ShiftedClock::default()), async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    assert!(running.authority.risk.is_some());
    let _ = stop.send(());
    let _ = running.task.await;
}
