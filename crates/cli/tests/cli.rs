//! The `portcullis` binary as a user runs it: exit codes (0 ok, 1 rejected, 2 usage), messages, round trips.

// A test binary: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{run, temp};

use portcullis_jose::dpop::{verify_proof, ProofPolicy, ProofRequest};
use portcullis_jose::UnixTime;

fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap().trim().to_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn generate_sign_verify_inspect_round_trip() {
    let scratch = temp("round-trip");
    let dir = scratch.path();
    let private = ok(&run(&["jwk", "generate", "--alg", "ES256"], ""));
    assert!(private.contains("\"d\""));
    let public = ok(&run(&["jwk", "public"], &private));
    assert!(!public.contains("\"d\""));
    // The default kid is the RFC 7638 thumbprint, the same from the private and the public JWK.
    let thumb = ok(&run(&["jwk", "thumbprint"], &public));
    assert_eq!(ok(&run(&["jwk", "thumbprint"], &private)), thumb);
    assert!(public.contains(&format!("\"kid\":\"{thumb}\"")));

    let key = write(dir, "key.json", &private);
    let jwks = write(dir, "jwks.json", &format!("{{\"keys\":[{public}]}}"));
    let claims = r#"{"iss":"https://i","sub":"alice","aud":"api","exp":2000000000}"#;
    let token = ok(&run(&["jwt", "sign", "--key", &key, "--typ", "at+jwt"], claims));
    let base = ["jwt", "verify", "--jwks", &jwks, "--iss", "https://i", "--aud", "api", "--typ", "at+jwt"];

    let verified = ok(&run(&[&base[..], &["--now", "1900000000", &token]].concat(), ""));
    assert!(verified.contains("\"sub\": \"alice\""), "{verified}");
    // From stdin too.
    ok(&run(&[&base[..], &["--now", "1900000000"]].concat(), &token));

    let expired = run(&[&base[..], &["--now", "2000000100", &token]].concat(), "");
    assert_eq!(expired.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&expired.stderr).trim(), "error: token has expired");

    let wrong_aud = run(&["jwt", "verify", "--jwks", &jwks, "--aud", "billing", "--now", "1900000000", &token], "");
    assert_eq!(wrong_aud.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong_aud.stderr).contains("audience does not match"));

    let inspected = run(&["jwt", "inspect", &token], "");
    assert!(ok(&inspected).contains("at+jwt"));
    assert!(String::from_utf8_lossy(&inspected.stderr).contains("UNVERIFIED"));

    // DPoP proofs for a resource request: each verifies for that request, with its own jti.
    let token_file = write(dir, "token", &format!("{token}\n"));
    let url = "https://api.example/orders";
    let args = ["jwt", "proof", "--key", &key, "--method", "GET", "--url", url, "--access-token-file", &token_file];
    let proofs = ok(&run(&[&args[..], &["--nonce", "n1", "--count", "3"]].concat(), ""));
    let proofs: Vec<&str> = proofs.lines().collect();
    assert_eq!(proofs.len(), 3);
    let request = ProofRequest { method: "GET", url, access_token: Some(&token), nonce: Some("n1") };
    let mut jtis = Vec::new();
    for proof in &proofs {
        let checked = verify_proof(proof, &request, &ProofPolicy::default(), UnixTime::now()).unwrap();
        assert_eq!(checked.jkt, thumb);
        jtis.push(checked.jti);
    }
    jtis.dedup();
    assert_eq!(jtis.len(), 3, "a fresh jti each");
    let other = ProofRequest { url: "https://api.example/admin", ..request };
    assert!(verify_proof(proofs[0], &other, &ProofPolicy::default(), UnixTime::now()).is_err());
    assert_eq!(
        run(&["jwt", "proof", "--key", &key, "--method", "GET", "--url", "/relative"], "").status.code(),
        Some(1)
    );
}

#[test]
fn usage_errors_exit_2_and_bad_input_exits_1() {
    assert_eq!(run(&["jwk", "generate"], "").status.code(), Some(2));
    assert_eq!(run(&["jwk", "generate", "--alg", "none"], "").status.code(), Some(2));
    assert_eq!(run(&["frobnicate"], "").status.code(), Some(2));
    let bad = run(&["jwk", "public"], "{\"kty\":\"EC\"");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).starts_with("error: "));
    assert_eq!(run(&["--help"], "").status.code(), Some(0));
}

fn config_in(dir: &Path, extra: &str) -> String {
    let data = dir.join("data");
    write(dir, "portcullis.toml", &format!("data_dir = {:?}\n{extra}", data.to_str().unwrap()))
}

#[test]
fn management_commands_work_on_the_store_before_the_server_runs() {
    let scratch = temp("manage");
    let dir = scratch.path();
    let cfg = config_in(dir, "");
    let c = |args: &[&str], stdin: &str| {
        let mut all = vec!["--config", cfg.as_str()];
        all.extend_from_slice(args);
        run(&all, stdin)
    };
    ok(&c(&["roles", "add", "staff", "--scopes", "read write"], ""));
    let roles: serde_json::Value = serde_json::from_str(&ok(&c(&["roles", "list", "--json"], ""))).unwrap();
    assert_eq!(roles[0]["scopes"], "read write");
    let user: serde_json::Value = serde_json::from_str(&ok(&c(
        &["users", "add", "alice", "--password-stdin", "--role", "staff", "--json"],
        "long enough pw\n",
    )))
    .unwrap();
    assert!(user["id"].as_str().unwrap().starts_with("u_"));
    let out = c(&["users", "add", "bob", "--password-stdin"], "short\n");
    assert_eq!(out.status.code(), Some(1), "a too-short password is refused");
    let out = c(&["users", "add", "alice", "--password-stdin"], "long enough pw\n");
    assert_eq!(out.status.code(), Some(1), "duplicate user");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let created: serde_json::Value = serde_json::from_str(&ok(&c(
        &["clients", "add", "svc", "--generate-secret", "--grant", "client_credentials", "--scope", "read", "--json"],
        "",
    )))
    .unwrap();
    assert_eq!(created["client_id"], "svc");
    assert_eq!(created["client_secret"].as_str().unwrap().len(), 43, "256 bits, base64url");
    let listed = ok(&c(&["clients", "list", "--json"], ""));
    assert!(!listed.contains(created["client_secret"].as_str().unwrap()), "the secret is shown once only");
    let out = c(&["clients", "add", "spa", "--public", "--grant", "client_credentials"], "");
    assert_eq!(out.status.code(), Some(1), "public clients cannot use client_credentials");
    let out = c(&["clients", "add", "x", "--public", "--grant", "implicit"], "");
    assert_eq!(out.status.code(), Some(2), "unknown grant is a usage error");
    ok(&c(&["users", "disable", "alice"], ""));
    let users: serde_json::Value = serde_json::from_str(&ok(&c(&["users", "list", "--json"], ""))).unwrap();
    assert_eq!(users[0]["disabled"], true);
    let out = c(&["users", "remove", "nobody"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let rotated: serde_json::Value = serde_json::from_str(&ok(&c(&["keys", "rotate", "--json"], ""))).unwrap();
    assert_eq!(rotated["state"], "pending");
    let keys: serde_json::Value = serde_json::from_str(&ok(&c(&["keys", "list", "--json"], ""))).unwrap();
    assert_eq!(keys[0]["kid"], rotated["kid"]);
    ok(&c(&["keys", "revoke", rotated["kid"].as_str().unwrap()], ""));
    assert_eq!(c(&["keys", "revoke", "no-such-kid"], "").status.code(), Some(1));
}

#[test]
fn serve_refuses_bad_configuration_with_a_clear_message() {
    let scratch = temp("badcfg");
    let dir = scratch.path();
    let out = run(&["serve", "--config", dir.join("missing.toml").to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let corrupt = write(dir, "corrupt.toml", "listen = [unclosed\n");
    let out = run(&["serve", "--config", &corrupt], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid configuration"));
    let bad = write(dir, "bad.toml", "access_token_ttl = 99999\nsigning_alg = \"HS256\"\n");
    let out = run(&["serve", "--config", &bad], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("access_token_ttl") && err.contains("signing_alg"), "{err}");
    // A data dir that cannot be written (under /proc, read-only even for root, which CI runs as).
    let ro = write(dir, "ro.toml", "data_dir = \"/proc/portcullis-data\"\nlisten = \"127.0.0.1:0\"\n");
    let out = run(&["serve", "--config", &ro], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("/proc/portcullis-data"), "{err}");
}

#[test]
fn serve_starts_with_defaults_answers_and_stops_on_sigterm() {
    use std::io::Read;
    let scratch = temp("serve");
    let dir = scratch.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = common::portcullis();
    command.current_dir(dir).env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"));
    let (mut child, seen) = common::serve(command);
    assert!(seen.contains("development key file"), "the dev-mode warning is printed: {seen}");
    assert!(dir.join("portcullis-data/portcullis.db").exists());
    assert!(dir.join("portcullis-data/master.key").exists());
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
}

/// A small upstream on loopback: answers every request `200 upstream` and closes the connection.
fn tiny_upstream() -> std::net::SocketAddr {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nupstream");
        }
    });
    addr
}

/// One HTTP/1.1 request to `addr`; the whole response.
fn get(addr: &str, path: &str) -> String {
    get_with(addr, path, "")
}

/// `get` with extra header lines (each ending in CRLF).
fn get_with(addr: &str, path: &str, headers: &str) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: gw\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn the_gateway_runs_from_its_file_logs_refusals_and_requests_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader, Read};
    let scratch = temp("gateway");
    let dir = scratch.path();
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (server_port, gateway_port, metrics_port) = (free(), free(), free());
    let mut command = common::portcullis();
    command.current_dir(dir).env("PORTCULLIS_LISTEN", format!("127.0.0.1:{server_port}"));
    let (mut server, _) = common::serve(command);
    let upstream = tiny_upstream();
    write(
        dir,
        "gateway.toml",
        &format!(
            "listen = \"127.0.0.1:{gateway_port}\"\nissuer = \"http://127.0.0.1:{server_port}\"\naccess_log = true\n\
             metrics_listen = \"127.0.0.1:{metrics_port}\"\nworkers = 2\ntrusted_proxies = \"127.0.0.1\"\n\
             [[route]]\npath_prefix = \"/api/\"\nupstream = \"http://{upstream}\"\naudience = \"api\"\n\
             [[route]]\npath_prefix = \"/public/\"\nupstream = \"http://{upstream}\"\npublic = true\n"
        ),
    );
    // `--check` says whether it would start, without starting, as `nginx -t` does.
    let checked = common::portcullis()
        .current_dir(dir)
        .args(["gateway", "--config", "gateway.toml", "--check"])
        .output()
        .unwrap();
    let said = ok(&checked);
    assert!(said.contains("gateway.toml: ok (2 routes; plain HTTP; revocation feed off"), "{said}");
    for (name, text, reason) in [
        ("no-audience.toml", "issuer = \"http://a\"\n[[route]]\nupstream = \"http://b\"\n", "audience is required"),
        ("half-tls.toml", "issuer = \"http://a\"\ntls_cert = \"c.pem\"\n[[route]]\npublic = true\n", "set both"),
        (
            "no-cert.toml",
            "issuer = \"http://a\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n[[route]]\npublic = true\n",
            "c.pem",
        ),
        ("bad-listen.toml", "issuer = \"http://a\"\nlisten = \"nowhere\"\n[[route]]\npublic = true\n", "listen"),
        (
            "bad-proxies.toml",
            "issuer = \"http://a\"\ntrusted_proxies = \"10.0.0.0/8, lb.internal\"\n[[route]]\npublic = true\n",
            "trusted_proxies: \"lb.internal\"",
        ),
        (
            "no-secret.toml",
            "issuer = \"http://a\"\nclient_id = \"gw\"\nclient_secret_file = \"gone\"\n[[route]]\npublic = true\n",
            "client_secret_file gone",
        ),
    ] {
        write(dir, name, text);
        let out =
            common::portcullis().current_dir(dir).args(["gateway", "--config", name, "--check"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(reason) && err.contains(name), "{name}: {err}");
    }
    let mut gateway = common::portcullis()
        .current_dir(dir)
        .args(["gateway", "--config", "gateway.toml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(gateway.stderr.take().unwrap());
    let mut banner = String::new();
    while !banner.contains("metrics ") {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the gateway exited: {banner}");
        banner.push_str(&line);
    }
    assert!(banner.contains(&format!("serving on http://127.0.0.1:{gateway_port} (2 workers)")), "{banner}");
    assert!(banner.contains(&format!("http://127.0.0.1:{metrics_port}/metrics")), "{banner}");

    let gw = format!("127.0.0.1:{gateway_port}");
    assert!(get(&gw, "/public/x?secret=1").ends_with("upstream"));
    assert!(get(&gw, "/api/orders").starts_with("HTTP/1.1 401"));
    // From a trusted proxy (this test, on 127.0.0.1): the client is the last address the proxy added, whatever the
    // client wrote before it.
    let forwarded = "X-Forwarded-For: 198.51.100.7, 203.0.113.9\r\n";
    assert!(get_with(&gw, "/api/forwarded", forwarded).starts_with("HTTP/1.1 401"));
    assert!(get(&gw, "/nowhere").starts_with("HTTP/1.1 404"));
    let scraped = get(&format!("127.0.0.1:{metrics_port}"), "/metrics");
    assert!(scraped.contains(r#"portcullis_gateway_decisions_total{result="deny",reason="missing"} 2"#), "{scraped}");
    assert!(get(&gw, "/metrics").starts_with("HTTP/1.1 404"), "not on the public port");

    // SIGHUP reloads the file: a new route is served, and a file that would not start leaves it in place.
    let config = std::fs::read_to_string(dir.join("gateway.toml")).unwrap();
    let more = format!("[[route]]\npath_prefix = \"/more/\"\nupstream = \"http://{upstream}\"\npublic = true\n");
    write(dir, "gateway.toml", &format!("{config}{more}"));
    let hangup = || assert!(Command::new("kill").args(["-HUP", &gateway.id().to_string()]).status().unwrap().success());
    hangup();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !get(&gw, "/more/x").ends_with("upstream") {
        assert!(std::time::Instant::now() < deadline, "the new route was never served");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    write(dir, "gateway.toml", &format!("{config}[[route]]\npath_prefix = \"/broken/\"\n"));
    hangup();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(get(&gw, "/more/x").ends_with("upstream"), "a refused reload keeps the routes in use");

    let killed = Command::new("kill").args(["-TERM", &gateway.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();
    assert_eq!(gateway.wait().unwrap().code(), Some(0), "graceful shutdown exits 0: {log}");
    let line = |has: &[&str]| log.lines().any(|l| has.iter().all(|h| l.contains(h)));
    let served_by = format!("upstream=http://{upstream}");
    assert!(line(&["proxied", "/public/x", "status=200", &served_by, "upstream_ms="]), "{log}");
    assert!(!log.contains("secret=1"), "a query is never logged: {log}");
    assert!(line(&["refused", "/api/orders", "status=401", "missing", "peer=127.0.0.1"]), "{log}");
    assert!(line(&["refused", "/api/forwarded", "status=401", "peer=203.0.113.9"]), "{log}");
    assert!(line(&["refused", "/nowhere", "status=404", "no route"]), "{log}");
    assert!(line(&["configuration reloaded: 3 routes", "gateway.toml"]), "{log}");
    assert!(line(&["configuration not reloaded", "audience is required"]), "{log}");
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let _ = server.wait();
}

/// The documented move from SQLite to PostgreSQL (or, without a PostgreSQL server configured, to a second
/// SQLite store): export, import, and the target holds the same accounts, clients and keys.
#[test]
fn export_then_import_moves_a_deployment() {
    let scratch = temp("move");
    let dir = scratch.path();
    let source = config_in(dir, "");
    let target_dir = dir.join("target");
    std::fs::create_dir_all(&target_dir).unwrap();
    let target_url = match std::env::var("PORTCULLIS_TEST_POSTGRES_URL") {
        Ok(url) => {
            let name = format!("portcullis_cli_move_{}", std::process::id());
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(portcullis_server::store::postgres::PgStore::scratch_database(&url, &name)).unwrap()
        }
        Err(_) => {
            eprintln!("PORTCULLIS_TEST_POSTGRES_URL is not set: moving to a second SQLite store instead");
            format!("sqlite://{}/moved.db", target_dir.display())
        }
    };
    let target = config_in(&target_dir, &format!("database_url = {target_url:?}\n"));
    let on = |cfg: &str, args: &[&str], stdin: &str| {
        let mut all = vec!["--config", cfg];
        all.extend_from_slice(args);
        run(&all, stdin)
    };
    ok(&on(&source, &["roles", "add", "staff", "--scopes", "read"], ""));
    ok(&on(&source, &["users", "add", "alice", "--password-stdin", "--role", "staff"], "long enough pw\n"));
    ok(&on(&source, &["clients", "add", "svc", "--generate-secret", "--grant", "client_credentials"], ""));
    ok(&on(&source, &["keys", "rotate"], ""));
    let dump = dir.join("export.json");
    let dump_arg = dump.to_str().unwrap();
    ok(&on(&source, &["export", "--output", dump_arg], ""));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&dump).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let again = on(&source, &["export", "--output", dump_arg], "");
    assert_eq!(again.status.code(), Some(1), "an export never overwrites a file");
    let imported = ok(&on(&target, &["import", "--input", dump_arg, "--json"], ""));
    let imported: serde_json::Value = serde_json::from_str(&imported).unwrap();
    assert_eq!(imported["rows"]["users"], 1);
    for listing in [["users", "list", "--json"], ["clients", "list", "--json"], ["keys", "list", "--json"]] {
        assert_eq!(ok(&on(&target, &listing, "")), ok(&on(&source, &listing, "")), "{listing:?}");
    }
    let twice = on(&target, &["import", "--input", dump_arg], "");
    assert_eq!(twice.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&twice.stderr).contains("nothing written"), "{twice:?}");
    let garbage = on(&target, &["import"], "{\"format\": 9, \"tables\": []}");
    assert_eq!(garbage.status.code(), Some(1));
}
