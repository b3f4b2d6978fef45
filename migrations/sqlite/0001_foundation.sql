-- Foundation: users, refresh-token families, credit ledger.
-- Keep in step with migrations/postgres/0001_foundation.sql.

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL,
    name           TEXT NOT NULL,
    password_hash  TEXT,
    avatar_url     TEXT,
    tier           TEXT NOT NULL DEFAULT 'free',
    role           TEXT NOT NULL DEFAULT 'user',
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_role_check CHECK (role IN ('user', 'admin'))
);

CREATE TABLE refresh_families (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT,
    revoke_reason TEXT
);
CREATE INDEX refresh_families_user ON refresh_families (user_id);

CREATE TABLE refresh_tokens (
    id          TEXT PRIMARY KEY,
    family_id   TEXT NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT,
    CONSTRAINT refresh_tokens_hash_key UNIQUE (token_hash)
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE credit_accounts (
    user_id     TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    balance     BIGINT NOT NULL DEFAULT 0,
    reserved    BIGINT NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL,
    CONSTRAINT credit_accounts_reserved_nonneg CHECK (reserved >= 0),
    CONSTRAINT credit_accounts_balance_covers_reserved CHECK (balance >= reserved)
);

-- A hold reserves credits; it resolves exactly once: captured (charged,
-- possibly less than held) or released.
CREATE TABLE credit_holds (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    amount          BIGINT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    captured        BIGINT NOT NULL DEFAULT 0,
    idempotency_key TEXT NOT NULL,
    description     TEXT NOT NULL,
    resolution_key  TEXT,
    created_at      TEXT NOT NULL,
    resolved_at     TEXT,
    CONSTRAINT credit_holds_key UNIQUE (user_id, idempotency_key),
    CONSTRAINT credit_holds_amount_positive CHECK (amount > 0),
    CONSTRAINT credit_holds_state_check CHECK (state IN ('pending', 'captured', 'released')),
    CONSTRAINT credit_holds_captured_range CHECK (captured >= 0 AND captured <= amount)
);
CREATE INDEX credit_holds_user_pending ON credit_holds (user_id) WHERE state = 'pending';

-- Append-only: every change of a balance is one row here.
CREATE TABLE credit_transactions (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type            TEXT NOT NULL,
    amount          BIGINT NOT NULL,
    description     TEXT NOT NULL,
    balance_after   BIGINT NOT NULL,
    hold_id         TEXT REFERENCES credit_holds (id),
    idempotency_key TEXT,
    created_at      TEXT NOT NULL,
    CONSTRAINT credit_transactions_key UNIQUE (user_id, idempotency_key),
    CONSTRAINT credit_transactions_balance_nonneg CHECK (balance_after >= 0)
);
CREATE INDEX credit_transactions_user_time ON credit_transactions (user_id, created_at DESC, id DESC);

CREATE TRIGGER credit_transactions_append_only
BEFORE UPDATE ON credit_transactions
BEGIN
    SELECT RAISE(ABORT, 'credit_transactions is append-only');
END;
