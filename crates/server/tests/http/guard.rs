//! The guard and the gateway in front of the real server: the tower layer, the reverse proxy, forward auth,
//! and a real nginx using `auth_request`.

use std::path::PathBuf;
use std::sync::Arc;

use portcullis_jose::{jwt, Algorithm, AT_JWT};
use portcullis_server::clock::Clock;
use portcullis_server::serve;
use serde_json::Value;

use super::{free_port, s, start};

/// An API behind the guard, on its own loopback port.
async fn guarded_api(guard: portcullis_guard::Guard) -> String {
    use axum::routing::get;
    use portcullis_guard::layer::{Auth, GuardLayer};
    use portcullis_guard::Requirement;
    let app = axum::Router::new()
        .route("/orders", get(|Auth(who): Auth| async move { format!("orders of {}", who.subject) }))
        .layer(GuardLayer::new(guard, Requirement::scopes(["read"])));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/orders")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_verifies_offline_follows_revocations_and_survives_rotation() {
    use portcullis_guard::{Clock as GuardClock, Guard, GuardConfig};
    let srv = start("guard").await;
    let secret = srv.service_client("svc", &["read", "write"]).await;
    let feed_secret = srv.service_client("gateway", &["portcullis:events"]).await;
    let clock = Arc::clone(&srv.clock);
    let mut config =
        GuardConfig { events: Some(("gateway".into(), feed_secret)), ..GuardConfig::new(&srv.base, "api") };
    // Longer than the minute the server keeps a revocation past the token's `exp` (see below).
    config.leeway = 120;
    let guard = Guard::start_with_clock(config, GuardClock::new(move || clock.now())).await.unwrap();
    let api = guarded_api(guard.clone()).await;
    let token = |scope: &'static str| srv.client_token("svc", &secret, scope);
    let call = |bearer: Option<String>| {
        let (http, api) = (srv.http.clone(), api.clone());
        async move {
            let mut req = http.get(&api);
            if let Some(t) = bearer {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            let challenge =
                resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            (resp.status().as_u16(), challenge, resp.text().await.unwrap())
        }
    };
    let read = token("read").await;
    let (status, _, body) = call(Some(read.clone())).await;
    assert_eq!((status, body.as_str()), (200, "orders of svc"));
    let (status, challenge, _) = call(None).await;
    assert_eq!((status, challenge.as_str()), (401, "Bearer realm=\"api\""));
    let (status, challenge, _) = call(Some(token("write").await)).await;
    assert_eq!(status, 403);
    assert!(challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"read\""), "{challenge}");
    let (status, challenge, _) = call(Some("not.a.token".into())).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");

    // A flood of tokens naming unknown kids costs at most one JWKS fetch.
    let forged_key = portcullis_jose::SigningKey::generate(Algorithm::ES256).unwrap();
    let before = guard.jwks().fetches();
    for i in 0..50 {
        let forged = jwt::Signer::new(
            portcullis_jose::SigningKey::generate(Algorithm::ES256).unwrap().with_kid(format!("k{i}")),
            Some(AT_JWT),
        )
        .sign_json(r#"{"iss":"x","sub":"x","aud":"api","exp":4102444800,"iat":1,"jti":"j"}"#)
        .unwrap();
        assert_eq!(call(Some(forged)).await.0, 401);
    }
    drop(forged_key);
    assert!(guard.jwks().fetches() - before <= 1, "{} fetches for 50 unknown kids", guard.jwks().fetches() - before);

    // Revocation at the server reaches the guard through the event feed within a second.
    let revoked_at = std::time::Instant::now();
    let (status, _) = srv.form("/oauth2/revoke", Some(("svc", &secret)), &[("token", &read)]).await;
    assert_eq!(status, 200);
    loop {
        let (status, _, _) = call(Some(read.clone())).await;
        if status == 401 {
            break;
        }
        assert!(revoked_at.elapsed().as_millis() < 1000, "still accepted {:?} after revocation", revoked_at.elapsed());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Past the revoked token's `exp` by more than the server's minute but within the guard's leeway, a later
    // event (the guard prunes its set as it applies one) must not bring the revoked token back.
    let payload = portcullis_jose::jws::decode_unverified(&read, 16 * 1024).unwrap().1;
    let exp = serde_json::from_slice::<Value>(&payload).unwrap()["exp"].as_i64().unwrap();
    srv.clock.advance(exp + 90 - srv.clock.now().as_secs());
    let later = token("write").await;
    assert_eq!(srv.form("/oauth2/revoke", Some(("svc", &secret)), &[("token", &later)]).await.0, 200);
    let applied_at = std::time::Instant::now();
    while guard.verify(&later).is_ok() {
        assert!(applied_at.elapsed().as_millis() < 1000, "the later revocation did not arrive");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(call(Some(read.clone())).await.0, 401, "a revoked token within the leeway stays refused");

    // A key rotation: every token verifies at the guard, before, during and after, with no failed request.
    let authority = Arc::clone(&srv.running.authority);
    authority.keys.rotate(srv.clock.now().as_secs()).await.unwrap();
    for _ in 0..8 {
        srv.clock.advance(60);
        authority.keys.maintain(srv.clock.now().as_secs()).await.unwrap();
        let (status, _, body) = call(Some(token("read").await)).await;
        assert_eq!(status, 200, "{body}");
    }
    srv.stop().await;
}

/// Serves `gw` on a loopback port with `workers` workers, which stop when the returned sender is dropped.
fn serve_gateway(
    gw: &Arc<portcullis_guard::gateway::Gateway>,
    workers: usize,
) -> (std::net::SocketAddr, tokio::sync::watch::Sender<bool>) {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let (addr, _) = portcullis_guard::workers::serve_workers(gw, "127.0.0.1:0", workers, stopping).unwrap();
    (addr, stop)
}

/// An upstream that echoes what it received: path, and the identity headers.
async fn echo_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, echo_app()).await.unwrap() });
    format!("http://{addr}")
}

fn echo_app() -> axum::Router {
    use axum::http::HeaderMap;
    axum::Router::new().fallback(|uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| async move {
        if uri.path().starts_with("/slow/") {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        }
        let get = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        serde_json::json!({
            "path": uri.to_string(), "subject": get("x-auth-subject"), "client": get("x-auth-client"),
            "scopes": get("x-auth-scopes"), "forwarded_for": get("x-forwarded-for"), "spoof": get("x-auth-spoof"),
            "dpop": get("dpop"), "proto": get("x-forwarded-proto"), "host": get("x-forwarded-host"),
            "upstream": get("host"),
            "body": body.len(), "sum": body.iter().map(|b| u64::from(*b)).sum::<u64>(),
        })
        .to_string()
    })
}

/// The status of one HTTP/1.1 request sent byte for byte: reqwest (like browsers) resolves `..` and `%2e%2e`
/// before sending, and an attacker does not.
async fn raw_status(addr: &str, target: &str, bearer: Option<&str>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = bearer.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!("GET {target} HTTP/1.1\r\nhost: {addr}\r\n{auth}connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let head = String::from_utf8_lossy(&response);
    head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status line: {head}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_proxies_with_identity_headers_and_answers_forward_auth() {
    use portcullis_guard::gateway::{Gateway, GatewayConfig};
    let srv = start("gateway").await;
    let secret = srv.service_client("svc", &["read", "write"]).await;
    let feed_secret = srv.service_client("gw", &["portcullis:events"]).await;
    std::fs::write(srv.dir.path().join("gw.secret"), &feed_secret).unwrap();
    let upstream = echo_upstream().await;
    let toml = format!(
        r#"
listen = "127.0.0.1:0"
issuer = "{issuer}"
client_id = "gw"
client_secret_file = "{secret_file}"
upstream_timeout = 1
[[route]]
path_prefix = "/api/"
methods = ["GET"]
upstream = "{upstream}"
audience = "api"
scopes = ["read"]
[[route]]
path_prefix = "/admin/"
upstream = "http://127.0.0.1:9"
audience = "api"
scopes = ["write"]
[[route]]
path_prefix = "/public/"
upstream = "{upstream}"
public = true
[[route]]
path_prefix = "/slow/"
upstream = "{upstream}"
public = true
[[route]]
path_prefix = "/upload/"
methods = ["POST"]
upstream = "{upstream}"
audience = "api"
roles = []
scopes = ["write"]
"#,
        issuer = srv.base,
        secret_file = srv.dir.path().join("gw.secret").display(),
    );
    std::fs::write(srv.dir.path().join("gateway.toml"), toml).unwrap();
    let config = GatewayConfig::load(&srv.dir.path().join("gateway.toml")).unwrap();
    let gw = Gateway::start(&config, Some(serve::metrics_handle())).await.unwrap();
    // Served as the binary serves it: two worker threads, each with its own listener on one port.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let (addr, workers) = portcullis_guard::workers::serve_workers(&gw, "127.0.0.1:0", 2, stopping).unwrap();
    assert_eq!(workers.len(), 2);
    let base = format!("http://{addr}");
    let token = |scope: &'static str| srv.client_token("svc", &secret, scope);
    let read = token("read").await;
    let resp = srv
        .http
        .get(format!("{base}/api/orders?x=1"))
        .bearer_auth(&read)
        .header("x-auth-subject", "admin")
        .header("x-auth-spoof", "1")
        .header("dpop", "a.proof.for-this-hop")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let seen: Value = resp.json().await.unwrap();
    assert_eq!(seen["path"], "/api/orders?x=1");
    assert_eq!(seen["subject"], "svc", "the verified subject, not the client's header");
    assert_eq!(seen["spoof"], "", "incoming X-Auth-* headers are stripped");
    assert_eq!(seen["dpop"], "", "a DPoP proof is for the gateway, not forwarded");
    assert_eq!(seen["scopes"], "read");
    assert_eq!(seen["forwarded_for"], "127.0.0.1");
    let status = |path: &'static str, method: reqwest::Method, bearer: Option<String>| {
        let (http, base) = (srv.http.clone(), base.clone());
        async move {
            let mut req = http.request(method, format!("{base}{path}"));
            if let Some(b) = bearer {
                req = req.bearer_auth(b);
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(status("/api/orders", reqwest::Method::GET, None).await, 401);
    assert_eq!(status("/api/orders", reqwest::Method::POST, Some(read.clone())).await, 404, "method not routed");
    assert_eq!(status("/admin/x", reqwest::Method::GET, Some(read.clone())).await, 403, "insufficient scope");
    assert_eq!(status("/admin/x", reqwest::Method::GET, Some(token("write").await)).await, 502, "upstream down");
    assert_eq!(status("/elsewhere", reqwest::Method::GET, Some(read.clone())).await, 404);
    // Routes are judged on the path's normal form; a path readers could resolve differently is refused.
    let addr = base.trim_start_matches("http://").to_owned();
    assert_eq!(raw_status(&addr, "/%61pi/orders", Some(&read)).await, 200, "an encoded unreserved character");
    for attack in [
        "/api/../admin/x",
        "/api/%2e%2e/admin/x",
        "/public/../admin/x",
        "//admin/x",
        "/public%2F..%2Fadmin",
        "/admin;x/x",
        "/public/..;/admin/x",
        "/%2561dmin/x",
    ] {
        assert_eq!(raw_status(&addr, attack, Some(&read)).await, 400, "{attack}");
    }
    let resp = srv.http.get(format!("{base}/public/x")).header("x-auth-subject", "admin").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "a public route needs no token");
    assert_eq!(resp.json::<Value>().await.unwrap()["subject"], "", "and still strips identity headers");
    let started = std::time::Instant::now();
    assert_eq!(status("/slow/x", reqwest::Method::GET, None).await, 504, "upstream_timeout = 1");
    assert!(started.elapsed() < std::time::Duration::from_millis(2500), "{:?}", started.elapsed());
    // A request body goes through to the upstream, byte for byte.
    let upload: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let sum: u64 = upload.iter().map(|b| u64::from(*b)).sum();
    let resp =
        srv.http.post(format!("{base}/upload/f")).bearer_auth(token("write").await).body(upload).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let seen: Value = resp.json().await.unwrap();
    assert_eq!((seen["body"].as_u64(), seen["sum"].as_u64()), (Some(1_500_000), Some(sum)));

    // Forward auth, as Traefik and Caddy call it, and as nginx's auth_request does.
    let check = |headers: Vec<(&'static str, String)>| {
        let (http, base) = (srv.http.clone(), base.clone());
        async move {
            let mut req = http.get(format!("{base}/check"));
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let resp = req.send().await.unwrap();
            let subject =
                resp.headers().get("x-auth-subject").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            (resp.status().as_u16(), subject)
        }
    };
    let bearer = format!("Bearer {read}");
    assert_eq!(
        check(vec![
            ("x-forwarded-method", "GET".into()),
            ("x-forwarded-uri", "/api/a".into()),
            ("authorization", bearer.clone())
        ])
        .await,
        (200, "svc".into())
    );
    assert_eq!(
        check(vec![("x-original-uri", "/api/a?q".into()), ("authorization", bearer.clone())]).await,
        (200, "svc".into())
    );
    assert_eq!(check(vec![("x-original-uri", "/api/a".into())]).await.0, 401);
    assert_eq!(check(vec![("x-original-uri", "/nowhere".into()), ("authorization", bearer.clone())]).await.0, 403);
    for attack in ["/api/../admin/x", "/public/%2E%2E/admin/x", "/public//admin", "/admin;x/x", "/%2561dmin/x"] {
        let asked =
            vec![("x-original-uri", attack.into()), ("authorization", format!("Bearer {}", token("write").await))];
        assert_eq!(check(asked).await, (403, String::new()), "{attack}");
    }
    // Envoy ext_authz (HTTP): the original method and path under the check prefix.
    let envoy = |method: reqwest::Method, path: &'static str| {
        let (http, base, bearer) = (srv.http.clone(), base.clone(), bearer.clone());
        async move {
            let resp = http
                .request(method, format!("{base}/check{path}"))
                .header("authorization", bearer)
                .send()
                .await
                .unwrap();
            let subject =
                resp.headers().get("x-auth-subject").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            (resp.status().as_u16(), subject)
        }
    };
    assert_eq!(envoy(reqwest::Method::GET, "/api/orders").await, (200, "svc".into()));
    assert_eq!(envoy(reqwest::Method::POST, "/api/orders").await.0, 403, "POST is not routed");
    // Revocation reaches the gateway through the feed.
    srv.form("/oauth2/revoke", Some(("svc", &secret)), &[("token", &read)]).await;
    let revoked_at = std::time::Instant::now();
    while check(vec![("x-original-uri", "/api/a".into()), ("authorization", bearer.clone())]).await.0 == 200 {
        assert!(revoked_at.elapsed().as_millis() < 1000, "revocation not applied within a second");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(srv.http.get(format!("{base}/healthz")).send().await.unwrap().status().as_u16(), 200);
    let metrics = srv.http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    for series in [
        r#"portcullis_gateway_decisions_total{result="allow",reason="ok"}"#,
        r#"portcullis_gateway_decisions_total{result="deny",reason="ambiguous path"}"#,
        r#"portcullis_gateway_decisions_total{result="deny",reason="revoked"}"#,
        r#"portcullis_gateway_upstream_errors_total{kind="timeout"}"#,
        r#"portcullis_guard_verify_cache_total{result="hit"}"#,
        "portcullis_guard_jwks_age_seconds ",
        "portcullis_guard_feed_lag_seconds ",
    ] {
        assert!(metrics.contains(series), "{series} missing from /metrics");
    }

    // A scrape adds every worker's counts, not only those of the worker serving it: twenty requests, each on a
    // connection of its own (so that both workers serve some), move the counters by exactly twenty.
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let count = |text: &str, series: &str| -> u64 {
        text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0)
    };
    let (allowed, hits) = (
        r#"portcullis_gateway_decisions_total{result="allow",reason="ok"} "#,
        r#"portcullis_guard_verify_cache_total{result="hit"} "#,
    );
    let counted = token("read").await;
    let send = || fresh.get(format!("{base}/api/orders")).bearer_auth(&counted).send();
    assert_eq!(send().await.unwrap().status().as_u16(), 200, "verified once, and cached");
    let before = fresh.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    for _ in 0..20 {
        assert_eq!(send().await.unwrap().status().as_u16(), 200);
    }
    let after = fresh.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(count(&after, allowed) - count(&before, allowed), 20, "allowed requests");
    assert_eq!(count(&after, hits) - count(&before, hits), 20, "verified-token cache hits");

    // The server goes away: the gateway keeps serving from its cached keys (no fail_closed_after configured).
    let (fresh, http) = (token("read").await, srv.http.clone());
    srv.stop().await;
    let resp = http.get(format!("{base}/api/orders")).bearer_auth(fresh).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // Shutdown: the workers drain and end.
    stop.send_replace(true);
    drop(http);
    tokio::task::spawn_blocking(move || workers.into_iter().for_each(|w| w.join().unwrap())).await.unwrap();
}

/// nginx from the distribution, if installed; CI installs it and sets PORTCULLIS_TEST_NGINX=1 so that a
/// missing nginx fails there instead of skipping.
fn nginx() -> Option<PathBuf> {
    let found = ["/usr/sbin/nginx", "/usr/bin/nginx"].iter().map(PathBuf::from).find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("PORTCULLIS_TEST_NGINX").is_none(),
            "PORTCULLIS_TEST_NGINX is set but nginx is missing"
        );
        eprintln!("SKIPPED: nginx is not installed (apt-get install nginx); the auth_request test did not run");
    }
    found
}

/// Reads from `stream` until the peer closes it; `None` if it is still open after `within`. The bytes read come
/// back (a 408 or 431 answer, or nothing).
async fn closed_within(stream: &mut tokio::net::TcpStream, within: std::time::Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_closes_connections_that_send_no_request_in_time() {
    use portcullis_guard::gateway::{Gateway, GatewayConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = start("slowloris").await;
    let upstream = echo_upstream().await;
    let toml = format!(
        "issuer = \"{}\"\nheader_timeout = 1\nmax_connections = 2\n[[route]]\npath_prefix = \"/public/\"\nupstream = \"{upstream}\"\npublic = true\n",
        srv.base
    );
    std::fs::write(srv.dir.path().join("gateway.toml"), toml).unwrap();
    let gw = Gateway::start(&GatewayConfig::load(&srv.dir.path().join("gateway.toml")).unwrap(), None).await.unwrap();
    let (addr, _stop) = serve_gateway(&gw, 1);
    let connect = || tokio::net::TcpStream::connect(addr);
    let long = std::time::Duration::from_secs(5);

    // Nothing at all; the start of the HTTP/2 preface; half a request head: each is closed after about 1 s.
    for sent in [&b""[..], b"PRI * HTTP/2.0\r\n", b"GET /public/x HTTP/1.1\r\nhost: a\r\n"] {
        let mut stream = connect().await.unwrap();
        stream.write_all(sent).await.unwrap();
        let started = std::time::Instant::now();
        let answer = closed_within(&mut stream, long).await;
        assert!(answer.is_some(), "{:?} still open after {long:?}", String::from_utf8_lossy(sent));
        assert!(started.elapsed() >= std::time::Duration::from_millis(700), "{:?}", started.elapsed());
    }

    // A client that keeps asking keeps its connection past the first deadline; once idle, it is closed.
    let mut stream = connect().await.unwrap();
    for _ in 0..5 {
        stream.write_all(b"GET /public/x HTTP/1.1\r\nhost: a\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    }
    assert!(closed_within(&mut stream, long).await.is_some(), "an idle kept-alive connection is closed");

    // A head larger than the gateway reads is refused, not buffered.
    let mut stream = connect().await.unwrap();
    let huge = format!("GET /public/x HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n", "a".repeat(70 * 1024));
    let _ = stream.write_all(huge.as_bytes()).await;
    let answer = closed_within(&mut stream, long).await.expect("closed");
    assert!(answer.starts_with(b"HTTP/1.1 431"), "{}", String::from_utf8_lossy(&answer));

    // max_connections = 2: two silent connections hold both slots, and a third waits until the header timeout
    // has closed them, instead of each taking a descriptor.
    let (_one, _two) = (connect().await.unwrap(), connect().await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut third = connect().await.unwrap();
    let started = std::time::Instant::now();
    third.write_all(b"GET /public/x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").await.unwrap();
    let answer = closed_within(&mut third, long).await.expect("served once a slot is free");
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    assert!(started.elapsed() >= std::time::Duration::from_millis(700), "served at once: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_https_over_both_protocols_and_a_renewed_certificate() {
    use super::dpop::{jti, proof_with};
    use portcullis_guard::gateway::{Gateway, GatewayConfig};
    use portcullis_jose::SigningKey;
    let srv = start("gateway-tls").await;
    let secret = srv.service_client("svc", &["read"]).await;
    let upstream = echo_upstream().await;
    let (first, renewed) = (
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap(),
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap(),
    );
    let (cert, key) = (srv.dir.path().join("gw-cert.pem"), srv.dir.path().join("gw-key.pem"));
    std::fs::write(&cert, first.cert.pem()).unwrap();
    std::fs::write(&key, first.signing_key.serialize_pem()).unwrap();
    let toml = format!(
        "issuer = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\nmetrics_listen = \"127.0.0.1:0\"\n\
         [[route]]\nhost = \"localhost\"\npath_prefix = \"/api/\"\nupstream = \"{upstream}\"\naudience = \"api\"\nscopes = [\"read\"]\n",
        srv.base,
        cert.display(),
        key.display()
    );
    std::fs::write(srv.dir.path().join("gateway.toml"), toml).unwrap();
    let config = GatewayConfig::load(&srv.dir.path().join("gateway.toml")).unwrap();
    // A half configuration, or a key that is not the certificate's, stops the gateway at start.
    let half = GatewayConfig { tls_key: None, ..config.clone() };
    let refused = Gateway::start(&half, None).await.unwrap_err().to_string();
    assert!(refused.contains("tls_cert and tls_key: set both"), "{refused}");
    let other_key = srv.dir.path().join("other-key.pem");
    std::fs::write(&other_key, renewed.signing_key.serialize_pem()).unwrap();
    let mismatched = GatewayConfig { tls_key: Some(other_key), ..config.clone() };
    let refused = Gateway::start(&mismatched, None).await.unwrap_err().to_string();
    assert!(refused.contains("gw-cert.pem and"), "{refused}");
    let gw = Gateway::start(&config, Some(serve::metrics_handle())).await.unwrap();
    assert_eq!(gw.scheme(), "https");
    let (addr, _stop) = serve_gateway(&gw, 1);
    let url = format!("https://localhost:{}/api/orders", addr.port());
    let (stopping_metrics, stop_metrics) = tokio::sync::oneshot::channel::<()>();
    let (metrics_addr, metrics_task) = portcullis_guard::gateway::serve_metrics(&gw, "127.0.0.1:0", async {
        let _ = stop_metrics.await;
    })
    .await
    .unwrap();
    let client = |trusted: &rcgen::CertifiedKey<rcgen::KeyPair>, http1: bool| {
        let mut builder = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(trusted.cert.pem().as_bytes()).unwrap())
            .resolve("localhost", addr);
        if http1 {
            builder = builder.http1_only();
        }
        builder.build().unwrap()
    };
    let bearer = srv.client_token("svc", &secret, "read").await;

    // HTTP/2 (ALPN) names the host in `:authority`, which the host route matches; and HTTP/1.1.
    for (http1, version) in [(false, reqwest::Version::HTTP_2), (true, reqwest::Version::HTTP_11)] {
        let resp = client(&first, http1).get(&url).bearer_auth(&bearer).send().await.unwrap();
        assert_eq!((resp.status().as_u16(), resp.version()), (200, version));
        let seen: Value = resp.json().await.unwrap();
        assert_eq!(seen["subject"], "svc");
        assert_eq!(seen["proto"], "https", "the upstream learns the client used HTTPS");
        assert_eq!(seen["host"], format!("localhost:{}", addr.port()));
    }

    // A DPoP proof names the https URL the client used; one naming http:// is refused.
    let dpop_key = SigningKey::generate(Algorithm::ES256).unwrap();
    let bound = srv.dpop_bound_token(&dpop_key, "svc", &secret).await;
    let ath = portcullis_jose::dpop::access_token_hash(&bound);
    let now = srv.clock.now().as_secs();
    for (http1, htu, want) in
        [(true, url.clone(), 200), (false, url.clone(), 200), (true, url.replace("https", "http"), 401)]
    {
        let proof = proof_with(&dpop_key, &jti(), "GET", &htu, now, &format!(r#","ath":"{ath}""#));
        let resp = client(&first, http1)
            .get(&url)
            .header("authorization", format!("DPoP {bound}"))
            .header("dpop", proof)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want, "{htu} over {:?}", resp.version());
    }

    // With metrics_listen, /metrics is served there, and on the public port it is a path like any other.
    let scraped = reqwest::get(format!("http://{metrics_addr}/metrics")).await.unwrap().text().await.unwrap();
    assert!(scraped.contains("portcullis_gateway_decisions_total"), "{scraped}");
    let public = client(&first, false).get(url.replace("/api/orders", "/metrics")).send().await.unwrap();
    assert_eq!(public.status().as_u16(), 404, "no route for /metrics on the public port");
    drop(stopping_metrics);
    tokio::time::timeout(std::time::Duration::from_secs(5), metrics_task).await.unwrap().unwrap();

    // Plain HTTP on the HTTPS port gets no answer.
    assert!(srv.http.get(format!("http://{addr}/api/orders")).bearer_auth(&bearer).send().await.is_err());

    // A renewed certificate is served from the next handshake on, without a restart.
    std::fs::write(&cert, renewed.cert.pem()).unwrap();
    std::fs::write(&key, renewed.signing_key.serialize_pem()).unwrap();
    assert!(gw.tls().unwrap().reload().unwrap());
    let resp = client(&renewed, false).get(&url).bearer_auth(&bearer).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(client(&first, false).get(&url).bearer_auth(&bearer).send().await.is_err(), "the old certificate is gone");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_reaches_https_upstreams_and_checks_their_certificates() {
    use portcullis_guard::gateway::{Gateway, GatewayConfig};
    let srv = start("gateway-https-upstream").await;
    let bearer = srv.service_token("svc", "read").await;
    // The upstream serves HTTPS with a certificate for `localhost`, from a CA of its own (the certificate itself).
    let (upstream_ca, stranger) = (
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap(),
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap(),
    );
    let file = |name: &str, text: String| {
        let path = srv.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca = file("upstream-ca.pem", upstream_ca.cert.pem());
    let tls = portcullis_http::tls::Tls::load(
        &ca,
        &file("upstream-key.pem", upstream_ca.signing_key.serialize_pem()),
        &["http/1.1"],
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let limits = portcullis_http::Limits {
        header_timeout: std::time::Duration::from_secs(5),
        max_header_bytes: 16 * 1024,
        drain_timeout: std::time::Duration::from_secs(1),
        max_connections: 16,
    };
    tokio::spawn(async move {
        portcullis_http::serve_tls(listener, echo_app(), limits, std::future::pending(), &tls).await
    });

    // Three routes to the one upstream: by its name, by an address its certificate does not name, and over
    // plain HTTP on its TLS port.
    let gateway = |ca_file: &std::path::Path| {
        let toml = format!(
            "issuer = \"{}\"\nupstream_ca = \"{}\"\n\
             [[route]]\npath_prefix = \"/api/\"\nupstream = \"https://localhost:{port}/v1\"\naudience = \"api\"\n\
             [[route]]\npath_prefix = \"/by-address/\"\nupstream = \"https://127.0.0.1:{port}\"\npublic = true\n\
             [[route]]\npath_prefix = \"/plain/\"\nupstream = \"http://localhost:{port}\"\npublic = true\n",
            srv.base,
            ca_file.display()
        );
        std::fs::write(srv.dir.path().join("gateway.toml"), toml).unwrap();
        GatewayConfig::load(&srv.dir.path().join("gateway.toml")).unwrap()
    };
    let config = gateway(&ca);
    assert!(config.check().unwrap().starts_with("3 routes (2 to HTTPS upstreams)"), "{}", config.check().unwrap());
    let gw = Gateway::start(&config, None).await.unwrap();
    let (addr, _stop) = serve_gateway(&gw, 1);
    let get = |path: &str| srv.http.get(format!("http://{addr}{path}")).bearer_auth(&bearer).send();

    // The verified request reaches the upstream over TLS, with its identity, on each of three requests.
    for _ in 0..3 {
        let resp = get("/api/orders?x=1").await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let seen: Value = resp.json().await.unwrap();
        assert_eq!((seen["path"].as_str(), seen["subject"].as_str()), (Some("/v1/api/orders?x=1"), Some("svc")));
    }
    // The certificate does not name 127.0.0.1, and plain HTTP to a TLS port gets no HTTP answer: both are 502.
    assert_eq!(get("/by-address/x").await.unwrap().status().as_u16(), 502);
    assert_eq!(get("/plain/x").await.unwrap().status().as_u16(), 502);
    assert_eq!(get("/api/orders").await.unwrap().status().as_u16(), 200, "the failures left the pool sound");

    // Trusting another CA, the gateway refuses the upstream's certificate.
    let other = file("other-ca.pem", stranger.cert.pem());
    let distrusting = Gateway::start(&gateway(&other), None).await.unwrap();
    let (addr2, _stop2) = serve_gateway(&distrusting, 1);
    let resp = srv.http.get(format!("http://{addr2}/api/orders")).bearer_auth(&bearer).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 502);

    // A CA file that cannot be read or holds no certificate stops the gateway at start, and `--check`.
    for (path, why) in [
        (srv.dir.path().join("missing.pem"), "missing.pem: "),
        (file("empty.pem", String::new()), "holds no certificate"),
    ] {
        let config = gateway(&path);
        let refused = Gateway::start(&config, None).await.unwrap_err().to_string();
        assert!(refused.contains("upstream_ca") && refused.contains(why), "{refused}");
        assert!(config.check().unwrap_err().to_string().contains(why));
    }
    // Upstreams only over HTTP(S), and without credentials in the URL.
    for (upstream, why) in [("ftp://localhost/", "http:// or https://"), ("http://user@localhost/", "credentials")] {
        let mut config = gateway(&ca);
        config.routes[0].upstream = Some(upstream.to_owned());
        let refused = config.check().unwrap_err().to_string();
        assert!(refused.contains(why), "{upstream}: {refused}");
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_takes_upstreams_in_turn_and_passes_over_one_it_cannot_reach() {
    use portcullis_guard::gateway::{Gateway, GatewayConfig};
    let srv = start("gateway-upstreams").await;
    let (a, b) = (echo_upstream().await, echo_upstream().await);
    let dead = || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let (dead1, dead2) = (dead(), dead());
    let toml = format!(
        "issuer = \"{}\"\n\
         [[route]]\npath_prefix = \"/both/\"\nupstreams = [\"{a}\", \"{b}\"]\npublic = true\n\
         [[route]]\npath_prefix = \"/one-dead/\"\nupstreams = [\"{dead1}\", \"{a}\"]\npublic = true\n\
         [[route]]\npath_prefix = \"/all-dead/\"\nupstreams = [\"{dead1}\", \"{dead2}\"]\npublic = true\n",
        srv.base
    );
    std::fs::write(srv.dir.path().join("gateway.toml"), toml).unwrap();
    let config = GatewayConfig::load(&srv.dir.path().join("gateway.toml")).unwrap();
    let gw = Gateway::start(&config, Some(serve::metrics_handle())).await.unwrap();
    let (addr, _stop) = serve_gateway(&gw, 1);
    // Which upstream answered (the Host it was sent), or the status.
    let answered = |path: &str| {
        let url = format!("http://{addr}{path}");
        async {
            let resp = srv.http.get(url).send().await.unwrap();
            match resp.status().as_u16() {
                200 => resp.json::<Value>().await.unwrap()["upstream"].as_str().unwrap().to_owned(),
                status => status.to_string(),
            }
        }
    };
    let connect_errors = || async {
        let metrics = srv.http.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
        metrics
            .lines()
            .find(|l| l.starts_with("portcullis_gateway_upstream_errors_total{kind=\"connect\"}"))
            .map_or(0, |l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
    };
    let (a, b) = (a.trim_start_matches("http://"), b.trim_start_matches("http://"));

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(answered("/both/x").await);
    }
    assert_eq!(seen, [a, b, a, b], "in turn");
    // The dead upstream costs one failed connection, then is passed over; no request fails.
    for _ in 0..5 {
        assert_eq!(answered("/one-dead/x").await, a);
    }
    assert_eq!(connect_errors().await, 1);
    // With every upstream down, 502 after one try of each.
    assert_eq!(answered("/all-dead/x").await, "502");
    assert_eq!(connect_errors().await, 3);

    // One upstream or several, not both; several share one path.
    for (route, why) in [
        (format!("upstream = \"{dead1}\"\nupstreams = [\"{dead2}\"]"), "not both"),
        (format!("upstreams = [\"{dead1}/v1\", \"{dead2}/v2\"]"), "share one path"),
    ] {
        let toml = format!("issuer = \"{}\"\n[[route]]\npath_prefix = \"/\"\npublic = true\n{route}\n", srv.base);
        std::fs::write(srv.dir.path().join("bad.toml"), toml).unwrap();
        let refused = GatewayConfig::load(&srv.dir.path().join("bad.toml")).unwrap().check().unwrap_err().to_string();
        assert!(refused.contains(why), "{refused}");
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_reloads_its_routes_without_a_restart_and_refuses_what_takes_one() {
    use portcullis_guard::gateway::{Gateway, GatewayConfig};
    let srv = start("gateway-reload").await;
    let bearer = srv.service_token("svc", "read").await;
    let (a, b) = (echo_upstream().await, echo_upstream().await);
    let file = srv.dir.path().join("gateway.toml");
    let write = |extra: &str, routes: &str| {
        std::fs::write(&file, format!("issuer = \"{}\"\n{extra}\n{routes}", srv.base)).unwrap();
    };
    let route = |prefix: &str, upstream: &str, audience: Option<&str>| match audience {
        Some(aud) => {
            format!("[[route]]\npath_prefix = \"{prefix}\"\nupstream = \"{upstream}\"\naudience = \"{aud}\"\n")
        }
        None => format!("[[route]]\npath_prefix = \"{prefix}\"\nupstream = \"{upstream}\"\npublic = true\n"),
    };
    write("", &(route("/a/", &a, None) + &route("/api/", &a, Some("api"))));
    let gw = Gateway::start(&GatewayConfig::load(&file).unwrap(), Some(serve::metrics_handle())).await.unwrap();
    let (addr, _stop) = serve_gateway(&gw, 2);
    // Which upstream answered, or the status; a new connection each time, so that both workers answer.
    let answered = |path: &str| {
        let url = format!("http://{addr}{path}");
        let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        let bearer = bearer.clone();
        async move {
            let resp = client.get(url).bearer_auth(bearer).send().await.unwrap();
            match resp.status().as_u16() {
                200 => resp.json::<Value>().await.unwrap()["upstream"].as_str().unwrap().to_owned(),
                status => status.to_string(),
            }
        }
    };
    let (at_a, at_b) = (a.trim_start_matches("http://").to_owned(), b.trim_start_matches("http://").to_owned());
    for _ in 0..4 {
        assert_eq!(
            (answered("/a/x").await, answered("/api/x").await, answered("/b/x").await),
            (at_a.clone(), at_a.clone(), "404".into())
        );
    }

    // New routes, to another upstream, with a body limit: every worker serves them at once.
    write("max_body_size = 10", &(route("/b/", &b, None) + &route("/api/", &b, Some("api"))));
    assert_eq!(gw.reload_file(&file).unwrap(), "2 routes");
    for _ in 0..4 {
        assert_eq!(
            (answered("/a/x").await, answered("/api/x").await, answered("/b/x").await),
            ("404".into(), at_b.clone(), at_b.clone())
        );
    }
    let big = srv.http.post(format!("http://{addr}/b/x")).body(vec![0u8; 11]).send().await.unwrap();
    assert_eq!(big.status().as_u16(), 413, "max_body_size is reloaded too");

    // What takes a restart refuses the whole reload, naming why, and the routes in use stay.
    let refusals = [
        (format!("listen = \"127.0.0.1:1\"\n{}", route("/c/", &a, None)), "listen changed"),
        (route("/c/", &a, Some("billing")), "audience \"billing\" is new"),
        (route("/c/", "ftp://x", None), "http:// or https://"),
        ("[[route]\n".to_owned(), "gateway.toml"),
    ];
    for (text, why) in &refusals {
        std::fs::write(&file, format!("issuer = \"{}\"\n{text}", srv.base)).unwrap();
        let refused = gw.reload_file(&file).unwrap_err().to_string();
        assert!(refused.contains(why), "{why}: {refused}");
        assert_eq!((answered("/b/x").await, answered("/c/x").await), (at_b.clone(), "404".into()));
    }
    let metrics = srv.http.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("portcullis_gateway_reloads_total{result=\"loaded\"} 1"), "{metrics}");
    assert!(metrics.contains("portcullis_gateway_reloads_total{result=\"refused\"} 4"), "{metrics}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_holds_request_bodies_to_max_body_size() {
    use portcullis_guard::gateway::{Gateway, GatewayConfig};
    let srv = start("gateway-body-limit").await;
    let upstream = echo_upstream().await;
    let gateway = |max_body_size: u64| {
        let toml = format!(
            "issuer = \"{}\"\nmax_body_size = {max_body_size}\n\
             [[route]]\npath_prefix = \"/\"\nupstream = \"{upstream}\"\npublic = true\n",
            srv.base
        );
        std::fs::write(srv.dir.path().join("gateway.toml"), toml).unwrap();
        let config = GatewayConfig::load(&srv.dir.path().join("gateway.toml")).unwrap();
        async move {
            let gw = Gateway::start(&config, None).await.unwrap();
            let (addr, stop) = serve_gateway(&gw, 1);
            (format!("http://{addr}/upload"), stop)
        }
    };
    // What the upstream saw: the body's length, or the gateway's status when it refused.
    let post = |url: String, body: Vec<u8>| async {
        let resp = srv.http.post(url).body(body).send().await.unwrap();
        match resp.status().as_u16() {
            200 => resp.json::<Value>().await.unwrap()["body"].as_u64().unwrap(),
            status => u64::from(status),
        }
    };
    // A body of unknown length, sent chunked in two chunks, byte for byte, all at once (so that the gateway has
    // read it all when it answers, and closes without leaving bytes unread, which would reset the connection).
    let chunked = |url: String, n: usize| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = url.trim_start_matches("http://").trim_end_matches("/upload").to_owned();
        let mut request =
            format!("POST /upload HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
                .into_bytes();
        for part in [n / 2, n - n / 2] {
            request.extend_from_slice(format!("{part:x}\r\n").as_bytes());
            request.extend(std::iter::repeat_n(b'7', part));
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(&request).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8_lossy(&response).into_owned();
        match response.split(' ').nth(1).unwrap_or_default() {
            "200" => {
                let json = &response[response.find("\r\n\r\n").unwrap() + 4..];
                serde_json::from_str::<Value>(json).unwrap()["body"].as_u64().unwrap()
            }
            status => status.parse().unwrap_or_else(|_| panic!("{response}")),
        }
    };

    let (url, _stop) = gateway(1000).await;
    assert_eq!(post(url.clone(), vec![1u8; 1000]).await, 1000, "a declared length at the limit passes");
    assert_eq!(post(url.clone(), vec![1u8; 1001]).await, 413, "one byte more is refused");
    assert_eq!(chunked(url.clone(), 1000).await, 1000, "a chunked body within the limit passes");
    assert_eq!(chunked(url.clone(), 1500).await, 413, "a chunked body is cut off at the limit");
    assert_eq!(post(url.clone(), Vec::new()).await, 0, "and the gateway goes on serving");
    // 0: no limit.
    let (url, _stop) = gateway(0).await;
    assert_eq!(chunked(url.clone(), 50_000).await, 50_000);
    assert_eq!(post(url, vec![1u8; 50_000]).await, 50_000);
    srv.stop().await;
}

/// Sends `request` byte for byte, then, after `pause` (if any), `rest`; returns the status the gateway answered,
/// or 0 when it closed without answering.
async fn raw_exchange(addr: &str, request: &[u8], pause: Option<(std::time::Duration, &[u8])>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    if let Some((pause, rest)) = pause {
        tokio::time::sleep(pause).await;
        // The gateway may have answered and closed by now: a failed write is part of the exchange.
        let _ = stream.write_all(rest).await;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let head = String::from_utf8_lossy(&response);
    head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_answers_a_broken_or_slow_request_body_as_the_clients_doing() {
    use portcullis_guard::gateway::{Gateway, GatewayConfig};
    let srv = start("gateway-client-body").await;
    let upstream = echo_upstream().await;
    let toml = format!(
        "issuer = \"{}\"\nupstream_timeout = 1\n[[route]]\npath_prefix = \"/\"\nupstream = \"{upstream}\"\npublic = true\n",
        srv.base
    );
    std::fs::write(srv.dir.path().join("gateway.toml"), toml).unwrap();
    let config = GatewayConfig::load(&srv.dir.path().join("gateway.toml")).unwrap();
    let gw = Gateway::start(&config, Some(serve::metrics_handle())).await.unwrap();
    let (addr, _stop) = serve_gateway(&gw, 1);
    let addr = addr.to_string();
    let post = |path: &str, framing: &str| {
        format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\n{framing}\r\nconnection: close\r\n\r\n").into_bytes()
    };

    // A chunked coding the client breaks (a chunk size with a sign): 400, where it used to be a 502 logged as the
    // upstream's failure.
    let mut broken = post("/upload", "transfer-encoding: chunked");
    broken.extend_from_slice(b"3\r\nabc\r\n+3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(raw_exchange(&addr, &broken, None).await, 400);
    // A body still arriving when the upstream timeout strikes: 408, the client's delay.
    let slow = post("/upload", "content-length: 10");
    let rest = Some((std::time::Duration::from_millis(1600), b"0123456789".as_slice()));
    assert_eq!(raw_exchange(&addr, &slow, rest).await, 408);
    // A whole body and an upstream that takes too long: 504, the upstream's.
    let mut whole = post("/slow/upload", "content-length: 3");
    whole.extend_from_slice(b"abc");
    assert_eq!(raw_exchange(&addr, &whole, None).await, 504);
    // A body that reaches the upstream whole is passed on as before.
    let mut fine = post("/upload", "transfer-encoding: chunked");
    fine.extend_from_slice(b"3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(raw_exchange(&addr, &fine, None).await, 200);

    // The client's failures are refusals with their reasons; only the timeout counts against the upstream.
    let metrics = srv.http.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    let count = |series: &str| {
        metrics.lines().find_map(|l| l.strip_prefix(series)).map_or(0.0, |v| v.trim().parse::<f64>().unwrap())
    };
    assert_eq!(
        count(r#"portcullis_gateway_decisions_total{result="deny",reason="bad request body"}"#),
        1.0,
        "{metrics}"
    );
    assert_eq!(count(r#"portcullis_gateway_decisions_total{result="deny",reason="body too slow"}"#), 1.0);
    assert_eq!(count(r#"portcullis_gateway_upstream_errors_total{kind="timeout"}"#), 1.0, "{metrics}");
    assert_eq!(count(r#"portcullis_gateway_upstream_errors_total{kind="request"}"#), 0.0, "{metrics}");
    srv.stop().await;
}

/// An upstream that switches to a protocol of its own (`Upgrade: shout`) and answers every byte sent after
/// that in upper case; it names the subject the gateway told it in `x-seen-subject`.
async fn shouting_upstream() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let subject =
                    head.lines().find_map(|l| l.strip_prefix("x-auth-subject: ")).unwrap_or_default().trim().to_owned();
                if !(head.contains("\r\nupgrade: shout\r\n") && head.contains("\r\nconnection: upgrade\r\n")) {
                    let _ = stream.write_all(b"HTTP/1.1 426 Upgrade Required\r\ncontent-length: 0\r\n\r\n").await;
                    return;
                }
                let switched = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: shout\r\nx-seen-subject: {subject}\r\n\r\n"
                );
                if stream.write_all(switched.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// Sends `text` on an open tunnel and reads what comes back.
async fn shout(stream: &mut tokio::net::TcpStream, text: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; text.len()];
    tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_exact(&mut buf)).await.unwrap().unwrap();
    String::from_utf8(buf).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_relays_upgraded_connections_behind_the_token_check_and_bounds_them() {
    use portcullis_guard::gateway::{Gateway, GatewayConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = start("gateway-upgrade").await;
    let secret = srv.service_client("svc", &["read"]).await;
    let upstream = shouting_upstream().await;
    let feed_secret = srv.service_client("gw", &["portcullis:events"]).await;
    std::fs::write(srv.dir.path().join("gw.secret"), &feed_secret).unwrap();
    let toml = format!(
        "issuer = \"{}\"\nclient_id = \"gw\"\nclient_secret_file = \"{}\"\nmax_connections = 2\n[[route]]\npath_prefix = \"/live/\"\nupstream = \"{upstream}\"\n\
         audience = \"api\"\nscopes = [\"read\"]\n",
        srv.base,
        srv.dir.path().join("gw.secret").display()
    );
    std::fs::write(srv.dir.path().join("gateway.toml"), toml).unwrap();
    let gw = Gateway::start(&GatewayConfig::load(&srv.dir.path().join("gateway.toml")).unwrap(), None).await.unwrap();
    let (addr, _stop) = serve_gateway(&gw, 1);
    let token = srv.client_token("svc", &secret, "read").await;
    // Opens a tunnel: the response head, and the stream when it switched.
    let open = |bearer: Option<String>| async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = bearer.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
        let ask = format!("GET /live/feed HTTP/1.1\r\nhost: a\r\nconnection: Upgrade\r\nupgrade: shout\r\n{auth}\r\n");
        stream.write_all(ask.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap() == 1 {
            head.push(byte[0]);
        }
        (String::from_utf8_lossy(&head).to_ascii_lowercase(), stream)
    };
    let (head, _) = open(None).await;
    assert!(head.starts_with("http/1.1 401"), "no token, no tunnel: {head}");
    let (head, mut first) = open(Some(token.clone())).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("\r\nupgrade: shout\r\n") && head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(head.contains("x-seen-subject: svc"), "the upstream learnt the verified subject: {head}");
    assert_eq!(shout(&mut first, "hello").await, "HELLO");
    assert_eq!(shout(&mut first, "both ways, many times").await, "BOTH WAYS, MANY TIMES");

    // max_connections = 2 bounds open tunnels too.
    let (head, mut second) = open(Some(token.clone())).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    let (head, _) = open(Some(token.clone())).await;
    assert!(head.starts_with("http/1.1 503"), "a third tunnel: {head}");
    assert_eq!(shout(&mut second, "still open").await, "STILL OPEN");
    drop(first);
    let mut waited = 0;
    let mut third = loop {
        let (head, stream) = open(Some(token.clone())).await;
        if head.starts_with("http/1.1 101") {
            break stream;
        }
        assert!(waited < 50, "a closed tunnel frees its slot: {head}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        waited += 1;
    };
    assert_eq!(shout(&mut third, "again").await, "AGAIN");

    // A connection lives no longer than its token: revoked, the gateway closes it within seconds.
    let revoked = srv
        .http
        .post(format!("{}/oauth2/revoke", srv.base))
        .basic_auth("svc", Some(&secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(std::time::Duration::from_secs(6), third.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "still open {:?} after the revocation", started.elapsed());
    assert!(matches!(second.read(&mut buf).await, Ok(0) | Err(_)), "every tunnel the token opened");
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_uses_the_forward_auth_endpoint() {
    use portcullis_guard::gateway::{self, Gateway, GatewayConfig};
    let Some(nginx) = nginx() else { return };
    let srv = start("nginx").await;
    let secret = srv.service_client("svc", &["read"]).await;
    let upstream = echo_upstream().await;
    std::fs::write(
        srv.dir.path().join("gateway.toml"),
        format!(
            "issuer = \"{}\"\n[[route]]\npath_prefix = \"/api/\"\naudience = \"api\"\nscopes = [\"read\"]\n\
             [[route]]\npath_prefix = \"/public/\"\npublic = true\n\
             [[route]]\nhost = \"open.example\"\npath_prefix = \"/\"\npublic = true\n\
             [[route]]\npath_prefix = \"/catalog/\"\nmethods = [\"GET\"]\npublic = true\n\
             [[route]]\npath_prefix = \"/catalog/\"\naudience = \"api\"\nscopes = [\"read\"]\n",
            srv.base
        ),
    )
    .unwrap();
    let config = GatewayConfig::load(&srv.dir.path().join("gateway.toml")).unwrap();
    let gw = Gateway::start(&config, None).await.unwrap();
    let (gw_addr, _task) = gateway::serve(gw, "127.0.0.1:0", std::future::pending()).await.unwrap();
    let port = free_port();
    let prefix = srv.dir.path().join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    let conf = format!(
        r#"
daemon off;
master_process off;
error_log {p}/logs/error.log warn;
pid {p}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {p}/body; proxy_temp_path {p}/proxy; fastcgi_temp_path {p}/fastcgi;
  uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      auth_request /_auth;
      auth_request_set $auth_subject $upstream_http_x_auth_subject;
      auth_request_set $auth_client $upstream_http_x_auth_client;
      auth_request_set $auth_scopes $upstream_http_x_auth_scopes;
      auth_request_set $auth_roles $upstream_http_x_auth_roles;
      proxy_set_header X-Auth-Subject $auth_subject;
      proxy_set_header X-Auth-Client $auth_client;
      proxy_set_header X-Auth-Scopes $auth_scopes;
      proxy_set_header X-Auth-Roles $auth_roles;
      proxy_pass {upstream};
    }}
    location = /_auth {{
      internal;
      proxy_pass http://{gw_addr}/check;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"#,
        p = prefix.display()
    );
    std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
    let child = std::process::Command::new(nginx)
        .args(["-p", prefix.to_str().unwrap(), "-c", prefix.join("nginx.conf").to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _nginx = Killed(child);
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        ready,
        "nginx did not start: {}",
        std::fs::read_to_string(prefix.join("logs/error.log")).unwrap_or_default()
    );
    let (_, body) = srv.form("/oauth2/token", Some(("svc", &secret)), &[("grant_type", "client_credentials")]).await;
    let resp = srv.http.get(format!("{base}/api/orders")).bearer_auth(s(&body, "access_token")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let seen: Value = resp.json().await.unwrap();
    assert_eq!(seen["subject"], "svc");
    assert_eq!((seen["client"].as_str(), seen["scopes"].as_str()), (Some("svc"), Some("read")));
    // With a good token, identity headers the client adds do not reach the upstream: the README's configuration
    // sets all four from the gateway's answer.
    let resp = srv
        .http
        .get(format!("{base}/api/orders"))
        .bearer_auth(s(&body, "access_token"))
        .header("x-auth-scopes", "admin")
        .header("x-auth-client", "root")
        .send()
        .await
        .unwrap();
    let seen: Value = resp.json().await.unwrap();
    assert_eq!((seen["client"].as_str(), seen["scopes"].as_str()), (Some("svc"), Some("read")));
    let resp = srv.http.get(format!("{base}/api/orders")).header("x-auth-subject", "admin").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401, "no token: nginx refuses, whatever identity header is sent");
    let resp = srv.http.get(format!("{base}/api/orders")).bearer_auth("forged.token.here").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // nginx picks its location by the normalised path (/api/orders) but sends the raw one in X-Original-URI:
    // judged raw, "/public/../api/orders" would pass as a public route.
    let addr = format!("127.0.0.1:{port}");
    assert_eq!(raw_status(&addr, "/public/x", None).await, 200);
    assert_eq!(raw_status(&addr, "/public/../api/orders", None).await, 403);
    assert_eq!(raw_status(&addr, "/public/%2e%2e/api/orders", None).await, 403);
    // nginx hands the auth subrequest every header the client sent beside the ones it sets. A client naming a
    // public path or method in the headers another proxy uses (Traefik's, Caddy's) must not have them judged
    // instead of what nginx asks about: before, each of these went through without a token.
    let status = |resp: reqwest::Response| resp.status().as_u16();
    let sent = srv.http.get(format!("{base}/api/orders")).header("x-forwarded-uri", "/public/x").send().await;
    assert_eq!(status(sent.unwrap()), 403, "x-forwarded-uri sent by the client");
    let sent = srv.http.post(format!("{base}/api/orders")).header("x-forwarded-uri", "/public/x").send().await;
    assert_eq!(status(sent.unwrap()), 403, "x-forwarded-uri sent by the client, with another method");
    assert_eq!(status(srv.http.get(format!("{base}/catalog/x")).send().await.unwrap()), 200, "GET is public");
    assert_eq!(status(srv.http.post(format!("{base}/catalog/x")).send().await.unwrap()), 401, "POST is not");
    let sent = srv.http.post(format!("{base}/catalog/x")).header("x-forwarded-method", "GET").send().await;
    assert_eq!(status(sent.unwrap()), 403, "x-forwarded-method sent by the client");
    // The host nginx sets wins over one the client sends; host routes work through it.
    let sent = srv.http.get(format!("{base}/api/orders")).header("x-forwarded-host", "open.example").send().await;
    assert_eq!(status(sent.unwrap()), 401, "x-forwarded-host sent by the client");
    let sent = srv.http.get(format!("{base}/anything")).header("host", "open.example").send().await;
    assert_eq!(status(sent.unwrap()), 200, "a public host route, named by the request's own Host");
    srv.stop().await;
}
