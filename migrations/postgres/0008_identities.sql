-- Sign-in through Google and Discord, and the single-use tokens that mail
-- carries (email verification, password reset). Keep in step with
-- migrations/sqlite/0008_identities.sql.

-- An account at an OAuth provider, linked to one user.
CREATE TABLE user_identities (
    id             TEXT PRIMARY KEY,
    provider       TEXT NOT NULL,
    -- The provider's stable id of the account (Google `sub`, Discord `id`).
    subject        TEXT NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email          TEXT,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     TIMESTAMPTZ NOT NULL,
    last_login_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT user_identities_provider_subject_key UNIQUE (provider, subject)
);
CREATE INDEX user_identities_user ON user_identities (user_id);

-- A sign-in in progress: the `state` sent to the provider (its SHA-256)
-- and the PKCE verifier that goes with it. Taken (deleted) by the callback,
-- so it works once.
CREATE TABLE oauth_states (
    state_hash     TEXT PRIMARY KEY,
    provider       TEXT NOT NULL,
    pkce_verifier  TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX oauth_states_expiry ON oauth_states (expires_at);

-- A link sent by mail; only its SHA-256 is stored.
CREATE TABLE email_tokens (
    token_hash     TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose        TEXT NOT NULL,
    -- The address the mail went to: a token proves only that address.
    email          TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    used_at        TIMESTAMPTZ,
    CONSTRAINT email_tokens_purpose_check CHECK (purpose IN ('verify_email', 'reset_password'))
);
CREATE INDEX email_tokens_user ON email_tokens (user_id, purpose, created_at);
