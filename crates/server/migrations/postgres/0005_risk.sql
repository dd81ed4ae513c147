-- Risk profiles: one fixed-size binary profile per subject (portcullis-risk `Profile::to_bytes`), shared by
-- every instance; the latest write wins.
CREATE TABLE risk_profiles (
    subject    TEXT PRIMARY KEY,
    profile    BYTEA NOT NULL,
    updated_at BIGINT NOT NULL
);
