-- Users and their sessions (one login on one device each).

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL,           -- normalised: trimmed, lowercased
    password_hash TEXT NOT NULL,           -- argon2id PHC string
    role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email);

-- A session never stores a refresh token: the token is a MAC over
-- (id, generation) under a server key, so this table alone refreshes nothing.
CREATE TABLE sessions (
    id              UUID PRIMARY KEY,
    user_id         UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    generation      BIGINT NOT NULL DEFAULT 0,   -- rotations so far
    device_name     TEXT,
    user_agent      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    rotated_at      TIMESTAMPTZ NOT NULL,        -- when the current token was issued
    last_used_at    TIMESTAMPTZ NOT NULL,
    idle_expires_at TIMESTAMPTZ NOT NULL,        -- the current token's expiry
    expires_at      TIMESTAMPTZ NOT NULL,        -- absolute end of the session
    revoked_at      TIMESTAMPTZ
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_revoked_at_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX sessions_idle_expires_at_idx ON sessions (idle_expires_at);
