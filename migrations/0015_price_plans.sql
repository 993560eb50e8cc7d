-- Price plans and what organizations pay: the cost calculation engine (see
-- keysync/src/billing/ and docs/costs.md).
--
-- Money is stored as integers in the currency's minor unit (cents for EUR, yen for
-- JPY), never as a floating-point or decimal column: keysync computes invoices in
-- integers and rounds once per invoice line (half up), so what it prints, answers and
-- exports is the same whatever reads the rows.

-- A plan is immutable once created (a new price is a new plan); archiving it stops new
-- organizations from being put on it, while the organizations already on it stay.
CREATE TABLE price_plans (
    id                uuid        PRIMARY KEY,
    name              text        NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    -- ISO 4217, upper case; keysync knows each one's minor unit.
    currency          text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- A month's fee, in minor units.
    base_fee_minor    bigint      NOT NULL CHECK (base_fee_minor >= 0),
    -- Billable units (requests, times their endpoint's weight) a month without a charge.
    included_requests bigint      NOT NULL CHECK (included_requests >= 0),
    -- Graduated tiers beyond the included units, in order:
    -- [{"up_to": 10000000, "price_per_1000_minor": 50}, {"up_to": null, ...}], `up_to`
    -- counted from the period's first unit, increasing, the last one null (unbounded).
    -- Checked by keysync before it is written (billing::plan).
    tiers             jsonb       NOT NULL CHECK (jsonb_typeof(tiers) = 'array'),
    -- What one request of an endpoint (a route's name) counts as: {"search": 5};
    -- endpoints not named count 1.
    weights           jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(weights) = 'object'),
    created_at        timestamptz NOT NULL DEFAULT now(),
    archived_at       timestamptz,
    changed_by_token  uuid        REFERENCES admin_tokens (id)
);

-- Which plan an organization is on, from when: one row per change. A row is in effect
-- from `effective_from` until the next row's; a change takes effect at the start of the
-- next period (a calendar month, UTC) unless made `--now` (from the start of the hour it
-- was made in: the rollup's grain). A change replaces the changes scheduled after it.
CREATE TABLE org_plans (
    org_id           uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    effective_from   timestamptz NOT NULL
                     CHECK (effective_from = date_trunc('hour', effective_from, 'UTC')),
    plan_id          uuid        NOT NULL REFERENCES price_plans (id),
    set_at           timestamptz NOT NULL DEFAULT now(),
    changed_by_token uuid        REFERENCES admin_tokens (id),
    PRIMARY KEY (org_id, effective_from)
);
CREATE INDEX org_plans_by_plan ON org_plans (plan_id);

-- The invoices keysync issued at the close of a period, one per organization and
-- period: the primary key keeps one however often (and by however many replicas) the
-- period is closed, and only the one that stored it publishes its
-- `io.keysync.invoice.v1` event. `document` is the event's data, as published.
CREATE TABLE invoices (
    org_id       uuid        NOT NULL,
    period_start timestamptz NOT NULL,
    event_id     uuid        NOT NULL UNIQUE,
    currency     text        NOT NULL,
    total_minor  bigint      NOT NULL CHECK (total_minor >= 0),
    document     jsonb       NOT NULL,
    issued_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, period_start)
);
