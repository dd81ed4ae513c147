//! `portcullis gateway --config gateway.toml`: the guard as a reverse proxy and forward-auth service.

use std::path::PathBuf;

use portcullis_guard::gateway::{self, Gateway, GatewayConfig};

pub fn run(config: Option<PathBuf>) -> Result<(), String> {
    let path = config.ok_or("gateway needs --config gateway.toml")?;
    let config = GatewayConfig::load(&path).map_err(|e| e.to_string())?;
    crate::server_cmd::init_logging(&std::env::var("PORTCULLIS_LOG").unwrap_or_else(|_| "info".into()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    runtime.block_on(async {
        let gw = Gateway::start(&config, gateway::install_metrics()).await.map_err(|e| e.to_string())?;
        let (addr, task) = gateway::serve(gw, &config.listen, crate::server_cmd::shutdown_signal())
            .await
            .map_err(|e| e.to_string())?;
        eprintln!(
            "\nportcullis gateway is serving on http://{addr}\n  issuer        {}\n  routes        {}\n  forward auth  \
             http://{addr}/check\n",
            config.issuer,
            config.routes.len()
        );
        task.await.map_err(|e| format!("gateway task failed: {e}"))?;
        tracing::info!("stopped");
        Ok(())
    })
}
