-- Portcullis schema, version 1. Times are Unix seconds. Secrets are stored only as SHA-256 digests (BLOB);
-- private keys only sealed under the master key.

CREATE TABLE roles (
    name       TEXT PRIMARY KEY,
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    disabled        INTEGER NOT NULL DEFAULT 0,
    failures        INTEGER NOT NULL DEFAULT 0,
    last_failure_at INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
);

CREATE TABLE user_roles (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role    TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role)
);

CREATE TABLE clients (
    id             TEXT PRIMARY KEY,
    auth_method    TEXT NOT NULL,          -- none | secret | jwks
    secret_digest  BLOB,
    jwks           TEXT,
    grants         TEXT NOT NULL,          -- space-separated grant types
    scopes         TEXT NOT NULL,
    redirect_uris  TEXT NOT NULL,          -- space-separated
    audiences      TEXT NOT NULL,          -- space-separated; the first is the default aud
    first_party    INTEGER NOT NULL,
    token_delivery TEXT NOT NULL,
    disabled       INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL
);

CREATE TABLE used_assertions (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL,
    state          TEXT NOT NULL,          -- pending | active | retired | revoked
    created_at     INTEGER NOT NULL,
    activate_at    INTEGER,
    activated_at   INTEGER,
    retired_at     INTEGER,
    revoked_at     INTEGER,
    public_jwk     TEXT NOT NULL,
    sealed_private BLOB NOT NULL
);

CREATE TABLE refresh_families (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    scope          TEXT NOT NULL,
    audience       TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    revoked_reason TEXT
);
CREATE INDEX refresh_families_by_user ON refresh_families (user_id);

CREATE TABLE refresh_tokens (
    digest    BLOB PRIMARY KEY,
    family_id TEXT NOT NULL REFERENCES refresh_families(id) ON DELETE CASCADE,
    issued_at INTEGER NOT NULL,
    used_at   INTEGER
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);

CREATE TABLE revocations (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,           -- jti | sid | sub
    value         TEXT NOT NULL,
    issued_before INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    reason        TEXT NOT NULL
);

CREATE TABLE audit_events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    subject   TEXT,
    client_id TEXT,
    jti       TEXT,
    detail    TEXT NOT NULL
);
