//! The audit ledger end to end, as an operator and an auditor meet it: a running server signs tree heads;
//! `portcullis audit verify` accepts the untouched log (from the store and over the admin API) and names the first
//! bad entry after each kind of edit made directly in the database; `portcullis audit witness` accepts a growing
//! log and raises the alarm when the server's history is rewritten or rolled back.

// A test binary: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output};

mod common;
use common::{run, temp};

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A config file for a server on `port` with its data in `data`.
fn config(dir: &Path, name: &str, port: u16, data: &Path) -> String {
    let path = dir.join(name);
    let toml = format!(
        "listen = \"127.0.0.1:{port}\"\ndata_dir = {:?}\naudit_head_interval = 1\nlogin_rate_per_second = 0\n",
        data.to_str().unwrap()
    );
    std::fs::write(&path, toml).unwrap();
    path.to_str().unwrap().to_owned()
}

fn serve(cfg: &str) -> Child {
    let mut command = common::portcullis();
    command.args(["--config", cfg]);
    common::serve(command).0
}

fn stop(mut child: Child) {
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// One HTTP/1.1 request on a fresh connection; the status and the body.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// An admin access token from a client `root` with the portcullis:admin scope.
fn admin_token(cfg: &str, port: u16) -> String {
    let out = run(
        &[
            "--config",
            cfg,
            "--json",
            "clients",
            "add",
            "root",
            "--generate-secret",
            "--grant",
            "client_credentials",
            "--scope",
            "portcullis:admin",
        ],
        "",
    );
    let secret = json(&String::from_utf8_lossy(&out.stdout))["client_secret"].as_str().unwrap().to_owned();
    let basic = portcullis_jose::b64::encode(format!("root:{secret}").as_bytes());
    // Basic auth wants standard base64; the id and secret are URL-safe characters, so re-pad only.
    let basic = standard_base64(&basic);
    let (status, body) = http(
        port,
        "POST",
        "/oauth2/token",
        &[("Authorization", &format!("Basic {basic}")), ("Content-Type", "application/x-www-form-urlencoded")],
        "grant_type=client_credentials",
    );
    assert_eq!(status, 200, "{body}");
    json(&body)["access_token"].as_str().unwrap().to_owned()
}

fn standard_base64(url_safe: &str) -> String {
    let mut s: String = url_safe
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while s.len() % 4 != 0 {
        s.push('=');
    }
    s
}

/// Management commands that each append an audit event.
fn make_events(cfg: &str, prefix: &str, n: usize) {
    for i in 0..n {
        let out = run(&["--config", cfg, "roles", "add", &format!("{prefix}{i}"), "--scopes", "read"], "");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
}

/// Signs a head now through the admin API; returns its tree size.
fn sign_head(port: u16, token: &str) -> u64 {
    let (status, body) =
        http(port, "POST", "/admin/v1/audit/heads", &[("Authorization", &format!("Bearer {token}"))], "");
    assert_eq!(status, 201, "{body}");
    json(&body)["tree_size"].as_u64().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Runs SQL on a data directory's SQLite database, as someone with access to the database file would.
fn tamper(data: &Path, statements: &[&str]) {
    let url = format!("sqlite://{}", data.join("portcullis.db").display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        for sql in statements {
            sqlx::query(sql).execute(&mut db).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        db.close().await.unwrap();
    });
}

fn verify(cfg: &str) -> (bool, String) {
    let out = run(&["--config", cfg, "audit", "verify"], "");
    (out.status.success(), text(&out))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn verify_accepts_the_log_and_names_the_first_bad_entry_after_each_kind_of_edit() {
    let scratch = temp("ledger-verify");
    let dir = scratch.path();
    let data = dir.join("data");
    let port = free_port();
    let cfg = config(dir, "server.toml", port, &data);
    make_events(&cfg, "before", 10);
    let server = serve(&cfg);
    let token = admin_token(&cfg, port);
    make_events(&cfg, "during", 10);
    let size = sign_head(port, &token);
    assert!(size >= 21, "every audit event is in the tree: {size}");
    let (ok, out) = verify(&cfg);
    assert!(ok && out.contains(&format!("match the signed tree head of size {size}")), "{out}");
    let token_file = dir.join("token");
    std::fs::write(&token_file, &token).unwrap();
    let issuer = format!("http://127.0.0.1:{port}");
    let out = run(&["audit", "verify", "--issuer", &issuer, "--token-file", token_file.to_str().unwrap()], "");
    assert!(out.status.success() && text(&out).contains(&format!("size {size}")), "over HTTP: {}", text(&out));
    // Inclusion proofs from the admin API verify against the signed head's root.
    let (status, body) = http(
        port,
        "GET",
        &format!("/admin/v1/audit/inclusion?seq=3&tree_size={size}"),
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["proof"].as_array().unwrap().len(), (64 - (size - 1).leading_zeros()) as usize, "{body}");
    stop(server);

    let cases: Vec<(&str, Vec<&str>, String)> = vec![
        (
            "modified",
            vec!["UPDATE audit_events SET detail = '{\"forged\":true}' WHERE seq = 3"],
            "entry 3 was modified".into(),
        ),
        (
            "modified, and the stored tree rebuilt to match",
            vec![
                "UPDATE audit_events SET detail = '{\"forged\":true}' WHERE seq = 9",
                "DELETE FROM audit_nodes",
                "DELETE FROM audit_leaves",
                "UPDATE audit_ledger SET size = 0",
            ],
            "does not match the signed tree head of size".into(),
        ),
        ("deleted", vec!["DELETE FROM audit_events WHERE seq = 4"], "entry 4 is missing".into()),
        ("truncated", vec!["DELETE FROM audit_events WHERE seq > 5"], format!("entries 6 to {size} are missing")),
        (
            "reordered",
            vec![
                "UPDATE audit_events SET seq = -2 WHERE seq = 2",
                "UPDATE audit_events SET seq = 2 WHERE seq = 7",
                "UPDATE audit_events SET seq = 7 WHERE seq = -2",
            ],
            "entry 2 was modified".into(),
        ),
        (
            "inserted",
            vec![
                "UPDATE audit_events SET seq = -seq WHERE seq >= 5",
                "UPDATE audit_events SET seq = 1 - seq WHERE seq < 0",
                "INSERT INTO audit_events (seq, at, kind, detail) VALUES (5, 1, 'user_added', '{}')",
            ],
            "entry 5 was modified".into(),
        ),
    ];
    for (name, statements, want) in cases {
        let copy = dir.join(format!("copy-{}", name.len()));
        copy_dir(&data, &copy);
        tamper(&copy, &statements);
        let copy_cfg = config(dir, "copy.toml", port, &copy);
        let (ok, out) = verify(&copy_cfg);
        assert!(!ok && out.contains(&want), "{name}: wanted {want:?}, got {out}");
        let _ = std::fs::remove_dir_all(&copy);
    }
}

/// The witness's answer, and whether it succeeded.
fn witness(issuer: &str, state: &Path) -> (bool, String) {
    let out = run(&["audit", "witness", "--issuer", issuer, "--state", state.to_str().unwrap(), "--once"], "");
    (out.status.success(), text(&out))
}

/// Waits (up to 30 s) until the server's latest head covers `size` entries: CLI events reach the tree through the
/// background step, which leaves the last two seconds to the audit writer.
fn head_reaches(port: u16, size: impl Fn(u64) -> bool) {
    for _ in 0..300 {
        let (status, body) = http(port, "GET", "/audit/head", &[], "");
        if status == 200 && size(json(&body)["tree_size"].as_u64().unwrap()) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the server signed no such head");
}

#[test]
fn the_witness_follows_a_growing_log_and_catches_a_rewrite_and_a_rollback() {
    let scratch = temp("ledger-witness");
    let dir = scratch.path();
    let data = dir.join("data");
    let port = free_port();
    let cfg = config(dir, "server.toml", port, &data);
    let issuer = format!("http://127.0.0.1:{port}");
    let state = dir.join("witness.json");
    make_events(&cfg, "a", 5);
    let server = serve(&cfg);
    head_reaches(port, |n| n >= 5);
    let (ok, out) = witness(&issuer, &state);
    assert!(ok && out.contains("first head seen"), "{out}");
    make_events(&cfg, "b", 4);
    head_reaches(port, |n| n >= 9);
    let (ok, out) = witness(&issuer, &state);
    assert!(ok && out.contains("consistent"), "{out}");
    let seen: serde_json::Value = json(&std::fs::read_to_string(&state).unwrap());
    let seen_size = seen["tree_size"].as_u64().unwrap();
    stop(server);

    // The operator rewrites history: an old entry changed, the tree rebuilt and re-signed with the server's key.
    tamper(
        &data,
        &[
            "UPDATE audit_events SET detail = '{\"rewritten\":true}' WHERE seq = 2",
            "DELETE FROM audit_nodes",
            "DELETE FROM audit_leaves",
            "DELETE FROM audit_heads",
            "UPDATE audit_ledger SET size = 0",
        ],
    );
    let server = serve(&cfg);
    make_events(&cfg, "c", 2);
    head_reaches(port, |n| n > seen_size);
    let (ok, out) = witness(&issuer, &state);
    assert!(!ok && out.contains("FORK") && out.contains("rewritten"), "{out}");
    assert_eq!(
        json(&std::fs::read_to_string(&state).unwrap())["tree_size"].as_u64(),
        Some(seen_size),
        "the alarm keeps the state"
    );
    stop(server);

    // Or rolls it back: the newest entries removed and the tree rebuilt smaller.
    tamper(
        &data,
        &[
            "DELETE FROM audit_events WHERE seq > 4",
            "DELETE FROM audit_nodes",
            "DELETE FROM audit_leaves",
            "DELETE FROM audit_heads",
            "UPDATE audit_ledger SET size = 0",
        ],
    );
    let server = serve(&cfg);
    head_reaches(port, |n| n < seen_size);
    let (ok, out) = witness(&issuer, &state);
    assert!(!ok && out.contains("ROLLBACK"), "{out}");
    stop(server);
}
