//! The authorization code flow (RFC 6749 §4.1 with PKCE, OpenID Connect) driven like a browser: the login
//! page, the consent page, the redirect with the code, and the token exchange; every way it must refuse.

use std::collections::HashMap;

use portcullis_jose::{b64, jws, jwt, Algorithm, Policy, SigningKey};
use portcullis_server::admin::{ClientKind, NewClient};
use portcullis_server::clock::Clock;
use portcullis_server::model::GrantType;
use serde_json::Value;

use super::dpop::proof_with;
use super::{s, start, Server};

const REDIRECT: &str = "https://spa.example/cb";

/// A browser: keeps cookies, follows nothing (each redirect is looked at).
struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

struct Page {
    status: u16,
    location: Option<String>,
    body: String,
    headers: reqwest::header::HeaderMap,
}

impl Browser {
    fn new() -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser { http, cookies: HashMap::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn take(&mut self, resp: reqwest::Response) -> Page {
        for c in resp.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.insert(k.to_owned(), v.to_owned());
        }
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        let headers = resp.headers().clone();
        Page { status, location, body: resp.text().await.unwrap(), headers }
    }

    async fn get(&mut self, url: &str) -> Page {
        let resp = self.http.get(url).header("cookie", self.cookie_header()).send().await.unwrap();
        self.take(resp).await
    }

    async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Page {
        let resp = self.http.post(url).header("cookie", self.cookie_header()).form(form).send().await.unwrap();
        self.take(resp).await
    }
}

/// The value of a hidden input on a page.
fn field(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker).unwrap_or_else(|| panic!("no {name} field in {body}")) + marker.len();
    body[start..].split('"').next().unwrap().replace("&amp;", "&")
}

/// Every hidden field of the page's (first) form.
fn hidden_fields(body: &str) -> Vec<(String, String)> {
    body.split("<input type=\"hidden\" ")
        .skip(1)
        .map(|chunk| {
            let name = chunk.split("name=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
            (name.clone(), field(&format!("<input {chunk}"), &name))
        })
        .collect()
}

fn query_of(location: &str) -> HashMap<String, String> {
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

struct Pkce {
    verifier: String,
    challenge: String,
}

fn new_pkce() -> Pkce {
    let verifier = format!("{}-verifier-{}", super::dpop::jti(), "x".repeat(40));
    let challenge = b64::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref());
    Pkce { verifier, challenge }
}

fn authorize_url(srv: &Server, pkce: &Pkce, extra: &str) -> String {
    format!(
        "{}/oauth2/authorize?response_type=code&client_id=spa&redirect_uri={}&scope=openid%20read&state=xyz\
         &nonce=n-0S6&code_challenge={}&code_challenge_method=S256{extra}",
        srv.base,
        form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>(),
        pkce.challenge
    )
}

async fn setup(name: &str) -> Server {
    let srv = start(name).await;
    srv.user("alice", "correct horse battery", &[("staff", "read write")]).await;
    srv.admin
        .add_client(NewClient {
            id: "spa".into(),
            credential: ClientKind::Public,
            grants: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: vec!["read write".into()],
            redirect_uris: vec![REDIRECT.into()],
            audiences: vec!["api".into()],
            ..NewClient::default()
        })
        .await
        .unwrap();
    srv
}

/// Signs in on the login page and approves on the consent page; returns the redirect's query.
async fn sign_in_and_approve(browser: &mut Browser, srv: &Server, url: &str) -> HashMap<String, String> {
    let login = browser.get(url).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let mut form = hidden_fields(&login.body);
    form.push(("username".into(), "alice".into()));
    form.push(("password".into(), "correct horse battery".into()));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let consent = browser.post(&format!("{}/oauth2/authorize", srv.base), &form).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(consent.body.contains("Allow access?") && consent.body.contains("Read your data"), "{}", consent.body);
    let mut form: Vec<(String, String)> = hidden_fields(&consent.body);
    form.push(("action".into(), "approve".into()));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let back = browser.post(&format!("{}/oauth2/authorize", srv.base), &form).await;
    assert_eq!(back.status, 303, "{}", back.body);
    let location = back.location.unwrap();
    assert!(location.starts_with(&format!("{REDIRECT}?")), "{location}");
    query_of(&location)
}

async fn exchange(srv: &Server, code: &str, verifier: &str, proofs: &[&str]) -> (u16, Value) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("client_id", "spa"),
        ("code_verifier", verifier),
    ];
    let (status, body, _) = srv.dpop_form(proofs, None, &form).await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_consents_and_the_client_gets_tokens_and_an_id_token() {
    let srv = setup("code-flow").await;
    let mut browser = Browser::new();
    let pkce = new_pkce();
    let url = authorize_url(&srv, &pkce, "");

    // The login page: no caching, no framing, a strict CSP, a CSRF cookie.
    let login = browser.get(&url).await;
    assert_eq!(login.status, 200);
    assert!(login.body.contains("Sign in") && login.body.contains("spa"));
    assert_eq!(login.headers["x-frame-options"], "DENY");
    assert!(login.headers["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
    assert!(browser.cookies.contains_key("portcullis_csrf"));
    let mut form = hidden_fields(&login.body);
    form.push(("username".into(), "alice".into()));
    form.push(("password".into(), "wrong".into()));
    let as_pairs = |f: &[(String, String)]| f.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>();
    let wrong: Vec<(String, String)> = as_pairs(&form);
    let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let again = browser.post(&format!("{}/oauth2/authorize", srv.base), &wrong).await;
    assert_eq!(again.status, 200);
    assert!(again.body.contains("Wrong username or password."), "{}", again.body);
    // A form whose CSRF token is not the cookie's is refused.
    let forged: Vec<(&str, &str)> =
        wrong.iter().map(|(k, v)| if *k == "csrf" { (*k, "AAAAAAAAAAAAAAAA") } else { (*k, *v) }).collect();
    assert_eq!(browser.post(&format!("{}/oauth2/authorize", srv.base), &forged).await.status, 403);

    let back = sign_in_and_approve(&mut browser, &srv, &url).await;
    assert_eq!(back["state"], "xyz");
    assert_eq!(back["iss"], srv.base, "RFC 9207");
    let code = back["code"].clone();

    let (status, tokens) = exchange(&srv, &code, "wrong-verifier-wrong-verifier-wrong-verifier-x", &[]).await;
    assert_eq!((status, tokens["error"].as_str()), (400, Some("invalid_grant")), "a wrong verifier: {tokens}");
    // That attempt spent the code; sign in again (the session skips the password, the consent is remembered).
    let second = browser.get(&url).await;
    assert_eq!(second.status, 303, "no page the second time: {}", second.body);
    let code = query_of(&second.location.unwrap())["code"].clone();
    let (status, tokens) = exchange(&srv, &code, &pkce.verifier, &[]).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!((tokens["token_type"].as_str(), tokens["scope"].as_str()), (Some("Bearer"), Some("openid read")));
    let keys = srv.jwks().await;
    let now = srv.clock.now();
    let access = jwt::verify(&s(&tokens, "access_token"), &keys, &srv.policy("api"), now).unwrap().claims;
    assert_eq!(access.client_id().as_deref(), Some("spa"));
    let id_policy = Policy::builder().issuer(&srv.base).audience("spa").typ("JWT").build().unwrap();
    let id = jwt::verify(&s(&tokens, "id_token"), &keys, &id_policy, now).unwrap().claims;
    assert_eq!(id.sub(), access.sub(), "the same subject");
    assert_eq!((id.string("nonce").as_deref(), id.string("azp").as_deref()), (Some("n-0S6"), Some("spa")));
    let at_hash = portcullis_server::oauth::id_token::at_hash(&s(&tokens, "access_token"), Algorithm::ES256);
    assert_eq!(id.string("at_hash").as_deref(), Some(at_hash.as_str()));
    assert!(id.get("auth_time").and_then(|t| t.as_i64()).is_some());

    // The ID token is no access token: introspection calls it inactive, and the guard refuses it (its typ).
    let rs = srv.service_client("rs", &["read"]).await;
    let (_, intro) = srv.form("/oauth2/introspect", Some(("rs", &rs)), &[("token", &s(&tokens, "id_token"))]).await;
    assert_eq!(intro["active"], false);
    let guard = portcullis_guard::Guard::start(portcullis_guard::GuardConfig::new(&srv.base, "spa")).await.unwrap();
    assert!(guard.verify(&s(&tokens, "id_token")).is_err(), "an ID token (aud = the client) is refused by the guard");
    let api_guard = portcullis_guard::Guard::start(portcullis_guard::GuardConfig::new(&srv.base, "api")).await.unwrap();
    assert!(api_guard.verify(&s(&tokens, "access_token")).is_ok(), "while the access token passes");

    // The refresh token works; then presenting the code again revokes everything it produced.
    let refresh =
        [("grant_type", "refresh_token"), ("client_id", "spa"), ("refresh_token", &s(&tokens, "refresh_token"))];
    let (status, refreshed) = srv.form("/oauth2/token", None, &refresh).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(refreshed["scope"], "openid read", "a refresh keeps openid (for /userinfo)");
    let (status, replay) = exchange(&srv, &code, &pkce.verifier, &[]).await;
    assert_eq!((status, replay["error"].as_str()), (400, Some("invalid_grant")));
    for token in [s(&tokens, "access_token"), s(&refreshed, "access_token")] {
        let (_, intro) = srv.form("/oauth2/introspect", Some(("rs", &rs)), &[("token", &token)]).await;
        assert_eq!(intro["active"], false, "a replayed code revokes its tokens");
    }
    let next =
        [("grant_type", "refresh_token"), ("client_id", "spa"), ("refresh_token", &s(&refreshed, "refresh_token"))];
    assert_eq!(srv.form("/oauth2/token", None, &next).await.0, 400);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_requests_stay_on_the_server_and_the_rest_go_back_with_an_error() {
    let srv = setup("code-errors").await;
    let pkce = new_pkce();
    let mut browser = Browser::new();
    // Unknown client, unregistered redirect URI: a page, never a redirect.
    for url in [
        authorize_url(&srv, &pkce, "").replace("client_id=spa", "client_id=nobody"),
        authorize_url(&srv, &pkce, "").replace("spa.example%2Fcb", "evil.example%2Fcb"),
        authorize_url(&srv, &pkce, "").replace("spa.example%2Fcb", "spa.example%2Fcb%2Fmore"),
        format!("{}&state=twice", authorize_url(&srv, &pkce, "")),
    ] {
        let page = browser.get(&url).await;
        assert_eq!((page.status, page.location.as_deref()), (400, None), "{url}");
    }
    // A bad request from a trusted client goes back with the error and the state.
    let no_pkce = authorize_url(&srv, &pkce, "").replace("&code_challenge_method=S256", "");
    let page = browser.get(&no_pkce).await;
    let back = query_of(&page.location.unwrap());
    assert_eq!((back["error"].as_str(), back["state"].as_str()), ("invalid_request", "xyz"));
    // prompt=none without a session: login_required.
    let page = browser.get(&authorize_url(&srv, &pkce, "&prompt=none")).await;
    assert_eq!(query_of(&page.location.unwrap())["error"], "login_required");
    // The user says no: access_denied.
    let login = browser.get(&authorize_url(&srv, &pkce, "")).await;
    let mut form = hidden_fields(&login.body);
    form.extend([("username".into(), "alice".into()), ("password".into(), "correct horse battery".into())]);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let consent = browser.post(&format!("{}/oauth2/authorize", srv.base), &form).await;
    let mut deny = hidden_fields(&consent.body);
    deny.push(("action".into(), "deny".into()));
    let deny: Vec<(&str, &str)> = deny.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let page = browser.post(&format!("{}/oauth2/authorize", srv.base), &deny).await;
    assert_eq!(query_of(&page.location.unwrap())["error"], "access_denied");
    // What browsers send on our own pages' posts (Origin = the issuer; the pages' Referrer-Policy is
    // same-origin so it is never `null`) passes; a post from another site is refused even with the right token.
    let mut fresh = Browser::new();
    let pages = fresh.get(&authorize_url(&srv, &pkce, "")).await;
    assert_eq!(pages.headers["referrer-policy"], "same-origin");
    let mut own = hidden_fields(&pages.body);
    own.extend([("username".into(), "alice".into()), ("password".into(), "wrong".into())]);
    let own: Vec<(&str, &str)> = own.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let resp = srv
        .http
        .post(format!("{}/oauth2/authorize", srv.base))
        .header("cookie", fresh.cookie_header())
        .header("origin", &srv.base)
        .form(&own)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "a same-origin post reaches the password check");
    assert!(resp.text().await.unwrap().contains("Wrong username or password."));
    let resp = srv
        .http
        .post(format!("{}/oauth2/authorize", srv.base))
        .header("cookie", browser.cookie_header())
        .header("origin", "https://evil.example")
        .form(&deny)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_jkt_binds_the_code_to_the_clients_key() {
    let srv = setup("code-dpop").await;
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let thief = SigningKey::generate(Algorithm::ES256).unwrap();
    let jkt = key.verifying_key().thumbprint();
    let mut browser = Browser::new();
    let pkce = new_pkce();
    let url = authorize_url(&srv, &pkce, &format!("&dpop_jkt={jkt}"));
    let code = sign_in_and_approve(&mut browser, &srv, &url).await["code"].clone();
    let (status, body) = exchange(&srv, &code, &pkce.verifier, &[&srv.token_proof(&thief, "")]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_dpop_proof")), "another key: {body}");

    let second = new_pkce();
    let url = authorize_url(&srv, &second, &format!("&dpop_jkt={jkt}"));
    let page = browser.get(&url).await;
    let code = query_of(&page.location.unwrap())["code"].clone();
    let now = srv.clock.now().as_secs();
    let proof = proof_with(&key, &super::dpop::jti(), "POST", &srv.token_endpoint(), now, "");
    let (status, tokens) = exchange(&srv, &code, &second.verifier, &[&proof]).await;
    assert_eq!((status, tokens["token_type"].as_str()), (200, Some("DPoP")), "{tokens}");
    let (_, payload) = jws::decode_unverified(&s(&tokens, "access_token"), 16 * 1024).unwrap();
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(claims["cnf"]["jkt"], jkt.as_str());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_answers_for_the_user_and_logout_ends_the_browser_session() {
    let srv = setup("userinfo").await;
    let mut browser = Browser::new();
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let pkce = new_pkce();
    let back = sign_in_and_approve(&mut browser, &srv, &authorize_url(&srv, &pkce, "")).await;
    let proof = srv.token_proof(&key, "");
    let (status, tokens) = exchange(&srv, &back["code"], &pkce.verifier, &[&proof]).await;
    assert_eq!((status, tokens["token_type"].as_str()), (200, Some("DPoP")), "{tokens}");
    let access = s(&tokens, "access_token");
    let userinfo = format!("{}/userinfo", srv.base);
    let ask = |authorization: String, proofs: Vec<String>| {
        let (http, url) = (srv.http.clone(), userinfo.clone());
        async move {
            let mut req = http.get(url).header("authorization", authorization);
            for p in proofs {
                req = req.header("dpop", p);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
            (status, challenge, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let ath = portcullis_jose::dpop::access_token_hash(&access);
    let now = srv.clock.now().as_secs();
    let resource_proof = proof_with(&key, &super::dpop::jti(), "GET", &userinfo, now, &format!(r#","ath":"{ath}""#));
    let (status, _, body) = ask(format!("DPoP {access}"), vec![resource_proof.clone()]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["preferred_username"], "alice");
    let (status, challenge, _) = ask(format!("DPoP {access}"), vec![resource_proof]).await;
    assert_eq!(status, 401, "a replayed proof");
    assert!(challenge.unwrap().starts_with("DPoP realm=\"portcullis\", error=\"invalid_dpop_proof\""));
    let (status, challenge, _) = ask(format!("Bearer {access}"), vec![]).await;
    assert_eq!((status, challenge.unwrap().contains("invalid_token")), (401, true), "a bound token as Bearer");
    let (status, _, _) = ask(format!("Bearer {}", s(&tokens, "id_token")), vec![]).await;
    assert_eq!(status, 401, "an ID token is no access token");
    let svc = srv.service_client("svc", &["read"]).await;
    let cc = srv.client_token("svc", &svc, "read").await;
    let (status, challenge, _) = ask(format!("Bearer {cc}"), vec![]).await;
    assert_eq!(
        (status, challenge.as_deref()),
        (403, Some("Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"openid\""))
    );
    let resp = srv.http.get(&userinfo).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // Logout with an ID token hint (expired by now, still a good hint): at once, back to a registered URI with
    // the state; the session is gone.
    srv.clock.advance(600);
    let logout = format!(
        "{}/oauth2/logout?id_token_hint={}&post_logout_redirect_uri={}&state=bye",
        srv.base,
        s(&tokens, "id_token"),
        form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    );
    let page = browser.get(&logout).await;
    assert_eq!((page.status, page.location.as_deref()), (303, Some(format!("{REDIRECT}?state=bye").as_str())));
    let again = browser.get(&authorize_url(&srv, &new_pkce(), "")).await;
    assert_eq!(again.status, 200, "signed out: the login page again");
    assert!(again.body.contains("Sign in"));
    // An unregistered destination is refused on a page.
    let evil = logout.replace("spa.example", "evil.example");
    let page = browser.get(&evil).await;
    assert_eq!((page.status, page.location), (400, None));
    // Without a hint the user confirms on a page (a link from another site cannot sign anyone out).
    sign_in_and_approve(&mut browser, &srv, &authorize_url(&srv, &new_pkce(), "&prompt=consent")).await;
    let confirm = browser.get(&format!("{}/oauth2/logout", srv.base)).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("Sign out?"));
    let form = hidden_fields(&confirm.body);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let done = browser.post(&format!("{}/oauth2/logout", srv.base), &form).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("You are signed out"));
    assert_eq!(browser.get(&authorize_url(&srv, &new_pkce(), "")).await.status, 200, "the login page again");
    srv.stop().await;
}
