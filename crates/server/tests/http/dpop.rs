//! DPoP (RFC 9449) at the token endpoint: binding, the negative cases of §4.3, replay, clients that require
//! DPoP, server nonces, refresh families bound to a public client's key, introspection, and a bound token at
//! the guard.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use portcullis_jose::dpop::sign_proof;
use portcullis_jose::{b64, jws, jwt, Algorithm, SigningKey};
use portcullis_server::admin::{ClientKind, NewClient};
use portcullis_server::clock::Clock;
use portcullis_server::config::Config;
use portcullis_server::model::{GrantType, TokenDelivery};
use serde_json::Value;

use super::{free_port, s, start, start_with, temp_dir, Server};

static JTI: AtomicU64 = AtomicU64::new(0);

/// A unique `jti`.
pub fn jti() -> String {
    format!("jti-{}-{}", std::process::id(), JTI.fetch_add(1, Ordering::Relaxed))
}

/// A proof with the given claims (`extra` is appended inside the object: `,"nonce":"..."`).
pub fn proof_with(key: &SigningKey, jti: &str, htm: &str, htu: &str, iat: i64, extra: &str) -> String {
    let claims = format!(r#"{{"jti":"{jti}","htm":"{htm}","htu":"{htu}","iat":{iat}{extra}}}"#);
    sign_proof(key, &claims).unwrap()
}

impl Server {
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth2/token", self.base)
    }

    /// A fresh, valid proof for the token endpoint.
    pub fn token_proof(&self, key: &SigningKey, extra: &str) -> String {
        proof_with(key, &jti(), "POST", &self.token_endpoint(), self.clock.now().as_secs(), extra)
    }

    /// A client-credentials access token bound to `key` (`cnf.jkt`), for client `id`.
    pub async fn dpop_bound_token(&self, key: &SigningKey, id: &str, secret: &str) -> String {
        let cc = [("grant_type", "client_credentials")];
        let (status, body, _) = self.dpop_form(&[&self.token_proof(key, "")], Some((id, secret)), &cc).await;
        assert_eq!(status, 200, "{body}");
        s(&body, "access_token")
    }

    /// A token request with the given `DPoP` headers; returns the status, the body and the `DPoP-Nonce` header.
    pub async fn dpop_form(
        &self,
        proofs: &[&str],
        auth: Option<(&str, &str)>,
        params: &[(&str, &str)],
    ) -> (u16, Value, Option<String>) {
        let mut req = self.http.post(self.token_endpoint()).form(params);
        for p in proofs {
            req = req.header("DPoP", *p);
        }
        if let Some((id, secret)) = auth {
            req = req.basic_auth(id, Some(secret));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let nonce = resp.headers().get("dpop-nonce").map(|v| v.to_str().unwrap().to_owned());
        (status, resp.json().await.unwrap_or(Value::Null), nonce)
    }
}

fn cnf_jkt(token: &str) -> Option<String> {
    let (_, payload) = jws::decode_unverified(token, 16 * 1024).unwrap();
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    claims["cnf"]["jkt"].as_str().map(str::to_owned)
}

fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_binds_the_token_and_every_bad_proof_is_refused() {
    let srv = start("dpop-bind").await;
    let secret = srv.service_client("svc", &["read"]).await;
    let rs_secret = srv.service_client("rs", &["read"]).await;
    let auth = Some(("svc", secret.as_str()));
    let cc = [("grant_type", "client_credentials")];
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let jkt = key.verifying_key().thumbprint();

    let proof = srv.token_proof(&key, "");
    let (status, body, nonce) = srv.dpop_form(&[&proof], auth, &cc).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(nonce, None, "nonces are off by default");
    let token = s(&body, "access_token");
    assert_eq!(cnf_jkt(&token).as_deref(), Some(jkt.as_str()), "cnf.jkt is the proof key's thumbprint");
    let keys = srv.jwks().await;
    let verified = jwt::verify(&token, &keys, &srv.policy("api"), srv.clock.now()).unwrap();
    assert_eq!(verified.claims.confirmation_jkt(), Ok(Some(jkt.clone())));

    // Introspection reports the binding (RFC 9449 §6.2).
    let (_, intro) = srv.form("/oauth2/introspect", Some(("rs", &rs_secret)), &[("token", &token)]).await;
    assert_eq!((intro["active"].as_bool(), intro["token_type"].as_str()), (Some(true), Some("DPoP")));
    assert_eq!(intro["cnf"]["jkt"], jkt.as_str());

    // The same proof again is a replay.
    let (status, body, _) = srv.dpop_form(&[&proof], auth, &cc).await;
    assert_eq!((status, error_of(&body)), (400, "invalid_dpop_proof"), "{body}");

    // Without a proof the same client gets a bearer token.
    let (status, body) = srv.form("/oauth2/token", auth, &cc).await;
    assert_eq!((status, body["token_type"].as_str()), (200, Some("Bearer")));
    assert_eq!(cnf_jkt(&s(&body, "access_token")), None);

    // RFC 9449 §4.3: each check on its own.
    let now = srv.clock.now().as_secs();
    let endpoint = srv.token_endpoint();
    let public_jwk = key.verifying_key().to_jwk().unwrap();
    let private_jwk = key.to_jwk().unwrap().to_string();
    let header = |h: &str| b64::encode(h.as_bytes());
    let claims =
        |jti: &str| b64::encode(format!(r#"{{"jti":"{jti}","htm":"POST","htu":"{endpoint}","iat":{now}}}"#).as_bytes());
    let signed = |header_json: String, jti: &str| {
        let input = format!("{}.{}", header(&header_json), claims(jti));
        let signature = key.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", b64::encode(&signature))
    };
    let other_key = SigningKey::generate(Algorithm::ES256).unwrap();
    let bad: Vec<(&str, String)> = vec![
        ("wrong htm", proof_with(&key, &jti(), "GET", &endpoint, now, "")),
        ("wrong htu", proof_with(&key, &jti(), "POST", &format!("{}/oauth2/revoke", srv.base), now, "")),
        ("old iat", proof_with(&key, &jti(), "POST", &endpoint, now - 120, "")),
        ("future iat", proof_with(&key, &jti(), "POST", &endpoint, now + 60, "")),
        ("no jti", sign_proof(&key, &format!(r#"{{"htm":"POST","htu":"{endpoint}","iat":{now}}}"#)).unwrap()),
        ("typ JWT", signed(format!(r#"{{"typ":"JWT","alg":"ES256","jwk":{public_jwk}}}"#), &jti())),
        (
            "alg none",
            format!(
                "{}.{}.",
                header(&format!(r#"{{"typ":"dpop+jwt","alg":"none","jwk":{public_jwk}}}"#)),
                claims(&jti())
            ),
        ),
        ("private jwk", signed(format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{private_jwk}}}"#), &jti())),
        ("no jwk", signed(r#"{"typ":"dpop+jwt","alg":"ES256"}"#.into(), &jti())),
        ("another key's jwk", {
            let other = other_key.verifying_key().to_jwk().unwrap();
            signed(format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{other}}}"#), &jti())
        }),
        ("not a JWS", "not-a-proof".into()),
    ];
    for (what, proof) in &bad {
        let (status, body, _) = srv.dpop_form(&[proof], auth, &cc).await;
        assert_eq!((status, error_of(&body)), (400, "invalid_dpop_proof"), "{what}: {body}");
    }
    let (a, b) = (srv.token_proof(&key, ""), srv.token_proof(&key, ""));
    let (status, body, _) = srv.dpop_form(&[&a, &b], auth, &cc).await;
    assert_eq!((status, error_of(&body)), (400, "invalid_dpop_proof"), "two DPoP headers: {body}");

    // A failed proof does not burn its jti: the same jti in a good proof passes.
    let kept = jti();
    let failed = proof_with(&key, &kept, "GET", &endpoint, now, "");
    assert_eq!(srv.dpop_form(&[&failed], auth, &cc).await.0, 400);
    let good = proof_with(&key, &kept, "POST", &endpoint, now, "");
    let (status, body, _) = srv.dpop_form(&[&good], auth, &cc).await;
    assert_eq!(status, 200, "{body}");
    // A proof whose client failed to authenticate does not burn its jti either.
    let (status, _, _) = srv.dpop_form(&[&srv.token_proof(&key, "")], Some(("svc", "wrong")), &cc).await;
    assert_eq!(status, 401);

    // Discovery names the proof algorithms.
    let meta = srv.get_json("/.well-known/oauth-authorization-server").await;
    let algs: Vec<&str> =
        meta["dpop_signing_alg_values_supported"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(algs.contains(&"ES256") && algs.contains(&"EdDSA") && !algs.contains(&"HS256"), "{algs:?}");
    let metrics = srv.http.get(format!("{}/metrics", srv.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("portcullis_dpop_proofs_total{result=\"replayed\"}"), "{metrics}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_can_require_dpop_and_nonces_come_from_the_server() {
    let config = Config { login_rate_per_second: 0, dpop_require_nonce: true, ..Config::default() };
    let srv = start_with(temp_dir("dpop-nonce"), Arc::default(), free_port(), config).await;
    let (_, secret) = srv
        .admin
        .add_client(NewClient {
            id: "strict".into(),
            credential: ClientKind::GenerateSecret,
            grants: vec![GrantType::ClientCredentials],
            scopes: vec!["read".into()],
            audiences: vec!["api".into()],
            dpop_bound: true,
            ..NewClient::default()
        })
        .await
        .unwrap();
    let secret = secret.unwrap().expose().to_owned();
    let auth = Some(("strict", secret.as_str()));
    let cc = [("grant_type", "client_credentials")];
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();

    let (status, body, nonce) = srv.dpop_form(&[], auth, &cc).await;
    assert_eq!((status, error_of(&body)), (400, "invalid_dpop_proof"), "this client must use DPoP: {body}");
    assert!(nonce.is_some(), "every answer carries a nonce");

    // A proof without the nonce: use_dpop_nonce, with one to use (RFC 9449 §8).
    let (status, body, nonce) = srv.dpop_form(&[&srv.token_proof(&key, "")], auth, &cc).await;
    assert_eq!((status, error_of(&body)), (400, "use_dpop_nonce"), "{body}");
    let nonce = nonce.expect("a DPoP-Nonce header");
    let with_nonce = srv.token_proof(&key, &format!(r#","nonce":"{nonce}""#));
    let (status, body, next) = srv.dpop_form(&[&with_nonce], auth, &cc).await;
    assert_eq!((status, body["token_type"].as_str()), (200, Some("DPoP")), "{body}");
    assert!(next.is_some(), "a successful answer carries a fresh nonce too");

    // A made-up nonce, and an expired one, are refused the same way.
    let forged = srv.token_proof(&key, r#","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA""#);
    assert_eq!(error_of(&srv.dpop_form(&[&forged], auth, &cc).await.1), "use_dpop_nonce");
    srv.clock.advance(2 * portcullis_server::oauth::dpop::NONCE_PERIOD);
    let stale = srv.token_proof(&key, &format!(r#","nonce":"{nonce}""#));
    let (status, body, fresh) = srv.dpop_form(&[&stale], auth, &cc).await;
    assert_eq!((status, error_of(&body)), (400, "use_dpop_nonce"), "{body}");
    assert_ne!(fresh.as_deref(), Some(nonce.as_str()), "the nonce rotates with its period");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_clients_refresh_family_is_bound_to_its_key() {
    let srv = start("dpop-refresh").await;
    srv.first_party("web", TokenDelivery::Body).await;
    srv.user("bob", "correct horse battery", &[("staff", "read")]).await;
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let thief = SigningKey::generate(Algorithm::ES256).unwrap();
    let login =
        [("grant_type", "password"), ("client_id", "web"), ("username", "bob"), ("password", "correct horse battery")];
    let (status, body, _) = srv.dpop_form(&[&srv.token_proof(&key, "")], None, &login).await;
    assert_eq!((status, body["token_type"].as_str()), (200, Some("DPoP")), "{body}");
    let refresh_token = s(&body, "refresh_token");
    let refresh = [("grant_type", "refresh_token"), ("client_id", "web"), ("refresh_token", refresh_token.as_str())];

    // Without a proof, or with another key's, the refresh is refused and the token stays usable.
    let (status, body, _) = srv.dpop_form(&[], None, &refresh).await;
    assert_eq!((status, error_of(&body)), (400, "invalid_dpop_proof"), "{body}");
    let (status, body, _) = srv.dpop_form(&[&srv.token_proof(&thief, "")], None, &refresh).await;
    assert_eq!((status, error_of(&body)), (400, "invalid_dpop_proof"), "{body}");
    let (status, _, _) =
        srv.json("/auth/refresh", serde_json::json!({"refresh_token": refresh_token, "client_id": "web"})).await;
    assert_eq!(status, 400, "the first-party endpoint takes no proof, so a bound family cannot refresh there");

    let (status, body, _) = srv.dpop_form(&[&srv.token_proof(&key, "")], None, &refresh).await;
    assert_eq!((status, body["token_type"].as_str()), (200, Some("DPoP")), "the holder of the key refreshes: {body}");
    assert_eq!(cnf_jkt(&s(&body, "access_token")), Some(key.verifying_key().thumbprint()));
    let next = s(&body, "refresh_token");
    assert_ne!(next, refresh_token, "rotated as usual");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_accepts_a_bound_token_only_with_a_proof_of_its_key() {
    use portcullis_guard::{Clock as GuardClock, Guard, GuardConfig, PresentedRequest, Rejection, Requirement};
    let srv = start("dpop-guard").await;
    let secret = srv.service_client("svc", &["read"]).await;
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let token = srv.dpop_bound_token(&key, "svc", &secret).await;
    let clock = Arc::clone(&srv.clock);
    let guard = Guard::start_with_clock(GuardConfig::new(&srv.base, "api"), GuardClock::new(move || clock.now()))
        .await
        .unwrap();
    let url = "https://api.example/orders";
    let now = srv.clock.now().as_secs();
    let ath = portcullis_jose::dpop::access_token_hash(&token);
    let resource_proof = |k: &SigningKey| proof_with(k, &jti(), "GET", url, now, &format!(r#","ath":"{ath}""#));
    let dpop_auth = format!("DPoP {token}");
    let read = Requirement::scopes(["read"]);
    let ask = |authorization: String, proofs: Vec<String>| {
        let guard = guard.clone();
        let read = read.clone();
        async move {
            let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
            let request = PresentedRequest { authorization: Some(&authorization), dpop: &proofs, method: "GET", url };
            guard.authorize_request(&request, &read).await.map(|id| id.subject.clone())
        }
    };
    assert_eq!(ask(dpop_auth.clone(), vec![resource_proof(&key)]).await.as_deref(), Ok("svc"));
    let thief = SigningKey::generate(Algorithm::ES256).unwrap();
    assert!(matches!(ask(dpop_auth.clone(), vec![resource_proof(&thief)]).await, Err(Rejection::InvalidDpopProof(_))));
    assert!(
        matches!(ask(format!("Bearer {token}"), vec![]).await, Err(Rejection::Invalid(_))),
        "bound token as Bearer"
    );
    srv.stop().await;
}
