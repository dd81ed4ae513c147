-- The tamper-evident audit ledger: the same tables and meaning as migrations/sqlite/0005_ledger.sql.
CREATE TABLE audit_nodes (
    level BIGINT NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE audit_ledger (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL
);
INSERT INTO audit_ledger (id, size) VALUES (1, 0);

CREATE TABLE audit_heads (
    tree_size BIGINT PRIMARY KEY,
    root_hash BYTEA NOT NULL,
    issued_at BIGINT NOT NULL,
    jws       TEXT NOT NULL
);
