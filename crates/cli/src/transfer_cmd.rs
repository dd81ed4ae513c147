//! `portcullis export` and `portcullis import`: a whole store as one JSON document, to move a deployment from
//! SQLite to PostgreSQL (or between any two stores). The document holds password hashes, secret digests and
//! sealed private keys, so an export file is created readable by its owner only.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use portcullis_server::serve;
use portcullis_server::store::snapshot::Snapshot;
use serde_json::json;

use crate::server_cmd::{print, runtime, settings, Common};

/// Writes the configured store as JSON to `output` (mode 0600) or to standard output.
pub fn run_export(common: &Common, output: Option<&Path>) -> Result<(), String> {
    let settings = settings(common)?;
    let snapshot = runtime()?.block_on(async {
        let store = serve::open_store(&settings).await.map_err(|e| e.to_string())?;
        store.export().await.map_err(|e| e.to_string())
    })?;
    let text = serde_json::to_vec(&snapshot).map_err(|e| e.to_string())?;
    match output {
        Some(path) => {
            let mut file = private_file(path)?;
            file.write_all(&text).and_then(|()| file.sync_all()).map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!(
                "exported {} to {}: {}",
                serve::redacted_url(&settings.database_url),
                path.display(),
                summary(&snapshot)
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&text).and_then(|()| out.write_all(b"\n")).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Reads a document from `input` or standard input and writes it into the configured (empty) store.
pub fn run_import(common: &Common, input: Option<&Path>) -> Result<(), String> {
    let settings = settings(common)?;
    let mut text = Vec::new();
    match input {
        Some(path) => text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => {
            std::io::stdin().read_to_end(&mut text).map_err(|e| e.to_string())?;
        }
    }
    let snapshot: Snapshot = serde_json::from_slice(&text).map_err(|e| format!("not an export document: {e}"))?;
    runtime()?.block_on(async {
        let store = serve::open_store(&settings).await.map_err(|e| e.to_string())?;
        store.import(&snapshot).await.map_err(|e| format!("import refused, nothing written: {e}"))
    })?;
    let url = serve::redacted_url(&settings.database_url);
    let counts: serde_json::Map<String, serde_json::Value> =
        snapshot.counts().into_iter().map(|(t, n)| (t, json!(n))).collect();
    print(common, json!({ "imported": url, "rows": counts }), format!("imported into {url}: {}", summary(&snapshot)));
    Ok(())
}

fn summary(snapshot: &Snapshot) -> String {
    snapshot.counts().iter().map(|(t, n)| format!("{t} {n}")).collect::<Vec<_>>().join(", ")
}

fn private_file(path: &Path) -> Result<std::fs::File, String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| format!("{}: {e} (an export never overwrites a file)", path.display()))
}

/// The `--output` / `--input` file arguments.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Write to this new file (created with mode 0600) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Read from this file instead of standard input.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
}
