//! `portcullis audit verify|witness`: checking the tamper-evident audit ledger, from the store or over HTTP, and
//! watching a server's signed tree heads for a rollback or a rewritten history.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use portcullis_jose::{b64, Algorithm, KeySet, UnixTime};
use portcullis_server::ledger::{self, merkle, Seen, Verifier};
use portcullis_server::serve;
use portcullis_server::store::TreeHead;
use serde_json::{json, Value};

use crate::server_cmd::{print, runtime, settings, Common};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole audit log against its signed tree heads and report the first bad entry: from the
    /// configured store, or with --issuer over the admin API.
    Verify(VerifyArgs),
    /// Poll a server's signed tree heads; check that each extends the last one seen (kept in --state); exit
    /// non-zero on a rollback or a fork.
    Witness(WitnessArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Read the log over HTTP from this server's admin API instead of the store.
    #[arg(long, value_name = "URL", requires = "token_file")]
    issuer: Option<String>,
    /// A file holding an access token with the portcullis:admin scope (with --issuer).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WitnessArgs {
    /// The server to watch.
    #[arg(long, value_name = "URL")]
    issuer: String,
    /// Where the last accepted head is kept between runs.
    #[arg(long, value_name = "FILE")]
    state: PathBuf,
    /// Seconds between polls.
    #[arg(long, default_value_t = 60)]
    interval: u64,
    /// Check once and exit (for cron and tests).
    #[arg(long)]
    once: bool,
}

pub fn run(common: &Common, cmd: AuditCommand) -> Result<(), String> {
    match cmd {
        AuditCommand::Verify(args) => runtime()?.block_on(verify(common, args)),
        AuditCommand::Witness(args) => runtime()?.block_on(witness(common, args)),
    }
}

fn now() -> UnixTime {
    use portcullis_server::clock::{Clock, SystemClock};
    SystemClock.now()
}

fn report(common: &Common, report: &ledger::Report) {
    let v = &report.verified;
    let newer = v.entries - v.head_size;
    let mut text = format!("ok: {} entries; ", v.entries);
    match &report.latest {
        Some(head) => text.push_str(&format!(
            "they match the signed tree head of size {} (issued at {}){}",
            head.tree_size,
            head.iat,
            if newer > 0 { format!("; {newer} newer entries are not in a signed head yet") } else { String::new() }
        )),
        None => text.push_str("no signed tree head yet, so nothing to check them against"),
    }
    if report.unverifiable_heads > 0 {
        text.push_str(&format!(
            "\n{} older heads are signed by keys no longer published and were not used",
            report.unverifiable_heads
        ));
    }
    let value = json!({ "ok": true, "entries": v.entries, "head_size": v.head_size, "root_hash": b64::encode(&v.root),
        "unverifiable_heads": report.unverifiable_heads });
    print(common, value, text);
}

async fn verify(common: &Common, args: VerifyArgs) -> Result<(), String> {
    match (args.issuer, args.token_file) {
        (Some(issuer), Some(token_file)) => verify_http(common, issuer.trim_end_matches('/'), &token_file).await,
        _ => {
            let settings = settings(common)?;
            let store = serve::open_store(&settings).await.map_err(|e| e.to_string())?;
            let keys = store.list_keys().await.map_err(|e| e.to_string())?;
            let published: Vec<Value> = keys
                .iter()
                .filter(|k| k.record.state.is_published())
                .filter_map(|k| serde_json::from_str(&k.public_jwk).ok())
                .collect();
            let keys = key_set(&json!({ "keys": published }).to_string())?;
            let result = ledger::verify_store(store.as_ref(), &keys, &settings.issuer, now()).await?;
            report(common, &result);
            Ok(())
        }
    }
}

fn key_set(jwks: &str) -> Result<KeySet, String> {
    let algs: Vec<Algorithm> = Algorithm::asymmetric().collect();
    KeySet::from_jwks(jwks, &algs).map_err(|e| format!("the server's keys: {e}"))
}

fn http() -> Result<reqwest::Client, String> {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| e.to_string())
}

async fn get_json(http: &reqwest::Client, url: &str, token: Option<&str>) -> Result<Value, String> {
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        let detail = body["detail"].as_str().or(body["error"].as_str()).unwrap_or_default().to_owned();
        return Err(format!("{url}: {status} {detail}"));
    }
    Ok(body)
}

/// Every item of a paged admin-API listing.
async fn all_items(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    mut each: impl FnMut(&Value) -> Result<(), String>,
) -> Result<(), String> {
    let mut after = String::new();
    loop {
        let page = get_json(http, &format!("{url}?limit=200&after={after}"), Some(token)).await?;
        for item in page["items"].as_array().ok_or("a page without items")? {
            each(item)?;
        }
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => return Ok(()),
        }
    }
}

fn head_of(item: &Value) -> Result<TreeHead, String> {
    let root = b64::decode(item["root_hash"].as_str().unwrap_or_default().as_bytes())
        .and_then(|r| <[u8; 32]>::try_from(r.as_slice()).ok())
        .ok_or("a tree head without a root hash")?;
    Ok(TreeHead {
        tree_size: item["tree_size"].as_u64().ok_or("a tree head without a size")?,
        root_hash: root,
        issued_at: item["issued_at"].as_i64().unwrap_or_default(),
        jws: item["jws"].as_str().unwrap_or_default().to_owned(),
    })
}

async fn verify_http(common: &Common, issuer: &str, token_file: &Path) -> Result<(), String> {
    let token = std::fs::read_to_string(token_file).map_err(|e| format!("{}: {e}", token_file.display()))?;
    let token = token.trim();
    let http = http()?;
    let jwks = http.get(format!("{issuer}/jwks.json")).send().await.map_err(|e| e.to_string())?;
    let keys = key_set(&jwks.text().await.map_err(|e| e.to_string())?)?;
    let mut heads = Vec::new();
    all_items(&http, &format!("{issuer}/admin/v1/audit/heads"), token, |item| {
        heads.push(head_of(item)?);
        Ok(())
    })
    .await?;
    let (roots, latest, unverifiable_heads) = ledger::check_heads(&heads, &keys, issuer, now())?;
    let mut verifier = Verifier::new(roots);
    all_items(&http, &format!("{issuer}/admin/v1/audit-events"), token, |e| {
        let text = |k: &str| e[k].as_str();
        let fields = ledger::LeafFields {
            seq: e["seq"].as_i64().ok_or("an event without seq")?,
            at: e["at"].as_i64().unwrap_or_default(),
            kind: text("kind").unwrap_or_default(),
            subject: text("subject"),
            client_id: text("client_id"),
            jti: text("jti"),
        };
        let data = ledger::leaf_data_of(fields, &e["detail"]);
        verifier.feed(e["seq"].as_i64().unwrap_or_default(), &data).map_err(|f| f.to_string())
    })
    .await?;
    let verified = verifier.finish().map_err(|f| f.to_string())?;
    report(common, &ledger::Report { verified, latest, unverifiable_heads });
    Ok(())
}

async fn witness(common: &Common, args: WitnessArgs) -> Result<(), String> {
    let issuer = args.issuer.trim_end_matches('/').to_owned();
    let http = http()?;
    loop {
        match witness_once(&http, &issuer, &args.state).await {
            Ok(message) => print(common, json!({ "ok": true, "message": message }), message),
            // An alarm ends the watch; so does any failure in --once mode.
            Err(Alarm::Fork(message)) => return Err(message),
            Err(Alarm::Unreachable(message)) if args.once => return Err(message),
            Err(Alarm::Unreachable(message)) => eprintln!("witness: {message}; will retry"),
        }
        if args.once {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(args.interval.max(1))).await;
    }
}

enum Alarm {
    /// The log was rolled back or rewritten, or the server sent a bad head.
    Fork(String),
    /// Could not ask: try again later.
    Unreachable(String),
}

async fn witness_once(http: &reqwest::Client, issuer: &str, state_file: &Path) -> Result<String, Alarm> {
    let jwks = http.get(format!("{issuer}/jwks.json")).send().await.map_err(|e| Alarm::Unreachable(e.to_string()))?;
    let keys =
        key_set(&jwks.text().await.map_err(|e| Alarm::Unreachable(e.to_string()))?).map_err(Alarm::Unreachable)?;
    let head = get_json(http, &format!("{issuer}/audit/head"), None).await.map_err(Alarm::Unreachable)?;
    let jws = head["jws"].as_str().unwrap_or_default();
    let (claims, root) = ledger::verify_head(jws, &keys, issuer, now())
        .map_err(|e| Alarm::Fork(format!("the server's latest tree head is not valid: {e}")))?;
    let seen = Seen {
        issuer: issuer.to_owned(),
        tree_size: claims.tree_size,
        root_hash: claims.root_hash.clone(),
        jws: jws.to_owned(),
    };
    let old: Option<Seen> = match std::fs::read_to_string(state_file) {
        Ok(text) => {
            Some(serde_json::from_str(&text).map_err(|e| Alarm::Fork(format!("{}: {e}", state_file.display())))?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Alarm::Unreachable(format!("{}: {e}", state_file.display()))),
    };
    let message = match &old {
        None => format!("first head seen: {} entries", claims.tree_size),
        Some(old) if old.issuer != issuer => {
            return Err(Alarm::Fork(format!(
                "{} holds the state of {}, not {issuer}",
                state_file.display(),
                old.issuer
            )))
        }
        Some(old) => {
            let proof = if claims.tree_size > old.tree_size && old.tree_size > 0 {
                let url = format!("{issuer}/audit/consistency?first={}&second={}", old.tree_size, claims.tree_size);
                let body = get_json(http, &url, None).await.map_err(Alarm::Unreachable)?;
                proof_of(&body).map_err(Alarm::Fork)?
            } else {
                Vec::new()
            };
            ledger::witness(old, claims.tree_size, &root, &proof).map_err(Alarm::Fork)?;
            format!("consistent: {} entries, extending the {} seen before", claims.tree_size, old.tree_size)
        }
    };
    if old.as_ref().is_none_or(|o| o.tree_size < seen.tree_size) {
        save(state_file, &seen).map_err(Alarm::Unreachable)?;
    }
    Ok(message)
}

fn proof_of(body: &Value) -> Result<Vec<merkle::Hash>, String> {
    body["proof"]
        .as_array()
        .ok_or("a consistency answer without a proof")?
        .iter()
        .map(|h| {
            b64::decode(h.as_str().unwrap_or_default().as_bytes())
                .and_then(|r| <[u8; 32]>::try_from(r.as_slice()).ok())
                .ok_or_else(|| "a proof hash that is not base64url SHA-256".to_owned())
        })
        .collect()
}

/// Writes the state whole or not at all (a temporary file renamed over the old one).
fn save(path: &Path, seen: &Seen) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string_pretty(seen).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}
