//! The admin API (`/admin/v1`): the admin scope, RFC 7807 problems, paging, and each resource's changes taking
//! effect (a disabled user cannot log in, an ended session cannot refresh, a revoked token is inactive).

use reqwest::Method;
use serde_json::{json, Value};

use super::*;

/// Calls the admin API with `token`; returns the status, the JSON body and the content type.
async fn call(srv: &Server, method: Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value, String) {
    let mut req = srv.http.request(method, format!("{}/admin/v1{path}", srv.base));
    if !token.is_empty() {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let kind = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, resp.json().await.unwrap_or(Value::Null), kind)
}

/// A server with an admin client `root` and its token.
async fn with_admin(name: &str) -> (Server, String, String) {
    let srv = start(name).await;
    let secret = srv.service_client("root", &["portcullis:admin"]).await;
    let token = srv.client_token("root", &secret, "portcullis:admin").await;
    (srv, secret, token)
}

fn names(page: &Value, key: &str) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|i| s(i, key)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_the_admin_scope_and_answers_with_problems() {
    let (srv, _, token) = with_admin("admin-auth").await;
    let resp = srv.http.get(format!("{}/admin/v1/users", srv.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"portcullis\"");
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!((body["type"].as_str(), body["status"].as_u64()), (Some("about:blank"), Some(401)));

    let reader = srv.service_client("reader", &["read"]).await;
    let read_token = srv.client_token("reader", &reader, "read").await;
    let resp = srv.http.get(format!("{}/admin/v1/users", srv.base)).bearer_auth(&read_token).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("insufficient_scope") && challenge.contains("portcullis:admin"), "{challenge}");
    let (status, _, _) = call(&srv, Method::GET, "/users", "not.a.token", None).await;
    assert_eq!(status, 401);

    // Bad input: every refusal is a problem document, never a framework's plain text.
    let cases: Vec<(Method, &str, Option<Value>, u16)> = vec![
        (Method::GET, "/users?limit=0", None, 400),
        (Method::GET, "/users?limit=201", None, 400),
        (Method::GET, "/users?limit=abc", None, 400),
        (Method::GET, "/users?colour=red", None, 400),
        (Method::GET, "/audit-events?after=-1", None, 400),
        (Method::GET, "/revocations?after=x", None, 400),
        (Method::POST, "/users", Some(json!({"name": "x"})), 400),
        (Method::POST, "/users", Some(json!({"name": "x y", "password": "long enough"})), 400),
        (Method::POST, "/users", Some(json!({"name": "x", "password": "long enough", "admin": true})), 400),
        (Method::POST, "/users", Some(json!({"name": "x", "password": "short"})), 400),
        (Method::POST, "/revocations", Some(json!({"kind": "everything", "value": "x"})), 400),
        (Method::POST, "/revocations", Some(json!({"kind": "jti", "value": ""})), 400),
        (Method::GET, "/users/nobody", None, 404),
        (Method::GET, "/sessions/nothing", None, 404),
        (Method::POST, "/keys/nothing/revoke", None, 404),
        (Method::DELETE, "/clients/root", None, 409),
        (Method::POST, "/clients/root/disable", None, 409),
    ];
    for (method, path, body, want) in cases {
        let (status, problem, kind) = call(&srv, method.clone(), path, &token, body).await;
        assert_eq!(status, want, "{method} {path}: {problem}");
        assert_eq!(kind, "application/problem+json", "{method} {path}");
        assert_eq!(problem["status"].as_u64(), Some(u64::from(want)));
        assert!(!s(&problem, "detail").is_empty() && !s(&problem, "title").is_empty(), "{problem}");
    }
    let resp =
        srv.http.post(format!("{}/admin/v1/users", srv.base)).bearer_auth(&token).body("name=x").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 415);

    // The OpenAPI document is public, describes every operation with its errors, and names the security scheme.
    let doc = srv.get_json("/admin/v1/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for path in ["/admin/v1/users", "/admin/v1/clients/{id}", "/admin/v1/keys/rotate", "/admin/v1/audit-events"] {
        assert!(paths.contains_key(path), "{path}");
    }
    assert_eq!(paths.len(), 22);
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            for status in ["400", "401", "403", "503"] {
                let response = &operation["responses"][status];
                assert!(response["content"]["application/problem+json"].is_object(), "{method} {path} {status}");
            }
            assert!(operation["security"].is_array(), "{method} {path}");
        }
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_roles_and_sessions_are_managed_and_paged() {
    let (srv, root_secret, token) = with_admin("admin-users").await;
    srv.first_party("web", TokenDelivery::Body).await;
    let (status, role, _) =
        call(&srv, Method::POST, "/roles", &token, Some(json!({"name": "staff", "scopes": ["read", "write"]}))).await;
    assert_eq!((status, role["scopes"].clone()), (201, json!(["read", "write"])));
    let (status, _, _) = call(&srv, Method::POST, "/roles", &token, Some(json!({"name": "staff", "scopes": []}))).await;
    assert_eq!(status, 409);
    for name in ["dave", "bob", "carol", "alice"] {
        let new = json!({"name": name, "password": format!("{name} password"), "roles": ["staff"]});
        let (status, user, _) = call(&srv, Method::POST, "/users", &token, Some(new)).await;
        assert_eq!(status, 201, "{user}");
        assert_eq!(
            (user["scopes"].clone(), user.get("password"), user.get("password_hash")),
            (json!(["read", "write"]), None, None)
        );
    }
    let (status, problem, _) = call(
        &srv,
        Method::POST,
        "/users",
        &token,
        Some(json!({"name": "erin", "password": "erin password", "roles": ["nope"]})),
    )
    .await;
    assert_eq!(status, 400, "an unknown role: {problem}");

    // Pages: by name, `next` until the last page.
    let (_, first, _) = call(&srv, Method::GET, "/users?limit=3", &token, None).await;
    assert_eq!(
        (names(&first, "name"), s(&first, "next")),
        (vec!["alice".into(), "bob".into(), "carol".into()], "carol".into())
    );
    let (_, second, _) = call(&srv, Method::GET, "/users?limit=3&after=carol", &token, None).await;
    assert_eq!((names(&second, "name"), second["next"].clone()), (vec!["dave".to_owned()], Value::Null));

    // A session shows up under its user and, once ended, its refresh token is refused.
    let (status, tokens) = srv.login("web", "alice", "alice password").await;
    assert_eq!(status, 200, "{tokens}");
    let (_, alice, _) = call(&srv, Method::GET, "/users/alice", &token, None).await;
    let (_, sessions, _) =
        call(&srv, Method::GET, &format!("/sessions?user_id={}", s(&alice, "id")), &token, None).await;
    assert_eq!(sessions["items"].as_array().unwrap().len(), 1, "{sessions}");
    let sid = s(&sessions["items"][0], "id");
    assert_eq!(s(&sessions["items"][0], "client_id"), "web");
    let (status, _, _) = call(&srv, Method::DELETE, &format!("/sessions/{sid}"), &token, None).await;
    assert_eq!(status, 204);
    let refresh = json!({"refresh_token": s(&tokens, "refresh_token"), "client_id": "web"});
    let (status, body, _) = srv.json("/auth/refresh", refresh).await;
    assert_eq!((status, s(&body, "error").as_str()), (400, "invalid_grant"));
    let introspect = |t: String| {
        let srv = &srv;
        let secret = root_secret.clone();
        async move { srv.form("/oauth2/introspect", Some(("root", &secret)), &[("token", &t)]).await.1["active"].clone() }
    };
    assert_eq!(introspect(s(&tokens, "access_token")).await, json!(false), "the session's access token is revoked");
    let (status, _, _) = call(&srv, Method::DELETE, &format!("/sessions/{sid}"), &token, None).await;
    assert_eq!(status, 404, "an ended session is gone");

    // Disable and enable; a new password; removal.
    let (status, bob, _) = call(&srv, Method::POST, "/users/bob/disable", &token, None).await;
    assert_eq!((status, bob["disabled"].clone()), (200, json!(true)));
    assert_eq!(srv.login("web", "bob", "bob password").await.0, 400);
    call(&srv, Method::POST, "/users/bob/enable", &token, None).await;
    assert_eq!(srv.login("web", "bob", "bob password").await.0, 200);
    let (status, carol_tokens) = srv.login("web", "carol", "carol password").await;
    assert_eq!(status, 200);
    srv.clock.advance(1);
    let new = json!({"password": "a brand new password"});
    let (status, _, _) = call(&srv, Method::PUT, "/users/carol/password", &token, Some(new)).await;
    assert_eq!(status, 204);
    assert_eq!(srv.login("web", "carol", "carol password").await.0, 400);
    assert_eq!(introspect(s(&carol_tokens, "access_token")).await, json!(false), "a new password revokes tokens");
    srv.clock.advance(1);
    assert_eq!(srv.login("web", "carol", "a brand new password").await.0, 200);
    let (status, _, _) = call(&srv, Method::DELETE, "/users/dave", &token, None).await;
    assert_eq!(status, 204);
    let (status, _, _) = call(&srv, Method::GET, "/users/dave", &token, None).await;
    assert_eq!(status, 404);

    // The audit log names the administrator, page by page.
    let mut after = String::new();
    let mut events = Vec::new();
    loop {
        let (_, page, _) = call(&srv, Method::GET, &format!("/audit-events?limit=5&after={after}"), &token, None).await;
        events.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "one sequence, no gaps: {seqs:?}");
    let added = events.iter().find(|e| e["kind"] == "user_added").unwrap();
    assert_eq!(added["detail"]["by"], json!({"client_id": "root", "sub": "root"}));
    assert!(events.iter().any(|e| e["kind"] == "revoked_by_admin" && e["detail"]["value"] == json!(sid)));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_keys_and_revocations_are_managed() {
    let (srv, root_secret, token) = with_admin("admin-clients").await;
    let new = json!({"id": "svc", "auth_method": "client_secret", "grants": ["client_credentials"],
        "scopes": ["read"], "audiences": ["api"]});
    let (status, created, _) = call(&srv, Method::POST, "/clients", &token, Some(new.clone())).await;
    assert_eq!(status, 201, "{created}");
    let secret = s(&created, "client_secret");
    assert_eq!(created["client"]["auth_method"], "client_secret");
    let svc_token = srv.client_token("svc", &secret, "read").await;
    assert!(!svc_token.is_empty(), "the returned secret works");
    let (status, _, _) = call(&srv, Method::POST, "/clients", &token, Some(new)).await;
    assert_eq!(status, 409);
    let (_, shown, _) = call(&srv, Method::GET, "/clients/svc", &token, None).await;
    assert!(shown.get("client_secret").is_none() && shown["grants"] == json!(["client_credentials"]), "{shown}");
    let bad = json!({"id": "pw", "auth_method": "none", "grants": ["password"]});
    let (status, problem, _) = call(&srv, Method::POST, "/clients", &token, Some(bad)).await;
    assert_eq!(status, 400, "the password grant is first-party only: {problem}");
    let bad = json!({"id": "cb", "auth_method": "none", "grants": ["authorization_code"],
        "redirect_uris": ["http://app.example/cb"]});
    assert_eq!(call(&srv, Method::POST, "/clients", &token, Some(bad)).await.0, 400, "plain http redirect");

    // A revoked access token is inactive at once.
    let (status, revocation, _) = {
        let claims = svc_token.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(&portcullis_jose::b64::decode(claims.as_bytes()).unwrap()).unwrap();
        call(&srv, Method::POST, "/revocations", &token, Some(json!({"kind": "jti", "value": s(&claims, "jti")}))).await
    };
    assert_eq!(
        (status, s(&revocation, "kind").as_str(), s(&revocation, "reason").as_str()),
        (201, "jti", "revoked_by_admin")
    );
    let (_, body) = srv.form("/oauth2/introspect", Some(("root", &root_secret)), &[("token", &svc_token)]).await;
    assert_eq!(body["active"], json!(false));
    let (_, listed, _) = call(&srv, Method::GET, "/revocations", &token, None).await;
    assert!(names(&listed, "value").contains(&s(&revocation, "value")));

    // Disabling a client stops its tokens; removing it makes it unknown.
    let (status, svc, _) = call(&srv, Method::POST, "/clients/svc/disable", &token, None).await;
    assert_eq!((status, svc["disabled"].clone()), (200, json!(true)));
    srv.clock.advance(1);
    let (status, _) = srv.form("/oauth2/token", Some(("svc", &secret)), &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 401);
    assert_eq!(call(&srv, Method::DELETE, "/clients/svc", &token, None).await.0, 204);
    assert_eq!(call(&srv, Method::GET, "/clients/svc", &token, None).await.0, 404);

    // Keys: one active; a rotation publishes a pending key; a second rotation waits for the first.
    let (_, keys, _) = call(&srv, Method::GET, "/keys", &token, None).await;
    assert_eq!(names(&keys, "state"), ["active"]);
    assert!(keys["items"][0]["public_jwk"].get("d").is_none(), "public halves only");
    let (status, rotation, _) = call(&srv, Method::POST, "/keys/rotate", &token, None).await;
    assert_eq!(status, 201, "{rotation}");
    assert_eq!(call(&srv, Method::POST, "/keys/rotate", &token, None).await.0, 409);
    let (_, keys, _) = call(&srv, Method::GET, "/keys?limit=1", &token, None).await;
    assert_eq!(keys["items"].as_array().unwrap().len(), 1);
    let (_, rest, _) = call(&srv, Method::GET, &format!("/keys?after={}", s(&keys, "next")), &token, None).await;
    let mut states = [names(&keys, "state"), names(&rest, "state")].concat();
    states.sort();
    assert_eq!(states, ["active", "pending"]);
    // Revoking the pending key takes it out of the JWKS.
    let kid = s(&rotation, "kid");
    assert_eq!(call(&srv, Method::POST, &format!("/keys/{kid}/revoke"), &token, None).await.0, 204);
    let jwks = srv.get_json("/jwks.json").await;
    assert!(!jwks.to_string().contains(&kid));
    srv.stop().await;
}
