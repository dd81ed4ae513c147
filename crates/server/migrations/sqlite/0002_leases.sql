-- Short leases that let one process at a time do a job (the signing-key schedule, also run by the CLI).
CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  INTEGER NOT NULL
);
