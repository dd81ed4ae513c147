//! The `portcullis` binary: argument parsing and wiring only.

#![forbid(unsafe_code)]

mod audit_cmd;
mod gateway_cmd;
mod jose_cmd;
mod risk_cmd;
mod server_cmd;
mod transfer_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc's per-thread free lists suit the gateway's and the server's many short-lived request allocations
/// better than the system allocator (measured: the gateway's part of `docs/performance-log.md`, 2026-12-03).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Portcullis: JWT authentication that is correct by default.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    common: server_cmd::Common,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sign, verify and inspect JSON Web Tokens.
    #[command(subcommand)]
    Jwt(jose_cmd::JwtCommand),
    /// Generate JSON Web Keys, derive public keys and thumbprints.
    #[command(subcommand)]
    Jwk(jose_cmd::JwkCommand),
    /// Run the authorization server.
    Serve,
    /// Run the gateway: reverse proxy and forward-auth endpoint in front of APIs (--config gateway.toml).
    Gateway(gateway_cmd::GatewayArgs),
    /// Create or upgrade the database schema (the server also does this at start).
    Migrate,
    /// Write the whole store (accounts, clients, keys, sessions, revocations, audit) as JSON.
    Export(transfer_cmd::ExportArgs),
    /// Load an export into the configured store, which must be empty (e.g. move SQLite to PostgreSQL).
    Import(transfer_cmd::ImportArgs),
    /// Manage roles.
    #[command(subcommand)]
    Roles(server_cmd::RolesCommand),
    /// Manage users.
    #[command(subcommand)]
    Users(server_cmd::UsersCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Clients(server_cmd::ClientsCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(server_cmd::KeysCommand),
    /// Check the tamper-evident audit ledger, or witness a server's.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Score, evaluate and simulate token-theft and abuse detection.
    #[command(subcommand)]
    Risk(risk_cmd::RiskCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Jwt(cmd) => jose_cmd::run_jwt(cmd),
        Command::Jwk(cmd) => jose_cmd::run_jwk(cmd),
        Command::Serve => server_cmd::run_serve(&cli.common),
        Command::Gateway(args) => gateway_cmd::run(cli.common.config.clone(), &args),
        Command::Migrate => server_cmd::run_migrate(&cli.common),
        Command::Export(args) => transfer_cmd::run_export(&cli.common, args.output.as_deref()),
        Command::Import(args) => transfer_cmd::run_import(&cli.common, args.input.as_deref()),
        Command::Roles(cmd) => server_cmd::run_roles(&cli.common, cmd),
        Command::Users(cmd) => server_cmd::run_users(&cli.common, cmd),
        Command::Clients(cmd) => server_cmd::run_clients(&cli.common, cmd),
        Command::Keys(cmd) => server_cmd::run_keys(&cli.common, cmd),
        Command::Audit(cmd) => audit_cmd::run(&cli.common, cmd),
        Command::Risk(cmd) => risk_cmd::run(&cli.common, cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}
