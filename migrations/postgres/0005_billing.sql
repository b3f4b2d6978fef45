-- Subscriptions through payment-provider adapters, and the webhooks they
-- received. Keep in step with migrations/sqlite/0005_billing.sql.

-- A user's subscription as the provider last told it (newest
-- provider_updated_at wins; older deliveries never move it back).
CREATE TABLE subscriptions (
    id                       TEXT PRIMARY KEY,
    user_id                  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider                 TEXT NOT NULL,
    provider_subscription_id TEXT NOT NULL,
    customer_id              TEXT,
    plan                     TEXT NOT NULL,
    billing_cycle            TEXT NOT NULL,
    status                   TEXT NOT NULL,
    current_period_start     TIMESTAMPTZ,
    current_period_end       TIMESTAMPTZ,
    cancel_at_period_end     BOOLEAN NOT NULL DEFAULT FALSE,
    -- A downgrade waiting for the period's end.
    pending_plan             TEXT,
    card_brand               TEXT,
    card_last_four           TEXT,
    provider_updated_at      TIMESTAMPTZ NOT NULL,
    created_at               TIMESTAMPTZ NOT NULL,
    updated_at               TIMESTAMPTZ NOT NULL,
    CONSTRAINT subscriptions_provider_key UNIQUE (provider, provider_subscription_id)
);
CREATE INDEX subscriptions_user ON subscriptions (user_id, updated_at);

-- Every verified webhook, stored before it is applied: a replay is a
-- no-op, a failed apply is retried from here.
CREATE TABLE billing_events (
    id            TEXT PRIMARY KEY,
    provider      TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    event_name    TEXT NOT NULL,
    body          BYTEA NOT NULL,
    -- The adapter's billing-event as JSON: applying needs no adapter.
    normalised    TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'received',
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    received_at   TIMESTAMPTZ NOT NULL,
    applied_at    TIMESTAMPTZ,
    CONSTRAINT billing_events_provider_key UNIQUE (provider, event_id),
    CONSTRAINT billing_events_status_check CHECK (status IN ('received', 'applied', 'failed'))
);
CREATE INDEX billing_events_status ON billing_events (status, received_at);
