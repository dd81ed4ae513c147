//! # portcullis-server
//!
//! The Portcullis authorization server: accounts, clients, roles, grants and token issuance (`authority`,
//! `oauth`), signing keys and their lifecycle (`signing`, `keys`, `vault`), revocation and audit, storage on
//! SQLite or PostgreSQL (`store`), and HTTP (`http`: the OAuth and OpenID Connect endpoints, the pages, the
//! first-party API and the admin API).
//!
//! Non-goals: it never verifies tokens for APIs (that is `portcullis-guard`), and never signs with HMAC.

#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod authority;
pub mod clock;
pub mod config;
pub mod http;
pub mod keys;
pub mod ledger;
pub mod model;
pub mod oauth;
pub mod revocation;
pub mod risk;
pub mod secrets;
pub mod serve;
pub mod signing;
pub mod store;
pub mod vault;

use portcullis_jose::Algorithm;

/// The algorithm new signing keys use unless configured otherwise (DESIGN.md §3).
pub const DEFAULT_SIGNING_ALGORITHM: Algorithm = Algorithm::ES256;

/// The algorithms the server may sign with: every asymmetric one, never HMAC.
pub fn signing_algorithms() -> impl Iterator<Item = Algorithm> {
    Algorithm::asymmetric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_never_signs_with_a_shared_secret() {
        assert!(signing_algorithms().all(|a| !a.is_symmetric()));
        assert!(signing_algorithms().any(|a| a == DEFAULT_SIGNING_ALGORITHM));
    }
}
