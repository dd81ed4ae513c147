//! A whole store as one JSON document, to move a deployment between backends (`portcullis export` from
//! SQLite, `portcullis import` into PostgreSQL). The tables are described once here, column by column; each
//! backend runs the `SELECT`s and `INSERT`s this module writes, so the two cannot drift apart.
//!
//! A snapshot holds what the store holds: password hashes, secret digests, refresh-token digests and private
//! keys sealed under the master key (the target needs the same master key). It is as sensitive as the database.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::rows::Cols;
use super::{StoreError, StoreResult};

/// The format of the document; an importer refuses a version it does not know.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    OptText,
    Int,
    OptInt,
    Flag,
    Bytes,
    OptBytes,
}
use Kind::*;

/// Every table worth moving, parents before children, with its columns. Used client assertions and leases
/// live for seconds and are left behind. Columns added by later versions go last and have a default (a `Flag`
/// is false, an `Opt*` is null), so a snapshot written before them still imports.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    ("roles", &[("name", Text), ("scopes", Text), ("created_at", Int)]),
    (
        "users",
        &[
            ("id", Text),
            ("name", Text),
            ("password_hash", Text),
            ("disabled", Flag),
            ("failures", Int),
            ("last_failure_at", Int),
            ("created_at", Int),
        ],
    ),
    ("user_roles", &[("user_id", Text), ("role", Text)]),
    (
        "clients",
        &[
            ("id", Text),
            ("auth_method", Text),
            ("secret_digest", OptBytes),
            ("jwks", OptText),
            ("grants", Text),
            ("scopes", Text),
            ("redirect_uris", Text),
            ("audiences", Text),
            ("first_party", Flag),
            ("token_delivery", Text),
            ("disabled", Flag),
            ("created_at", Int),
            ("dpop_bound", Flag),
        ],
    ),
    ("consents", &[("user_id", Text), ("client_id", Text), ("scope", Text), ("granted_at", Int)]),
    (
        "signing_keys",
        &[
            ("kid", Text),
            ("alg", Text),
            ("state", Text),
            ("created_at", Int),
            ("activate_at", OptInt),
            ("activated_at", OptInt),
            ("retired_at", OptInt),
            ("revoked_at", OptInt),
            ("public_jwk", Text),
            ("sealed_private", Bytes),
        ],
    ),
    (
        "refresh_families",
        &[
            ("id", Text),
            ("user_id", Text),
            ("client_id", Text),
            ("scope", Text),
            ("audience", Text),
            ("created_at", Int),
            ("revoked_at", OptInt),
            ("revoked_reason", OptText),
            ("dpop_jkt", OptText),
        ],
    ),
    ("refresh_tokens", &[("digest", Bytes), ("family_id", Text), ("issued_at", Int), ("used_at", OptInt)]),
    (
        "revocations",
        &[
            ("seq", Int),
            ("kind", Text),
            ("value", Text),
            ("issued_before", Int),
            ("expires_at", Int),
            ("created_at", Int),
            ("reason", Text),
        ],
    ),
    (
        "audit_events",
        &[
            ("seq", Int),
            ("at", Int),
            ("kind", Text),
            ("subject", OptText),
            ("client_id", OptText),
            ("jti", OptText),
            ("detail", Text),
        ],
    ),
];

/// The tables that must be empty before an import: a store that already has accounts, clients or keys is
/// somebody's live deployment, not a target.
pub(super) const MUST_BE_EMPTY: [&str; 4] = ["roles", "users", "clients", "signing_keys"];

/// One table's rows, each a list of values in the order of `columns`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// A whole store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: u32,
    pub tables: Vec<Table>,
}

impl Snapshot {
    /// Rows per table, for a summary (`users: 3, clients: 2, ...`).
    pub fn counts(&self) -> Vec<(String, usize)> {
        self.tables.iter().map(|t| (t.name.clone(), t.rows.len())).collect()
    }
}

/// A value to bind, typed by its column.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Bound {
    Text(Option<String>),
    Int(Option<i64>),
    Flag(bool),
    Bytes(Option<Vec<u8>>),
}

/// The `SELECT` that reads a table whole, in a stable order (its first column). Audit events not yet numbered
/// (PostgreSQL numbers them after they commit; see `PgStore::number_audit_events`) are appended after the export
/// began, so they are not part of it.
pub(super) fn select_sql(table: usize) -> String {
    let (name, columns) = TABLES[table];
    let list: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
    let only_numbered = if name == "audit_events" { " WHERE seq IS NOT NULL" } else { "" };
    format!("SELECT {} FROM {name}{only_numbered} ORDER BY {}", list.join(", "), list[0])
}

/// The `INSERT` of one row (`$1, $2, ...`: both SQLite and PostgreSQL take numbered parameters).
pub(super) fn insert_sql(table: usize) -> String {
    let (name, columns) = TABLES[table];
    let list: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
    let params: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    format!("INSERT INTO {name} ({}) VALUES ({})", list.join(", "), params.join(", "))
}

pub(super) fn table_count() -> usize {
    TABLES.len()
}

/// Reads one row of table `table` into JSON values (bytes as base64url).
pub(super) fn row_values(table: usize, row: &impl Cols) -> StoreResult<Vec<Value>> {
    use base64::Engine as _;
    let b64 = |b: Vec<u8>| Value::String(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b));
    TABLES[table]
        .1
        .iter()
        .map(|(column, kind)| {
            Ok(match kind {
                Text => Value::from(row.text(column)?),
                OptText => row.opt_text(column)?.map_or(Value::Null, Value::from),
                Int => Value::from(row.int(column)?),
                OptInt => row.opt_int(column)?.map_or(Value::Null, Value::from),
                Flag => Value::from(row.flag(column)?),
                Bytes => b64(row.bytes(column)?),
                OptBytes => row.opt_bytes(column)?.map_or(Value::Null, b64),
            })
        })
        .collect()
}

pub(super) fn table_of(table: usize, rows: Vec<Vec<Value>>) -> Table {
    let (name, columns) = TABLES[table];
    Table { name: name.into(), columns: columns.iter().map(|(c, _)| (*c).to_owned()).collect(), rows }
}

/// Checks a snapshot against the table descriptions and turns each row into typed values for binding, table by
/// table in [`TABLES`] order. Anything unexpected is refused before a single row is written.
pub(super) fn bound_rows(snapshot: &Snapshot) -> StoreResult<Vec<(usize, Vec<Vec<Bound>>)>> {
    use base64::Engine as _;
    let bad = |why: String| StoreError::Corrupt(format!("snapshot: {why}"));
    if snapshot.format != FORMAT {
        return Err(bad(format!("format {} is not {FORMAT}", snapshot.format)));
    }
    let mut out = Vec::new();
    for (i, (name, columns)) in TABLES.iter().enumerate() {
        let Some(table) = snapshot.tables.iter().find(|t| t.name == *name) else { continue };
        let expected: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
        // An older snapshot may lack columns added since, if each has a default.
        let given = table.columns.len();
        let defaulted = columns.get(given..).unwrap_or_default();
        if given > expected.len()
            || table.columns != expected[..given]
            || defaulted.iter().any(|(_, kind)| !matches!(kind, Flag | OptText | OptInt | OptBytes))
        {
            return Err(bad(format!("table {name} has columns {:?}, expected {expected:?}", table.columns)));
        }
        let mut rows = Vec::with_capacity(table.rows.len());
        for (r, row) in table.rows.iter().enumerate() {
            if row.len() != given {
                return Err(bad(format!("{name} row {r} has {} values", row.len())));
            }
            let mut values = Vec::with_capacity(row.len());
            for ((column, kind), value) in columns.iter().zip(row) {
                let wrong = || bad(format!("{name} row {r}: {column} is not a {kind:?} value"));
                let bytes = |v: &Value| {
                    let text = v.as_str().ok_or_else(wrong)?;
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).map_err(|_| wrong())
                };
                values.push(match (kind, value) {
                    (OptText | OptInt | OptBytes, Value::Null) => match kind {
                        OptText => Bound::Text(None),
                        OptInt => Bound::Int(None),
                        _ => Bound::Bytes(None),
                    },
                    (Text | OptText, Value::String(s)) => Bound::Text(Some(s.clone())),
                    (Int | OptInt, Value::Number(n)) => Bound::Int(Some(n.as_i64().ok_or_else(wrong)?)),
                    (Flag, Value::Bool(b)) => Bound::Flag(*b),
                    (Bytes | OptBytes, v) => Bound::Bytes(Some(bytes(v)?)),
                    _ => return Err(wrong()),
                });
            }
            values.extend(defaulted.iter().map(|(_, kind)| match kind {
                Flag => Bound::Flag(false),
                OptText => Bound::Text(None),
                OptInt => Bound::Int(None),
                _ => Bound::Bytes(None),
            }));
            rows.push(values);
        }
        out.push((i, rows));
    }
    for table in &snapshot.tables {
        if !TABLES.iter().any(|(name, _)| *name == table.name) {
            return Err(bad(format!("unknown table {:?}", table.name)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_every_column_in_order() {
        let users = TABLES.iter().position(|(n, _)| *n == "users").unwrap();
        assert_eq!(
            select_sql(users),
            "SELECT id, name, password_hash, disabled, failures, last_failure_at, created_at FROM users ORDER BY id"
        );
        assert_eq!(
            insert_sql(users),
            "INSERT INTO users (id, name, password_hash, disabled, failures, last_failure_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        );
    }

    #[test]
    fn malformed_snapshots_are_refused_before_anything_is_written() {
        let roles = |rows: Vec<Vec<Value>>| Snapshot {
            format: FORMAT,
            tables: vec![Table {
                name: "roles".into(),
                columns: vec!["name".into(), "scopes".into(), "created_at".into()],
                rows,
            }],
        };
        let good = roles(vec![vec![Value::from("staff"), Value::from("read"), Value::from(1)]]);
        assert_eq!(bound_rows(&good).unwrap()[0].1.len(), 1);
        // A snapshot from before a defaulted column was added imports with the default.
        let clients = TABLES.iter().position(|(n, _)| *n == "clients").unwrap();
        let mut old_columns: Vec<String> = TABLES[clients].1.iter().map(|(c, _)| (*c).to_owned()).collect();
        assert_eq!(old_columns.pop().as_deref(), Some("dpop_bound"));
        let row: Vec<Value> = TABLES[clients].1[..old_columns.len()]
            .iter()
            .map(|(_, kind)| match kind {
                Flag => Value::from(false),
                Int => Value::from(1),
                OptBytes | OptText => Value::Null,
                _ => Value::from("x"),
            })
            .collect();
        let old = Snapshot {
            format: FORMAT,
            tables: vec![Table { name: "clients".into(), columns: old_columns, rows: vec![row] }],
        };
        let bound = bound_rows(&old).unwrap();
        assert_eq!(bound[0].1[0].last(), Some(&Bound::Flag(false)));
        assert_eq!(bound[0].1[0].len(), TABLES[clients].1.len());
        for bad in [
            Snapshot { format: 2, ..good.clone() },
            roles(vec![vec![Value::from("staff"), Value::from("read")]]),
            roles(vec![vec![Value::from("staff"), Value::from("read"), Value::from("1")]]),
            roles(vec![vec![Value::Null, Value::from("read"), Value::from(1)]]),
            // `created_at` has no default: a snapshot cannot leave it out.
            Snapshot {
                format: FORMAT,
                tables: vec![Table {
                    name: "roles".into(),
                    columns: vec!["name".into(), "scopes".into()],
                    rows: vec![vec![Value::from("staff"), Value::from("read")]],
                }],
            },
            Snapshot {
                format: FORMAT,
                tables: vec![Table { name: "sqlite_master".into(), columns: vec![], rows: vec![] }],
            },
        ] {
            assert!(matches!(bound_rows(&bad), Err(StoreError::Corrupt(_))), "{bad:?}");
        }
    }
}
