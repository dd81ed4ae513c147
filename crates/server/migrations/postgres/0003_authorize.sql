-- The authorization code flow (RFC 6749 §4.1, RFC 7636, OpenID Connect): single-use codes kept as SHA-256
-- digests, browser sessions at the server (the session cookie holds only a random id; its digest is the key),
-- and the scopes each user has consented to give each third-party client.
CREATE TABLE authorization_codes (
    digest             BYTEA PRIMARY KEY,
    client_id          TEXT NOT NULL,
    user_id            TEXT NOT NULL,
    redirect_uri       TEXT NOT NULL,
    redirect_uri_given BOOLEAN NOT NULL,
    scope              TEXT NOT NULL,
    audience           TEXT NOT NULL,
    code_challenge     TEXT NOT NULL,
    nonce              TEXT,
    auth_time          BIGINT NOT NULL,
    session_id         TEXT NOT NULL,      -- the sid of the tokens the code yields; reuse revokes it
    dpop_jkt           TEXT,
    created_at         BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    used_at            BIGINT
);

CREATE TABLE browser_sessions (
    digest     BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL,
    auth_time  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX browser_sessions_by_user ON browser_sessions (user_id);

CREATE TABLE consents (
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
