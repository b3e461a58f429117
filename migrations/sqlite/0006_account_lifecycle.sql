-- The account lifecycle (API.md v2): verified emails, deleted accounts, and
-- the grants that mailed tokens and codes stand for.

-- When the current email was verified; NULL while it is not. An email change
-- sets it (the new address was proven by the confirmation).
ALTER TABLE users ADD COLUMN email_verified_at TEXT;
-- A deleted account stays as a tombstone (id, role, times) with its email,
-- hash and personal data erased: the revoked sessions that keep its access
-- tokens refused after a restart point at it, and audit lines name its id.
ALTER TABLE users ADD COLUMN deleted_at TEXT;

-- A mailed token and code, stored only as MACs under keys derived from
-- JWT_SECRET (a copy of this table verifies, resets and changes nothing).
-- Spent (ended_at set) by one conditional UPDATE, so each is single-use; a
-- newer grant of the same user and purpose ends the older ones; the 5th wrong
-- code ends it too. Rows stay after they end until housekeeping removes them,
-- so the per-address mail count covers the last hour whatever became of them.
-- A row with no user_id is the decoy of a reset asked for an address with no
-- account: written by the same statements as a real grant (so the answer
-- takes as long), never mailed, never matched by a spend.
CREATE TABLE mail_grants (
    id          BLOB PRIMARY KEY NOT NULL,
    user_id     BLOB REFERENCES users (id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL CHECK (purpose IN ('verify', 'reset', 'email-change')),
    email       TEXT NOT NULL,      -- the address the mail went to
    new_email   TEXT,               -- email-change: the address to switch to
    token_mac   BLOB NOT NULL,
    code_mac    BLOB NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,   -- wrong codes so far
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    ended_at    TEXT                -- spent, superseded, killed or cancelled
);
CREATE UNIQUE INDEX mail_grants_token_mac_key ON mail_grants (token_mac);
CREATE INDEX mail_grants_user_purpose_idx ON mail_grants (user_id, purpose, created_at);
CREATE INDEX mail_grants_email_created_idx ON mail_grants (email, created_at);
