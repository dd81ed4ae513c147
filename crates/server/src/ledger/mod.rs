//! The tamper-evident audit ledger: every audit event is a leaf of an RFC 9162 Merkle tree.

pub mod merkle;
