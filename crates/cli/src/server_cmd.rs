//! `portcullis serve`, `migrate`, and the management commands (`roles`, `users`, `clients`, `keys`), which
//! work on the configured store directly.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use portcullis_server::admin::{Admin, ClientKind, NewClient};
use portcullis_server::clock::{Clock, SystemClock};
use portcullis_server::config::{Config, Settings};
use portcullis_server::model::{ClientCredential, GrantType, TokenDelivery};
use portcullis_server::serve;
use portcullis_server::signing::KeyManager;
use portcullis_server::vault::load_master_key;
use serde_json::json;
use zeroize::Zeroizing;

/// Options every server-side command takes.
#[derive(Debug, Args)]
pub struct Common {
    /// The TOML configuration file (PORTCULLIS_* environment variables override it).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RolesCommand {
    /// Add a role that grants scopes.
    Add {
        name: String,
        /// Space-separated scopes (repeatable).
        #[arg(long = "scopes", alias = "scope")]
        scopes: Vec<String>,
    },
    /// List roles.
    List,
    /// Remove a role (users lose it).
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user; the password is read from standard input.
    Add {
        name: String,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// A role to hold (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// List users.
    List,
    /// Remove a user and revoke their tokens.
    Remove { name: String },
    /// Disable a user and revoke their tokens.
    Disable { name: String },
    /// Enable a disabled user.
    Enable { name: String },
    /// Set a new password (from standard input) and revoke the user's tokens.
    Passwd {
        name: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Revoke every session and token of a user ("log out everywhere").
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client.
    Add(ClientAdd),
    /// List clients.
    List,
    /// Remove a client.
    Remove { id: String },
    /// Disable a client (it can no longer authenticate).
    Disable { id: String },
    /// Enable a disabled client.
    Enable { id: String },
}

#[derive(Debug, Args)]
pub struct ClientAdd {
    pub id: String,
    /// A public client (no secret; for browsers and native apps).
    #[arg(long, conflicts_with_all = ["generate_secret", "jwks"])]
    pub public: bool,
    /// Generate a client secret, printed once.
    #[arg(long, conflicts_with = "jwks")]
    pub generate_secret: bool,
    /// A JWK Set file of the client's public keys (private_key_jwt).
    #[arg(long, value_name = "FILE")]
    pub jwks: Option<PathBuf>,
    /// A grant type the client may use (repeatable).
    #[arg(long = "grant", required = true)]
    pub grants: Vec<GrantType>,
    /// Scopes the client may be granted (repeatable; space-separated allowed).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// A redirect URI (repeatable).
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    /// An audience its tokens may name (repeatable; the first is the default).
    #[arg(long = "audience")]
    pub audiences: Vec<String>,
    /// A first-party client: may use the password grant and /auth/login.
    #[arg(long)]
    pub first_party: bool,
    /// How /auth/login hands tokens over.
    #[arg(long, default_value = "body")]
    pub token_delivery: TokenDelivery,
    /// Require a DPoP proof (RFC 9449) on every token request: its access tokens are all sender-constrained.
    #[arg(long)]
    pub require_dpop: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys and their states.
    List,
    /// Start a rotation: a new key is published now and signs after one JWKS max-age.
    Rotate,
    /// Revoke a key at once (it leaves the JWKS; a new key signs if it was active).
    Revoke {
        /// The key's id; it may start with `-` (a base64url thumbprint), which is taken as the id, not a flag.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

pub fn settings(common: &Common) -> Result<Settings, String> {
    Config::load(common.config.as_deref()).and_then(Config::validate).map_err(|e| e.to_string())
}

pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| format!("cannot start runtime: {e}"))
}

pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    // Colours only on a terminal: a log file or the journal gets plain `key=value` lines that grep can read.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn admin(settings: &Settings) -> Result<Admin, String> {
    let store = serve::open_store(settings).await.map_err(|e| e.to_string())?;
    Ok(Admin::new(store, Arc::new(SystemClock)))
}

fn read_password() -> Result<Zeroizing<String>, String> {
    let mut text = Zeroizing::new(String::new());
    std::io::stdin().take(4096).read_to_string(&mut text).map_err(|e| format!("reading the password: {e}"))?;
    let trimmed = Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_owned());
    Ok(trimmed)
}

/// Prints the result; a closed stdout (`| head`) is not an error worth a panic.
pub fn print(common: &Common, value: serde_json::Value, text: String) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = if common.json {
        writeln!(out, "{value}")
    } else if text.is_empty() {
        Ok(())
    } else {
        writeln!(out, "{text}")
    };
}

pub fn run_serve(common: &Common) -> Result<(), String> {
    let settings = settings(common)?;
    init_logging(&settings.log);
    for name in Config::unknown_env_vars() {
        tracing::warn!(variable = %name, "PORTCULLIS_ variable is not a configuration key; ignored");
    }
    runtime()?.block_on(async {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (running, notes) = serve::start(&settings, clock, shutdown_signal()).await.map_err(|e| e.to_string())?;
        for note in &notes {
            tracing::warn!("{note}");
        }
        banner(&settings, &running, common.config.as_deref());
        running.task.await.map_err(|e| format!("server task failed: {e}"))?;
        tracing::info!("stopped");
        Ok(())
    })
}

fn banner(settings: &Settings, running: &serve::Running, config: Option<&Path>) {
    let scheme = if running.tls { "https" } else { "http" };
    let cfg = config.map(|c| format!(" --config {}", c.display())).unwrap_or_default();
    eprintln!(
        "\nportcullis is serving on {scheme}://{addr}\n  issuer     {issuer}\n  database   {db}\n  discovery  \
         {issuer}/.well-known/openid-configuration\n  JWKS       {issuer}/jwks.json\n  metrics    {metrics}\n\nNext steps:\n  \
         portcullis{cfg} clients add my-service --generate-secret --grant client_credentials --scope read\n  \
         curl -u my-service:SECRET -d grant_type=client_credentials {issuer}/oauth2/token\n",
        addr = running.addr,
        issuer = settings.issuer,
        db = serve::redacted_url(&settings.database_url),
        metrics = match running.metrics_addr {
            Some(at) => format!("http://{at}/metrics"),
            None => format!("{scheme}://{}/metrics", running.addr),
        },
    );
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutdown requested");
}

pub fn run_migrate(common: &Common) -> Result<(), String> {
    let settings = settings(common)?;
    runtime()?.block_on(async {
        serve::open_store(&settings).await.map_err(|e| e.to_string())?;
        let url = serve::redacted_url(&settings.database_url);
        print(common, json!({ "migrated": url }), format!("{url} is up to date"));
        Ok(())
    })
}

pub fn run_roles(common: &Common, cmd: RolesCommand) -> Result<(), String> {
    let settings = settings(common)?;
    runtime()?.block_on(async {
        let admin = admin(&settings).await?;
        match cmd {
            RolesCommand::Add { name, scopes } => {
                let role = admin.add_role(&name, &scopes).await.map_err(|e| e.to_string())?;
                let scopes = role.scopes.to_string();
                print(common, json!({ "name": role.name, "scopes": scopes }), format!("role {name} added ({scopes})"));
            }
            RolesCommand::List => {
                let roles = admin.all_roles().await.map_err(|e| e.to_string())?;
                let rows: Vec<_> =
                    roles.iter().map(|r| json!({ "name": r.name, "scopes": r.scopes.to_string() })).collect();
                let text: Vec<String> = roles.iter().map(|r| format!("{:<24} {}", r.name, r.scopes)).collect();
                print(common, json!(rows), text.join("\n"));
            }
            RolesCommand::Remove { name } => {
                admin.remove_role(&name).await.map_err(|e| e.to_string())?;
                print(common, json!({ "removed": name }), format!("role {name} removed"));
            }
        }
        Ok(())
    })
}

pub fn run_users(common: &Common, cmd: UsersCommand) -> Result<(), String> {
    let settings = settings(common)?;
    let password = match &cmd {
        UsersCommand::Add { .. } | UsersCommand::Passwd { .. } => Some(read_password()?),
        _ => None,
    };
    runtime()?.block_on(async {
        let admin = admin(&settings).await?;
        let done = |what: &str, name: &str| print(common, json!({ what: name }), format!("user {name} {what}"));
        match cmd {
            UsersCommand::Add { name, roles, .. } => {
                let user =
                    admin.add_user(&name, password.unwrap_or_default(), &roles).await.map_err(|e| e.to_string())?;
                print(
                    common,
                    json!({ "id": user.id, "name": user.name, "roles": user.roles }),
                    format!("user {name} added (sub {})", user.id),
                );
            }
            UsersCommand::List => {
                let users = admin.all_users().await.map_err(|e| e.to_string())?;
                let rows: Vec<_> = users
                    .iter()
                    .map(|u| {
                        json!({ "id": u.id, "name": u.name, "roles": u.roles, "disabled": u.disabled,
                        "failures": u.failures, "scopes": u.scopes.to_string() })
                    })
                    .collect();
                let text: Vec<String> = users
                    .iter()
                    .map(|u| {
                        let state = if u.disabled { "disabled" } else { "active" };
                        format!("{:<24} {:<26} {:<8} roles: {}", u.name, u.id, state, u.roles.join(","))
                    })
                    .collect();
                print(common, json!(rows), text.join("\n"));
            }
            UsersCommand::Remove { name } => {
                admin.remove_user(&name).await.map_err(|e| e.to_string())?;
                done("removed", &name);
            }
            UsersCommand::Disable { name } => {
                admin.set_user_disabled(&name, true).await.map_err(|e| e.to_string())?;
                done("disabled", &name);
            }
            UsersCommand::Enable { name } => {
                admin.set_user_disabled(&name, false).await.map_err(|e| e.to_string())?;
                done("enabled", &name);
            }
            UsersCommand::Passwd { name, .. } => {
                admin.set_password(&name, password.unwrap_or_default()).await.map_err(|e| e.to_string())?;
                done("password changed", &name);
            }
            UsersCommand::Revoke { name } => {
                admin.revoke_user(&name).await.map_err(|e| e.to_string())?;
                done("revoked", &name);
            }
        }
        Ok(())
    })
}

pub fn run_clients(common: &Common, cmd: ClientsCommand) -> Result<(), String> {
    let settings = settings(common)?;
    runtime()?.block_on(async {
        let admin = admin(&settings).await?;
        match cmd {
            ClientsCommand::Add(add) => add_client(common, &admin, add).await?,
            ClientsCommand::List => {
                let clients = admin.all_clients().await.map_err(|e| e.to_string())?;
                let method = |c: &ClientCredential| match c {
                    ClientCredential::None => "none",
                    ClientCredential::Secret(_) => "client_secret",
                    ClientCredential::Jwks(_) => "private_key_jwt",
                };
                let rows: Vec<_> = clients
                    .iter()
                    .map(|c| {
                        let grants: Vec<&str> = c.grants.iter().map(|g| g.as_str()).collect();
                        json!({ "client_id": c.id, "auth": method(&c.credential), "grants": grants,
                            "scope": c.scopes.to_string(), "audiences": c.audiences, "first_party": c.first_party,
                            "redirect_uris": c.redirect_uris, "disabled": c.disabled })
                    })
                    .collect();
                let text: Vec<String> = clients
                    .iter()
                    .map(|c| {
                        let grants: Vec<&str> = c.grants.iter().map(|g| g.as_str()).collect();
                        let state = if c.disabled { " (disabled)" } else { "" };
                        format!(
                            "{:<24} {:<16} {} scope: {}{state}",
                            c.id,
                            method(&c.credential),
                            grants.join(","),
                            c.scopes
                        )
                    })
                    .collect();
                print(common, json!(rows), text.join("\n"));
            }
            ClientsCommand::Remove { id } => {
                admin.remove_client(&id).await.map_err(|e| e.to_string())?;
                print(common, json!({ "removed": id }), format!("client {id} removed"));
            }
            ClientsCommand::Disable { id } => {
                admin.set_client_disabled(&id, true).await.map_err(|e| e.to_string())?;
                print(common, json!({ "disabled": id }), format!("client {id} disabled"));
            }
            ClientsCommand::Enable { id } => {
                admin.set_client_disabled(&id, false).await.map_err(|e| e.to_string())?;
                print(common, json!({ "enabled": id }), format!("client {id} enabled"));
            }
        }
        Ok(())
    })
}

async fn add_client(common: &Common, admin: &Admin, add: ClientAdd) -> Result<(), String> {
    let credential = match (&add.jwks, add.generate_secret, add.public) {
        (Some(file), _, _) => {
            ClientKind::Jwks(std::fs::read_to_string(file).map_err(|e| format!("--jwks {}: {e}", file.display()))?)
        }
        (None, true, _) => ClientKind::GenerateSecret,
        (None, false, true) => ClientKind::Public,
        (None, false, false) => return Err("choose one of --public, --generate-secret or --jwks FILE".into()),
    };
    let new = NewClient {
        id: add.id.clone(),
        credential,
        grants: add.grants,
        scopes: add.scopes,
        redirect_uris: add.redirect_uris,
        audiences: add.audiences,
        first_party: add.first_party,
        token_delivery: add.token_delivery,
        dpop_bound: add.require_dpop,
    };
    let (client, secret) = admin.add_client(new).await.map_err(|e| e.to_string())?;
    match secret {
        Some(secret) => print(
            common,
            json!({ "client_id": client.id, "client_secret": secret.expose() }),
            format!(
                "client {} added\nclient_secret: {}\n(shown once: only its SHA-256 is stored)",
                client.id,
                secret.expose()
            ),
        ),
        None => print(common, json!({ "client_id": client.id }), format!("client {} added", client.id)),
    }
    Ok(())
}

pub fn run_keys(common: &Common, cmd: KeysCommand) -> Result<(), String> {
    let settings = settings(common)?;
    runtime()?.block_on(async {
        let store = serve::open_store(&settings).await.map_err(|e| e.to_string())?;
        let now = SystemClock.now().as_secs();
        match cmd {
            KeysCommand::List => {
                let keys = store.list_keys().await.map_err(|e| e.to_string())?;
                let rows: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        let r = &k.record;
                        json!({ "kid": r.kid, "alg": k.alg, "state": r.state.as_str(), "created_at": r.created_at,
                            "activate_at": r.activate_at, "activated_at": r.activated_at, "retired_at": r.retired_at })
                    })
                    .collect();
                let text: Vec<String> = keys
                    .iter()
                    .map(|k| {
                        let age = (now - k.record.created_at) / 3600;
                        format!("{:<44} {:<10} {:<8} {age}h old", k.record.kid, k.alg, k.record.state.as_str())
                    })
                    .collect();
                print(common, json!(rows), text.join("\n"));
            }
            KeysCommand::Rotate | KeysCommand::Revoke { .. } => {
                let (master, _) = load_master_key(&settings.master_key).map_err(|e| e.to_string())?;
                let admin = Admin::new(Arc::clone(&store), Arc::new(SystemClock));
                let keys = KeyManager::new(store, master, settings.key_rules, settings.signing_alg);
                if let KeysCommand::Revoke { kid } = cmd {
                    admin.revoke_key(&keys, &kid).await.map_err(|e| e.to_string())?;
                    print(common, json!({ "revoked": kid }), format!("key {kid} revoked"));
                } else {
                    let kid = admin.rotate_key(&keys).await.map_err(|e| e.to_string())?;
                    let at = now + settings.key_rules.jwks_max_age;
                    print(
                        common,
                        json!({ "kid": kid, "state": "pending", "activate_at": at }),
                        format!("key {kid} published; it signs from {at} (after one JWKS max-age)"),
                    );
                }
            }
        }
        Ok(())
    })
}
