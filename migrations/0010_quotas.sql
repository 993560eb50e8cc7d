-- Monthly quotas: how many requests an organization, or one key, may have served in a
-- month, enforced in every Envoy from leases keysync hands out and reconciles with the
-- gateways' usage flushes (see keysync/src/quota/).
--
-- Kept apart from `organizations` and `api_keys` on purpose: a quota change is not a key
-- change (the key rows' revision trigger would push every key of the org to every Envoy
-- for nothing); the gateways learn quotas through their lease calls instead.

-- One row per organization or key with a quota.
CREATE TABLE quotas (
    -- 1: an organization (subject_id = org_id), 2: a key (subject_id = the key's id).
    subject_kind  smallint    NOT NULL CHECK (subject_kind IN (1, 2)),
    subject_id    uuid        NOT NULL,
    org_id        uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    monthly_limit bigint      NOT NULL CHECK (monthly_limit BETWEEN 1 AND 1000000000000000),
    -- The day of the month (UTC midnight) an organization's quota period starts. A key's
    -- quota follows its organization's day (1 when the organization has no quota), so
    -- it is NULL on key rows.
    reset_day     smallint    CHECK (reset_day BETWEEN 1 AND 28),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject_kind, subject_id),
    CHECK ((subject_kind = 1) = (reset_day IS NOT NULL)),
    CHECK (subject_kind <> 1 OR subject_id = org_id)
);
CREATE INDEX quotas_by_org ON quotas (org_id);

-- Bumped by every change of `quotas`: a gateway that already holds this revision's
-- list of quotas is not sent it again.
CREATE SEQUENCE quota_revision;

-- Requests served (forwarded: outcomes other, 2xx..5xx) per subject with a quota and
-- period, kept by the usage flushes (one batched upsert a flush) so that a lease never
-- sums the hourly rollup. `alerted` is the highest threshold (80, 100) already
-- announced for the period.
CREATE TABLE quota_usage (
    subject_kind smallint    NOT NULL,
    subject_id   uuid        NOT NULL,
    period_start timestamptz NOT NULL,
    used         bigint      NOT NULL DEFAULT 0 CHECK (used >= 0),
    alerted      smallint    NOT NULL DEFAULT 0,
    PRIMARY KEY (subject_kind, subject_id, period_start)
);

-- What each gateway (usage instance) was granted for a subject in a period, and how
-- much of its use has been flushed since: `granted - flushed` is what it may still
-- serve, or served and has not reported yet. A lease is granted only while
-- `used + sum(granted - flushed)` over the live instances stays within the quota.
CREATE TABLE quota_leases (
    instance_id  uuid        NOT NULL,
    subject_kind smallint    NOT NULL,
    subject_id   uuid        NOT NULL,
    period_start timestamptz NOT NULL,
    granted      bigint      NOT NULL DEFAULT 0 CHECK (granted >= 0),
    flushed      bigint      NOT NULL DEFAULT 0 CHECK (flushed >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject_kind, subject_id, period_start, instance_id)
);
CREATE INDEX quota_leases_by_instance ON quota_leases (instance_id);

-- The start of the quota period that contains `t` for a reset day (UTC midnights; the
-- same as keysync's `quota::period::Period::containing`).
CREATE FUNCTION keysync_quota_period_start(t timestamptz, reset_day smallint)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT (date_trunc('month', (t AT TIME ZONE 'UTC') - make_interval(days => reset_day - 1))
            + make_interval(days => reset_day - 1)) AT TIME ZONE 'UTC'
$$;
