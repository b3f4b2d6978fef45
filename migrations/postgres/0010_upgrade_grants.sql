-- Upgrades within a paid period, each granting its difference in monthly
-- credits only once the provider has been paid its prorated invoice
-- (ledger key `upgrade:<id>`), and at most once: a paid invoice settles
-- one upgrade, and the same invoice never settles a second.
-- Keep in step with migrations/sqlite/0010_upgrade_grants.sql.
CREATE TABLE subscription_upgrades (
    id               TEXT PRIMARY KEY,
    subscription_id  TEXT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    from_plan        TEXT NOT NULL,
    to_plan          TEXT NOT NULL,
    -- The paid period the upgrade falls in (the subscription's then).
    period_start     TIMESTAMPTZ,
    -- What it grants once paid: the target plan's monthly credits less
    -- what the period already had (0 for a return to a plan the period
    -- was granted before).
    credits          BIGINT NOT NULL,
    -- awaiting_payment, then granted; lapsed when a new period starts
    -- before its invoice is paid.
    status           TEXT NOT NULL DEFAULT 'awaiting_payment',
    -- The provider's invoice that paid it.
    invoice_id       TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    settled_at       TIMESTAMPTZ,
    CONSTRAINT subscription_upgrades_status_check
        CHECK (status IN ('awaiting_payment', 'granted', 'lapsed')),
    CONSTRAINT subscription_upgrades_credits_check CHECK (credits >= 0),
    CONSTRAINT subscription_upgrades_invoice_key UNIQUE (subscription_id, invoice_id)
);
CREATE INDEX subscription_upgrades_subscription
    ON subscription_upgrades (subscription_id, created_at);
