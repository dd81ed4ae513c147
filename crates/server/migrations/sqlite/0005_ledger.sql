-- The tamper-evident audit ledger (RFC 9162 Merkle tree over audit_events, in seq order). audit_nodes holds the
-- hash of every perfect, aligned subtree completed so far (level 0: the leaves); audit_ledger how many events
-- the tree covers; audit_heads the signed tree heads, each a JWS.
CREATE TABLE audit_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

-- The leaf hashes of each complete block of 16 events (block b: events 16b+1 .. 16b+16), 32 bytes each, in order:
-- what the ledger recorded for every event, so a check can name the one that changed.
CREATE TABLE audit_leaves (
    block  INTEGER PRIMARY KEY,
    hashes BLOB NOT NULL
);

CREATE TABLE audit_ledger (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL
);
INSERT INTO audit_ledger (id, size) VALUES (1, 0);

CREATE TABLE audit_heads (
    tree_size INTEGER PRIMARY KEY,
    root_hash BLOB NOT NULL,
    issued_at INTEGER NOT NULL,
    jws       TEXT NOT NULL
);
