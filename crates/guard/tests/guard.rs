//! The guard against a local JWKS server it does not control: expiry, audience, key removal, an unreachable
//! server (stale keys until the bound, then 503), and the RFC 6750 answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use portcullis_guard::layer::rejection_response;
use portcullis_guard::{Clock, Guard, GuardConfig, Rejection, Requirement};
use portcullis_jose::{jwt, Algorithm, SigningKey, UnixTime, AT_JWT};
use portcullis_revocation::Kind;

const ISSUER: &str = "https://auth.test";

struct Jwks {
    doc: Mutex<String>,
    down: AtomicBool,
}

async fn jwks_server(jwks: Arc<Jwks>) -> String {
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let jwks = Arc::clone(&jwks);
            async move {
                if jwks.down.load(Ordering::SeqCst) {
                    return (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new());
                }
                (axum::http::StatusCode::OK, jwks.doc.lock().unwrap().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/jwks.json")
}

fn sign(key: &SigningKey, aud: &str, iat: i64, exp: i64, scope: &str) -> String {
    let copy = portcullis_jose::jwk::signing_key_from_jwk(&key.to_jwk().unwrap(), &[]).unwrap();
    jwt::Signer::new(copy, Some(AT_JWT))
        .sign_json(&format!(
            r#"{{"iss":"{ISSUER}","sub":"alice","aud":"{aud}","iat":{iat},"exp":{exp},"jti":"j{iat}{exp}","client_id":"app","scope":"{scope}"}}"#
        ))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_expiry_audience_revocation_key_removal_and_an_unreachable_server() {
    judged(false).await;
}

/// A worker's handle (with its own front cache, as each gateway worker has) gives every answer the shared guard
/// gives, through the same changes: expiry, revocation of a token it holds, and new keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_handle_answers_as_the_shared_guard_does() {
    judged(true).await;
}

async fn judged(worker: bool) {
    let key = SigningKey::generate(Algorithm::ES256).unwrap().with_kid("k1");
    let jwks = Arc::new(Jwks {
        doc: Mutex::new(format!(r#"{{"keys":[{}]}}"#, key.verifying_key().to_jwk().unwrap())),
        down: AtomicBool::new(false),
    });
    let url = jwks_server(Arc::clone(&jwks)).await;
    let now = Arc::new(AtomicI64::new(1_800_000_000));
    let clock = {
        let now = Arc::clone(&now);
        Clock::new(move || UnixTime::from_secs(now.load(Ordering::SeqCst)))
    };
    let mut config = GuardConfig::new(ISSUER, "api");
    config.jwks_uri = Some(url);
    config.leeway = 0;
    config.timing.max_stale = 600;
    let guard = Guard::start_with_clock(config, clock).await.unwrap();
    let guard = if worker { guard.for_worker() } else { guard };
    let t0 = now.load(Ordering::SeqCst);
    let good = sign(&key, "api", t0, t0 + 300, "read write");
    let bearer = format!("Bearer {good}");
    let who = guard.authorize(Some(&bearer), &Requirement::scopes(["read"])).await.unwrap();
    assert_eq!((who.subject.as_str(), who.scopes.len()), ("alice", 2));
    // The second use is a cache hit and gives the same identity.
    assert_eq!(guard.verify(&good).unwrap(), who);
    let need = |r: Requirement| {
        let (guard, bearer) = (guard.clone(), bearer.clone());
        async move { guard.authorize(Some(&bearer), &r).await.map(|_| ()) }
    };
    assert_eq!(need(Requirement::scopes(["admin"])).await, Err(Rejection::InsufficientScope("admin".into())));
    assert_eq!(need(Requirement::default().and_roles(["ops"])).await, Err(Rejection::InsufficientRole));
    assert_eq!(need(Requirement::default().for_audience("billing")).await, Err(Rejection::Invalid("wrong audience")));
    let other_aud = sign(&key, "billing", t0, t0 + 300, "read");
    assert_eq!(guard.verify(&other_aud), Err(Rejection::Invalid("wrong audience")));
    assert_eq!(guard.authorize(None, &Requirement::default()).await, Err(Rejection::Missing));
    assert_eq!(guard.authorize(Some("Basic abc"), &Requirement::default()).await, Err(Rejection::Malformed));
    // A header that is not `Bearer` and one token68 is malformed (400), also when a valid token is in it; a
    // token68 that is no valid token is invalid (401).
    for header in ["Bearer", "Bearer ", "Bearer a\"b", &format!("Bearer {good}\""), &format!("Bearer {good} x")] {
        let judged = guard.authorize(Some(header), &Requirement::default()).await;
        assert_eq!(judged, Err(Rejection::Malformed), "{header}");
    }
    let not_a_jwt = guard.authorize(Some("Bearer a~b"), &Requirement::default()).await;
    assert!(matches!(not_a_jwt, Err(Rejection::Invalid(_))), "{not_a_jwt:?}");

    // Revocation is judged on every use, cached or not; other tokens are not affected.
    let revoked = sign(&key, "api", t0 - 1, t0 + 300, "read");
    assert!(guard.verify(&revoked).is_ok() && guard.verify(&revoked).is_ok());
    guard.revocations().apply(1, Kind::Token, &format!("j{}{}", t0 - 1, t0 + 300), 0, t0 + 400);
    assert_eq!(guard.verify(&revoked), Err(Rejection::Revoked));
    assert_eq!(guard.verify(&revoked), Err(Rejection::Revoked), "and stays revoked");
    assert_eq!(guard.verify(&good).unwrap(), who);
    guard.revocations().apply(2, Kind::Subject, "alice", t0, t0 + 400);
    assert_eq!(guard.verify(&good), Err(Rejection::Revoked), "a subject's cut-off reaches a cached token");
    now.store(t0 + 2, Ordering::SeqCst);
    let after_cut = sign(&key, "api", t0 + 2, t0 + 300, "read write");
    assert!(guard.verify(&after_cut).is_ok(), "tokens issued after the cut-off pass");

    // What outlives a request (an upgraded connection) asks again whether its identity still holds.
    let holding = guard.verify(&after_cut).unwrap();
    assert_eq!(guard.still_holds(&holding), Ok(()));
    assert_eq!(guard.still_holds(&who), Err(Rejection::Revoked), "alice's tokens before the cut-off");

    // Expiry is judged on every use, cached or not.
    now.store(t0 + 300, Ordering::SeqCst);
    assert_eq!(guard.verify(&after_cut), Err(Rejection::Invalid("expired")));
    assert_eq!(guard.still_holds(&holding), Err(Rejection::Invalid("expired")));
    now.store(t0 + 10, Ordering::SeqCst);

    // The server goes down: the last keys serve until the stale bound (ttl 300 + 600), then 503.
    jwks.down.store(true, Ordering::SeqCst);
    let late = sign(&key, "api", t0 + 800, t0 + 1100, "read");
    now.store(t0 + 850, Ordering::SeqCst);
    assert!(guard.jwks().fetch().await.is_err());
    assert!(guard.verify(&late).is_ok(), "stale keys still serve within the bound");
    assert!(guard.verify(&late).is_ok(), "from the cache too");
    now.store(t0 + 900, Ordering::SeqCst);
    assert_eq!(guard.verify(&late), Err(Rejection::Unavailable("no usable keys")));
    let response = rejection_response(&Rejection::Unavailable("no usable keys"), "api");
    assert_eq!(response.status().as_u16(), 503);

    // The server returns without the key: it stops verifying at once.
    let rotated = SigningKey::generate(Algorithm::ES256).unwrap().with_kid("k2");
    *jwks.doc.lock().unwrap() = format!(r#"{{"keys":[{}]}}"#, rotated.verifying_key().to_jwk().unwrap());
    jwks.down.store(false, Ordering::SeqCst);
    guard.jwks().fetch().await.unwrap();
    assert_eq!(guard.verify(&late), Err(Rejection::Invalid("unknown key")));
    let fresh = sign(&rotated, "api", t0 + 900, t0 + 1200, "read");
    assert!(guard.verify(&fresh).is_ok());
}

/// The time the DPoP tests run at.
const T0: i64 = 1_800_000_000;

/// A guard at the fixed time [`T0`] trusting one issuer key (served by a local JWKS server), and that key's
/// access-token signer.
async fn guard_with_issuer(configure: impl FnOnce(&mut GuardConfig)) -> (Guard, jwt::Signer) {
    let key = SigningKey::generate(Algorithm::ES256).unwrap().with_kid("k1");
    let jwks = Arc::new(Jwks {
        doc: Mutex::new(format!(r#"{{"keys":[{}]}}"#, key.verifying_key().to_jwk().unwrap())),
        down: AtomicBool::new(false),
    });
    let mut config = GuardConfig::new(ISSUER, "api");
    config.jwks_uri = Some(jwks_server(jwks).await);
    configure(&mut config);
    let guard = Guard::start_with_clock(config, Clock::new(|| UnixTime::from_secs(T0))).await.unwrap();
    (guard, jwt::Signer::new(key, Some(AT_JWT)))
}

/// RFC 9449 §7.1: a DPoP-bound token (`cnf.jkt`) is refused when presented as a bearer token, and a `cnf` the
/// guard cannot read makes the token malformed rather than unbound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_bound_token_is_refused_as_a_bearer_token() {
    let (guard, signer) = guard_with_issuer(|_| {}).await;
    let t0 = T0;
    let token = |cnf: &str| {
        signer
            .sign_json(&format!(
                r#"{{"iss":"{ISSUER}","sub":"alice","aud":"api","iat":{t0},"exp":{},"jti":"j{}"{cnf}}}"#,
                t0 + 300,
                cnf.len()
            ))
            .unwrap()
    };
    let bearer = |t: String| {
        let guard = guard.clone();
        async move { guard.authorize(Some(&format!("Bearer {t}")), &Requirement::default()).await.map(|_| ()) }
    };
    assert_eq!(bearer(token("")).await, Ok(()));
    assert_eq!(
        bearer(token(r#","cnf":{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}"#)).await,
        Err(Rejection::Invalid("DPoP-bound token sent as Bearer"))
    );
    // (A `cnf` that is not an object is refused by the JOSE layer already: RFC 7800 makes it one.)
    for unreadable in [r#","cnf":{"x5t#S256":"abc"}"#, r#","cnf":{"jkt":""}"#, r#","cnf":{"jkt":7}"#] {
        assert_eq!(bearer(token(unreadable)).await, Err(Rejection::Invalid("malformed claims")), "{unreadable}");
    }
}

#[test]
fn answers_follow_rfc_6750() {
    let cases = [
        (Rejection::Missing, 401, Some("Bearer realm=\"api\"")),
        (Rejection::Malformed, 400, Some("Bearer realm=\"api\", error=\"invalid_request\"")),
        (
            Rejection::Invalid("expired"),
            401,
            Some("Bearer realm=\"api\", error=\"invalid_token\", error_description=\"expired\""),
        ),
        (
            Rejection::InsufficientScope("read write".into()),
            403,
            Some("Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"read write\""),
        ),
        (Rejection::Unavailable("no usable keys"), 503, None),
    ];
    for (rejection, status, challenge) in cases {
        let response = rejection_response(&rejection, "api");
        assert_eq!(response.status().as_u16(), status, "{rejection:?}");
        assert_eq!(response.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), challenge);
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
    assert_eq!(Rejection::Missing.challenge("a\"b"), Some("Bearer realm=\"ab\"".into()), "no header injection");
    // A request that used the DPoP scheme is answered in it (RFC 9449 §7.1), naming the proof algorithms.
    use portcullis_guard::layer::rejection_response_for;
    use portcullis_guard::{Scheme, DPOP_ALGS};
    let algs = format!("algs=\"{DPOP_ALGS}\"");
    for (rejection, challenge) in [
        (Rejection::Missing, format!("DPoP realm=\"api\", {algs}")),
        (
            Rejection::Invalid("expired"),
            format!("DPoP realm=\"api\", error=\"invalid_token\", error_description=\"expired\", {algs}"),
        ),
        (
            Rejection::InsufficientScope("read".into()),
            format!("DPoP realm=\"api\", error=\"insufficient_scope\", scope=\"read\", {algs}"),
        ),
        (
            Rejection::InvalidDpopProof("replayed proof"),
            format!("DPoP realm=\"api\", error=\"invalid_dpop_proof\", error_description=\"replayed proof\", {algs}"),
        ),
    ] {
        let response = rejection_response_for(&rejection, "api", Scheme::Dpop);
        assert_eq!(response.headers()["www-authenticate"].to_str().unwrap(), challenge);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_feed_fails_closed_after_the_bound_when_configured() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap().with_kid("k1");
    let jwks = Arc::new(Jwks {
        doc: Mutex::new(format!(r#"{{"keys":[{}]}}"#, key.verifying_key().to_jwk().unwrap())),
        down: AtomicBool::new(false),
    });
    let url = jwks_server(jwks).await;
    let now = Arc::new(AtomicI64::new(1_800_000_000));
    let clock = {
        let now = Arc::clone(&now);
        Clock::new(move || UnixTime::from_secs(now.load(Ordering::SeqCst)))
    };
    // The issuer (and so its /events and token endpoint) does not answer.
    let mut config = GuardConfig::new("http://127.0.0.1:9", "api");
    config.jwks_uri = Some(url);
    config.events = Some(("gateway".into(), "secret".into()));
    config.fail_closed_after = Some(60);
    let guard = Guard::start_with_clock(config, clock).await.unwrap();
    let worker = guard.for_worker();
    let t0 = now.load(Ordering::SeqCst);
    let token = jwt::Signer::new(key, Some(AT_JWT))
        .sign_json(&format!(
            r#"{{"iss":"http://127.0.0.1:9","sub":"a","aud":"api","iat":{t0},"exp":{},"jti":"j"}}"#,
            t0 + 300
        ))
        .unwrap();
    assert!(guard.verify(&token).is_ok(), "within the bound the guard keeps serving");
    assert!(worker.verify(&token).is_ok() && worker.verify(&token).is_ok(), "so does a worker, cache warm");
    now.store(t0 + 61, Ordering::SeqCst);
    assert_eq!(guard.feed_lag(), Some(61));
    assert_eq!(guard.verify(&token), Err(Rejection::Unavailable("revocation feed unreachable")));
    assert_eq!(worker.verify(&token), Err(Rejection::Unavailable("revocation feed unreachable")));
}

/// `Authorization: DPoP` with a proof (RFC 9449 §7): every proof check runs on every request, cached token or
/// not; a failed proof does not burn its `jti`; each refusal has its reason and a `DPoP` challenge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_bound_tokens_need_a_fresh_proof_from_their_key() {
    use portcullis_guard::PresentedRequest;
    use portcullis_jose::dpop::sign_proof;
    let (guard, signer) = guard_with_issuer(|_| {}).await;
    let t0 = T0;
    let client = SigningKey::generate(Algorithm::ES256).unwrap();
    let jkt = client.verifying_key().thumbprint();
    let token = signer
        .sign_json(&format!(
            r#"{{"iss":"{ISSUER}","sub":"alice","aud":"api","iat":{t0},"exp":{},"jti":"t1","scope":"read","cnf":{{"jkt":"{jkt}"}}}}"#,
            t0 + 300
        ))
        .unwrap();
    let ath = portcullis_jose::dpop::access_token_hash(&token);
    let api = "https://api.example/orders";
    let proof = |key: &SigningKey, jti: &str, htm: &str, htu: &str, with_ath: bool| {
        let ath = if with_ath { format!(r#","ath":"{ath}""#) } else { String::new() };
        sign_proof(key, &format!(r#"{{"jti":"{jti}","htm":"{htm}","htu":"{htu}","iat":{t0}{ath}}}"#)).unwrap()
    };
    let authorization = format!("DPoP {token}");
    let ask = |proofs: Vec<String>, method: &'static str| {
        let (guard, authorization) = (guard.clone(), authorization.clone());
        async move {
            let dpop: Vec<&str> = proofs.iter().map(String::as_str).collect();
            let request = PresentedRequest { authorization: Some(&authorization), dpop: &dpop, method, url: api };
            guard.authorize_request(&request, &Requirement::scopes(["read"])).await.map(|who| who.subject.clone())
        }
    };
    let dpop_error = |why: &'static str| Err(Rejection::InvalidDpopProof(why));
    assert_eq!(ask(vec![proof(&client, "p1", "GET", api, true)], "GET").await, Ok("alice".into()));
    // The token is cached now; the proof is still checked, and must be new.
    assert_eq!(ask(vec![proof(&client, "p2", "GET", &format!("{api}?page=2"), true)], "GET").await, Ok("alice".into()));
    assert_eq!(ask(vec![proof(&client, "p1", "GET", api, true)], "GET").await, dpop_error("replayed proof"));
    assert_eq!(ask(vec![], "GET").await, dpop_error("exactly one DPoP header is required"));
    let two = vec![proof(&client, "p3", "GET", api, true), proof(&client, "p4", "GET", api, true)];
    assert_eq!(ask(two, "GET").await, dpop_error("exactly one DPoP header is required"));
    // A failed proof does not burn its jti: p5 fails for its method, then a good p5 passes.
    assert_eq!(ask(vec![proof(&client, "p5", "POST", api, true)], "GET").await, dpop_error("htm does not match"));
    assert_eq!(ask(vec![proof(&client, "p5", "GET", api, true)], "GET").await, Ok("alice".into()));
    let elsewhere = "https://api.example/admin";
    assert_eq!(ask(vec![proof(&client, "p6", "GET", elsewhere, true)], "GET").await, dpop_error("htu does not match"));
    assert_eq!(
        ask(vec![proof(&client, "p7", "GET", api, false)], "GET").await,
        dpop_error("ath does not match the token")
    );
    let thief = SigningKey::generate(Algorithm::ES256).unwrap();
    assert_eq!(
        ask(vec![proof(&thief, "p8", "GET", api, true)], "GET").await,
        dpop_error("the proof's key is not the token's key")
    );
    // The same token as a bearer token is refused (RFC 9449 §7.1).
    let bearer = guard.authorize(Some(&format!("Bearer {token}")), &Requirement::default()).await.map(|_| ());
    assert_eq!(bearer, Err(Rejection::Invalid("DPoP-bound token sent as Bearer")));
    // An unbound token cannot use the DPoP scheme.
    let plain = signer
        .sign_json(&format!(r#"{{"iss":"{ISSUER}","sub":"bob","aud":"api","iat":{t0},"exp":{},"jti":"t2"}}"#, t0 + 300))
        .unwrap();
    let dpop = [proof(&client, "p9", "GET", api, true)];
    let dpop: Vec<&str> = dpop.iter().map(String::as_str).collect();
    let auth = format!("DPoP {plain}");
    let request = PresentedRequest { authorization: Some(&auth), dpop: &dpop, method: "GET", url: api };
    let unbound = guard.authorize_request(&request, &Requirement::default()).await.map(|_| ());
    assert_eq!(unbound, Err(Rejection::Invalid("token is not bound to a DPoP key")));

    let response = rejection_response(&Rejection::InvalidDpopProof("replayed proof"), "api");
    assert_eq!(response.status().as_u16(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("DPoP realm=\"api\", error=\"invalid_dpop_proof\""), "{challenge}");
    assert!(challenge.contains("algs=\"ES256 "), "{challenge}");
    // The challenge names exactly the algorithms proofs may use.
    let mut advertised: Vec<&str> = portcullis_guard::DPOP_ALGS.split(' ').collect();
    let mut accepted: Vec<&str> = Algorithm::asymmetric().map(|a| a.name()).collect();
    advertised.sort_unstable();
    accepted.sort_unstable();
    assert_eq!(advertised, accepted);
}

/// A guard configured with a nonce secret demands its nonces (RFC 9449 §9): a proof without one, or with a
/// forged one, gets 401 `use_dpop_nonce` with a fresh nonce in `DPoP-Nonce`, and burns nothing; the retry with
/// that nonce passes; a nonce made under another secret does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_with_a_nonce_secret_demands_its_nonces() {
    use portcullis_guard::PresentedRequest;
    use portcullis_jose::dpop::{sign_proof, Nonces};
    let secret = [7u8; 32];
    let (guard, signer) = guard_with_issuer(|c| c.dpop_nonces = Some(Arc::new(Nonces::new(&secret)))).await;
    let t0 = T0;
    let client = SigningKey::generate(Algorithm::ES256).unwrap();
    let jkt = client.verifying_key().thumbprint();
    let token = signer
        .sign_json(&format!(
            r#"{{"iss":"{ISSUER}","sub":"alice","aud":"api","iat":{t0},"exp":{},"jti":"t1","cnf":{{"jkt":"{jkt}"}}}}"#,
            t0 + 300
        ))
        .unwrap();
    let ath = portcullis_jose::dpop::access_token_hash(&token);
    let api = "https://api.example/orders";
    let proof = |jti: &str, nonce: &str| {
        let nonce = if nonce.is_empty() { String::new() } else { format!(r#","nonce":"{nonce}""#) };
        sign_proof(&client, &format!(r#"{{"jti":"{jti}","htm":"GET","htu":"{api}","iat":{t0},"ath":"{ath}"{nonce}}}"#))
            .unwrap()
    };
    let authorization = format!("DPoP {token}");
    let ask = |guard: Guard, proof: String| {
        let authorization = authorization.clone();
        async move {
            let dpop = [proof.as_str()];
            let request =
                PresentedRequest { authorization: Some(&authorization), dpop: &dpop, method: "GET", url: api };
            guard.authorize_request(&request, &Requirement::default()).await.map(|who| who.subject.clone())
        }
    };
    let Err(Rejection::UseDpopNonce(nonce)) = ask(guard.clone(), proof("n1", "")).await else {
        panic!("a proof without a nonce must get use_dpop_nonce")
    };
    let response = rejection_response(&Rejection::UseDpopNonce(nonce.clone()), "api");
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers()["dpop-nonce"].to_str().unwrap(), nonce);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("DPoP realm=\"api\", error=\"use_dpop_nonce\""), "{challenge}");
    let forged = ask(guard.clone(), proof("n2", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")).await;
    assert!(matches!(forged, Err(Rejection::UseDpopNonce(_))), "{forged:?}");
    // The refused proofs burned nothing: n1 passes with the nonce.
    assert_eq!(ask(guard.clone(), proof("n1", &nonce)).await, Ok("alice".into()));
    // A nonce made with another secret (another deployment) is refused.
    let foreign = Nonces::new(&[8; 32]).issue(UnixTime::from_secs(t0));
    assert!(matches!(ask(guard.clone(), proof("n3", &foreign)).await, Err(Rejection::UseDpopNonce(_))));
}

/// The tower layer with DPoP: the proof's `htu` is the origin the client addressed (`public_origin`) plus the
/// path; a good proof passes, its replay is refused with a `DPoP` challenge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_checks_dpop_proofs_against_the_public_origin() {
    use portcullis_guard::layer::{Auth, GuardLayer};
    use portcullis_jose::dpop::sign_proof;
    use tower::ServiceExt as _;
    let (guard, signer) = guard_with_issuer(|c| c.public_origin = Some("https://api.example/".into())).await;
    let t0 = T0;
    let client = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let token = signer
        .sign_json(&format!(
            r#"{{"iss":"{ISSUER}","sub":"alice","aud":"api","iat":{t0},"exp":{},"jti":"t1","cnf":{{"jkt":"{}"}}}}"#,
            t0 + 300,
            client.verifying_key().thumbprint()
        ))
        .unwrap();
    let ath = portcullis_jose::dpop::access_token_hash(&token);
    let app = axum::Router::new()
        .route("/orders", axum::routing::get(|Auth(who): Auth| async move { who.subject.clone() }))
        .layer(GuardLayer::new(guard, Requirement::default()));
    let call = |htu: &str, jti: &str| {
        let proof =
            sign_proof(&client, &format!(r#"{{"jti":"{jti}","htm":"GET","htu":"{htu}","iat":{t0},"ath":"{ath}"}}"#))
                .unwrap();
        let request = axum::http::Request::get("/orders?x=1")
            .header("host", "internal:8080")
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof)
            .body(axum::body::Body::empty())
            .unwrap();
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let challenge =
                response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            (response.status().as_u16(), challenge)
        }
    };
    assert_eq!(call("https://api.example/orders", "a").await, (200, String::new()));
    let (status, challenge) = call("https://api.example/orders", "a").await;
    assert_eq!(status, 401);
    assert!(challenge.starts_with("DPoP ") && challenge.contains("replayed proof"), "{challenge}");
    let (status, challenge) = call("http://internal:8080/orders", "b").await;
    assert_eq!(status, 401, "the internal address is not what the client addressed");
    assert!(challenge.contains("htu does not match"), "{challenge}");
    // A token error on a DPoP request is answered under the DPoP scheme.
    let forged = axum::http::Request::get("/orders")
        .header("host", "internal:8080")
        .header("authorization", "DPoP not.a.token")
        .header("dpop", "x.y.z")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.clone().oneshot(forged).await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("DPoP realm=\"api\", error=\"invalid_token\""), "{challenge}");
}
