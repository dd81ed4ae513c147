//! The `portcullis` binary as a user runs it: exit codes (0 ok, 1 rejected, 2 usage), messages, round trips.

// A test binary: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

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
    let dir = std::env::temp_dir().join(format!("portcullis-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let private = ok(&run(&["jwk", "generate", "--alg", "ES256"], ""));
    assert!(private.contains("\"d\""));
    let public = ok(&run(&["jwk", "public"], &private));
    assert!(!public.contains("\"d\""));
    // The default kid is the RFC 7638 thumbprint, the same from the private and the public JWK.
    let thumb = ok(&run(&["jwk", "thumbprint"], &public));
    assert_eq!(ok(&run(&["jwk", "thumbprint"], &private)), thumb);
    assert!(public.contains(&format!("\"kid\":\"{thumb}\"")));

    let key = write(&dir, "key.json", &private);
    let jwks = write(&dir, "jwks.json", &format!("{{\"keys\":[{public}]}}"));
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
    std::fs::remove_dir_all(&dir).unwrap();
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
