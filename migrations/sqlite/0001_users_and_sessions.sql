-- Users and their sessions (one login on one device each).
-- Times are RFC 3339 text as sqlx writes them; they compare correctly as text
-- because every value uses the same UTC offset suffix.

CREATE TABLE users (
    id            BLOB PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL,           -- normalised: trimmed, lowercased
    password_hash TEXT NOT NULL,           -- argon2id PHC string
    role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email);

-- A session never stores a refresh token: the token is a MAC over
-- (id, generation) under a server key, so this table alone refreshes nothing.
CREATE TABLE sessions (
    id              BLOB PRIMARY KEY NOT NULL,
    user_id         BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    generation      INTEGER NOT NULL DEFAULT 0,  -- rotations so far
    device_name     TEXT,
    user_agent      TEXT,
    created_at      TEXT NOT NULL,
    rotated_at      TEXT NOT NULL,               -- when the current token was issued
    last_used_at    TEXT NOT NULL,
    idle_expires_at TEXT NOT NULL,               -- the current token's expiry
    expires_at      TEXT NOT NULL,               -- absolute end of the session
    revoked_at      TEXT
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_revoked_at_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX sessions_idle_expires_at_idx ON sessions (idle_expires_at);
