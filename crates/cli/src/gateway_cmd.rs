//! `portcullis gateway --config gateway.toml`: the guard as a reverse proxy and forward-auth service.
//! `SIGHUP` reloads the file (see [`Gateway::reload`]); `SIGTERM` or Ctrl-C stops the gateway after draining.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_guard::gateway::{self, Gateway, GatewayConfig};
use portcullis_guard::workers::serve_workers;

#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    /// Check the configuration (routes, addresses, secret, certificate and key files) and exit: 0 when the gateway
    /// would start with it, 1 with the reason otherwise. The issuer is not contacted.
    #[arg(long)]
    pub check: bool,
}

pub fn run(config: Option<PathBuf>, args: &GatewayArgs) -> Result<(), String> {
    let path = config.ok_or("gateway needs --config gateway.toml")?;
    let config = GatewayConfig::load(&path).map_err(|e| e.to_string())?;
    if args.check {
        let summary = config.check().map_err(|e| format!("{}: {e}", path.display()))?;
        println!("{}: ok ({summary})", path.display());
        return Ok(());
    }
    crate::server_cmd::init_logging(&std::env::var("PORTCULLIS_LOG").unwrap_or_else(|_| "info".into()));
    // The guard's background work (JWKS refresh, revocation feed) runs here; requests run on the workers.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    runtime.block_on(async {
        let gw = Gateway::start(&config, gateway::install_metrics()).await.map_err(|e| e.to_string())?;
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let metrics_at = match &config.metrics_listen {
            Some(listen) => {
                let mut stopping = stopping.clone();
                let stop = async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                };
                Some(gateway::serve_metrics(&gw, listen, stop).await.map_err(|e| e.to_string())?.0)
            }
            None => None,
        };
        let (addr, workers) =
            serve_workers(&gw, &config.listen, config.workers, stopping).map_err(|e| e.to_string())?;
        let scheme = gw.scheme();
        eprintln!(
            "\nportcullis gateway is serving on {scheme}://{addr} ({} workers)\n  issuer        {}\n  routes        {}\n  \
             forward auth  {scheme}://{addr}/check\n  metrics       {metrics}\n",
            workers.len(),
            config.issuer,
            config.routes.len(),
            metrics = match metrics_at {
                Some(at) => format!("http://{at}/metrics"),
                None => format!("{scheme}://{addr}/metrics"),
            },
        );
        #[cfg(unix)]
        let reloads = reload_on_hangup(&gw, &path).map_err(|e| format!("cannot watch SIGHUP: {e}"))?;
        crate::server_cmd::shutdown_signal().await;
        #[cfg(unix)]
        reloads.abort();
        stop.send_replace(true);
        tokio::task::spawn_blocking(move || workers.into_iter().for_each(|w| drop(w.join())))
            .await
            .map_err(|e| format!("gateway workers failed: {e}"))?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Reloads `path` on every `SIGHUP`, as `nginx -s reload` does ([`Gateway::reload_file`]).
#[cfg(unix)]
fn reload_on_hangup(gw: &Arc<Gateway>, path: &Path) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let (gw, path) = (Arc::clone(gw), path.to_owned());
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            // Logged and counted by the gateway.
            let _ = gw.reload_file(&path);
        }
    }))
}
