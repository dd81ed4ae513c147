-- The tamper-evident audit ledger: the same tables and meaning as migrations/sqlite/0005_ledger.sql.
CREATE TABLE audit_nodes (
    level BIGINT NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);

-- The leaf hashes of each complete block of 16 events (block b: events 16b+1 .. 16b+16), 32 bytes each, in order:
-- what the ledger recorded for every event, so a check can name the one that changed.
CREATE TABLE audit_leaves (
    block  BIGINT PRIMARY KEY,
    hashes BYTEA NOT NULL
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
