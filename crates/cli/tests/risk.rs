//! `portcullis risk`: simulate a corpus, score it, evaluate it; bad input is refused clearly.

// A test binary: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{run, temp};

#[test]
fn simulate_score_and_eval_work_end_to_end() {
    let scratch = temp("risk");
    let dir = scratch.path();
    let corpus = dir.join("corpus.jsonl");
    let out = run(
        &["risk", "simulate", "--seed", "5", "--users", "120", "--days", "8", "--output", corpus.to_str().unwrap()],
        "",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&corpus).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 5000, "{}", lines.len());
    // The same seed writes the same corpus.
    let again = run(&["risk", "simulate", "--seed", "5", "--users", "120", "--days", "8"], "");
    assert_eq!(String::from_utf8(again.stdout).unwrap(), text);

    let scored = run(&["risk", "score", "--input", corpus.to_str().unwrap()], "");
    assert!(scored.status.success());
    let scored = String::from_utf8(scored.stdout).unwrap();
    let outputs: Vec<serde_json::Value> = scored.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(outputs.len(), lines.len());
    for o in &outputs {
        let score = o["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score));
        assert!(o["reasons"].is_array());
    }
    assert!(outputs.iter().any(|o| o["score"].as_f64().unwrap() > 0.9 && !o["reasons"].as_array().unwrap().is_empty()));

    let eval = run(&["risk", "eval", "--input", corpus.to_str().unwrap()], "");
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let report = String::from_utf8(eval.stdout).unwrap();
    assert!(report.contains("ROC AUC"), "{report}");
    for label in
        ["token_replay", "session_hijack", "refresh_theft", "credential_stuffing", "password_spraying", "brute_force"]
    {
        assert!(report.contains(&format!("| {label} |")), "{report}");
    }
    // The simulated world's GeoIP database, used by score and eval.
    let mmdb = dir.join("world.mmdb");
    let args =
        ["risk", "simulate", "--seed", "5", "--users", "120", "--days", "8", "--geoip-out", mmdb.to_str().unwrap()];
    assert!(run(&args, "").status.success());
    let with_geo = run(&["risk", "eval", "--json", "--geoip", mmdb.to_str().unwrap()], &text);
    assert!(with_geo.status.success(), "{}", String::from_utf8_lossy(&with_geo.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&with_geo.stdout).unwrap();
    assert!(doc["auc"].as_f64().unwrap() > 0.95, "{doc}");
    let bad = run(&["risk", "score", "--geoip", corpus.to_str().unwrap()], "");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a usable MaxMind DB file"));
    let json = run(&["risk", "eval", "--json"], &text);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(doc["auc"].as_f64().unwrap() > 0.95, "{doc}");
    assert_eq!(doc["labels"].as_array().unwrap().len(), 6);
}

#[test]
fn bad_lines_are_reported_and_fail_the_command() {
    let input = concat!(
        r#"{"ts":1764547200,"kind":"login","sub":"a","client_id":"web","ip":"198.51.100.1","ua":"x","sid":"s"}"#,
        "\nnot json\n",
        r#"{"ts":1764547201,"kind":"token_use","sub":"a","client_id":"web","ip":"999.1.1.1"}"#,
        "\n",
    );
    let out = run(&["risk", "score"], input);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1, "good lines are still scored");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("line 2") && stderr.contains("line 3"), "{stderr}");
    let out = run(&["risk", "eval"], input.lines().next().unwrap());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("benign and labelled"));
    let out = run(&["risk", "simulate", "--mix", "phishing=3"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an attack class"));
}

#[test]
fn show_prints_what_the_store_holds_about_a_user() {
    let scratch = temp("risk-show");
    let dir = scratch.path();
    let data = dir.join("data");
    let cfg = dir.join("p.toml");
    std::fs::write(&cfg, format!("data_dir = \"{}\"\nlog = \"warn\"\n", data.display())).unwrap();
    let cfg = cfg.to_str().unwrap();
    assert!(run(&["--config", cfg, "migrate"], "").status.success());
    let added = run(&["--config", cfg, "users", "add", "alice", "--password-stdin", "--json"], "a long password here");
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let id = serde_json::from_slice::<serde_json::Value>(&added.stdout).unwrap()["id"].as_str().unwrap().to_owned();
    // A profile as the server stores it: alice seen in three sessions from two networks.
    let mut engine = portcullis_risk::Engine::new(portcullis_risk::Weights::default());
    for (i, ip) in ["198.51.100.7", "198.51.100.8", "192.0.2.1"].iter().enumerate() {
        let line = format!(
            r#"{{"ts":{},"kind":"login","sub":"{id}","client_id":"web","ip":"{ip}","ua":"curl/8","sid":"s{i}"}}"#,
            1_764_547_200 + i * 86_400
        );
        engine.observe(&portcullis_risk::Event::from_json(&line).unwrap());
    }
    let bytes = engine.profile(&id).unwrap().to_bytes();
    let url = format!("sqlite://{}", data.join("portcullis.db").display());
    tokio_block_on(async {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("INSERT INTO risk_profiles (subject, profile, updated_at) VALUES (?, ?, 1)")
            .bind(&id)
            .bind(bytes)
            .execute(&mut db)
            .await
            .unwrap();
    });
    let out = run(&["--config", cfg, "risk", "show", "alice", "--json"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["subject"], id.as_str());
    assert_eq!(summary["sessions"], 3.0);
    assert_eq!(summary["known"]["networks"], 2);
    let text = run(&["--config", cfg, "risk", "show", &id], "");
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("3 sessions seen"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    let none = run(&["--config", cfg, "risk", "show", "bob"], "");
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no risk profile for bob"));
}

fn tokio_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}
