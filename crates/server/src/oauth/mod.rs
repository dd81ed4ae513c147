//! Grant logic, free of I/O and HTTP: it takes `now` and the facts the store found, and returns what to issue
//! or the RFC 6749 error to answer. One module per concept.

pub mod access_token;
pub mod authorize;
pub mod client_auth;
pub mod dpop;
pub mod error;
pub mod id_token;
pub mod lockout;
pub mod refresh;
pub mod scope;
pub mod session_csrf;
