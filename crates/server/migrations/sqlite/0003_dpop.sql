-- DPoP (RFC 9449): clients that must prove a key on every token request, and the key a public client's
-- refresh family is bound to (its RFC 7638 thumbprint).
ALTER TABLE clients ADD COLUMN dpop_bound INTEGER NOT NULL DEFAULT 0;
ALTER TABLE refresh_families ADD COLUMN dpop_jkt TEXT;
