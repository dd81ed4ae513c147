-- Portcullis schema, version 1, for PostgreSQL: the same tables and meaning as migrations/sqlite. Times are Unix
-- seconds. Secrets are stored only as SHA-256 digests (BYTEA); private keys only sealed under the master key.

CREATE TABLE roles (
    name       TEXT PRIMARY KEY,
    scopes     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    disabled        BOOLEAN NOT NULL DEFAULT FALSE,
    failures        BIGINT NOT NULL DEFAULT 0,
    last_failure_at BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL
);

CREATE TABLE user_roles (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role    TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role)
);

CREATE TABLE clients (
    id             TEXT PRIMARY KEY,
    auth_method    TEXT NOT NULL,          -- none | secret | jwks
    secret_digest  BYTEA,
    jwks           TEXT,
    grants         TEXT NOT NULL,          -- space-separated grant types
    scopes         TEXT NOT NULL,
    redirect_uris  TEXT NOT NULL,          -- space-separated
    audiences      TEXT NOT NULL,          -- space-separated; the first is the default aud
    first_party    BOOLEAN NOT NULL,
    token_delivery TEXT NOT NULL,
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT NOT NULL
);

CREATE TABLE used_assertions (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL,
    state          TEXT NOT NULL,          -- pending | active | retired | revoked
    created_at     BIGINT NOT NULL,
    activate_at    BIGINT,
    activated_at   BIGINT,
    retired_at     BIGINT,
    revoked_at     BIGINT,
    public_jwk     TEXT NOT NULL,
    sealed_private BYTEA NOT NULL
);

CREATE TABLE refresh_families (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    scope          TEXT NOT NULL,
    audience       TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    revoked_reason TEXT
);
CREATE INDEX refresh_families_by_user ON refresh_families (user_id);

CREATE TABLE refresh_tokens (
    digest    BYTEA PRIMARY KEY,
    family_id TEXT NOT NULL REFERENCES refresh_families(id) ON DELETE CASCADE,
    issued_at BIGINT NOT NULL,
    used_at   BIGINT
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);

-- seq orders revocations for the /events feed and for instances that catch up. Inserts take a transaction-level
-- advisory lock, so that sequence order is commit order and a reader never skips a row committed late.
CREATE TABLE revocations (
    seq           BIGSERIAL PRIMARY KEY,
    kind          TEXT NOT NULL,           -- jti | sid | sub
    value         TEXT NOT NULL,
    issued_before BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    reason        TEXT NOT NULL
);

-- Audit events are appended concurrently by every instance (id), and numbered afterwards into one sequence
-- without gaps (seq): the numbering step takes an advisory lock and gives the committed rows that have no seq
-- yet the next numbers, in id order. Readers number what is pending before they read.
CREATE TABLE audit_events (
    id        BIGSERIAL PRIMARY KEY,
    seq       BIGINT UNIQUE,
    at        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    subject   TEXT,
    client_id TEXT,
    jti       TEXT,
    detail    TEXT NOT NULL
);
CREATE INDEX audit_events_unnumbered ON audit_events (id) WHERE seq IS NULL;

-- Short leases that let one instance at a time do a job (the signing-key schedule).
CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  BIGINT NOT NULL
);
