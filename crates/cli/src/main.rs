//! The `portcullis` binary: argument parsing and wiring only.

#![forbid(unsafe_code)]

mod jose_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Portcullis: JWT authentication that is correct by default.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sign, verify and inspect JSON Web Tokens.
    #[command(subcommand)]
    Jwt(jose_cmd::JwtCommand),
    /// Generate JSON Web Keys, derive public keys and thumbprints.
    #[command(subcommand)]
    Jwk(jose_cmd::JwkCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Jwt(cmd) => jose_cmd::run_jwt(cmd),
        Command::Jwk(cmd) => jose_cmd::run_jwk(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}
