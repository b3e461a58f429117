-- A session may only be opened under the credential that was checked
-- (DESIGN.md, "One place that starts, rotates and revokes sessions"): every
-- change of the credential (password change or reset, disable, deletion) bumps
-- credential_version, and a login inserts its session only if the version it
-- read with the password hash is still the current one.
ALTER TABLE users ADD COLUMN credential_version INTEGER NOT NULL DEFAULT 0;
-- A disabled account cannot log in; its sessions are revoked when it is disabled.
ALTER TABLE users ADD COLUMN disabled_at TEXT;
-- The per-user session cap revokes the least recently used sessions first.
CREATE INDEX sessions_user_last_used_idx ON sessions (user_id, last_used_at);
