-- Usage metering: what the gateways counted, rolled up by hour.
--
-- Each Envoy process (an "instance", a random 16-byte id it picks at start) counts the
-- requests of recognized keys by (org, key, outcome) and flushes its cumulative
-- counters to keysync every few seconds (gRPC `ReportUsage`). keysync keeps the last
-- cumulative values it took from each instance (`usage_instances`) and adds only the
-- difference to the hourly rollup (`usage_hourly`), in one transaction a flush: a
-- retried or repeated flush adds nothing.
--
-- No foreign keys: a flush must never fail because a key or an organization was
-- deleted meanwhile, and usage is a record of what was served, not live data.

-- One row per (org, hour, key, outcome): the increments of every instance added up.
-- Partitioned by month (`usage_hourly_pYYYYMM`, [first of the month, first of the next)
-- in UTC); keysync creates the coming months' partitions ahead (on start and daily) and
-- drops the ones older than KEYSYNC_USAGE_RETENTION. The default partition only
-- catches rows for a month without its partition (which keysync never lets happen
-- while it runs); keysync moves such rows into the month's partition when it creates
-- it, since PostgreSQL refuses to create a partition whose rows sit in the default.
CREATE TABLE usage_hourly (
    -- The start of the hour (UTC) the increments were flushed in.
    hour           timestamptz NOT NULL CHECK (hour = date_trunc('hour', hour, 'UTC')),
    org_id         uuid        NOT NULL,
    key_id         uuid        NOT NULL,
    -- 1 = 1xx or other, 2..5 = answered 2xx..5xx by the upstream, 6 = refused by a rate
    -- limit, 7 = refused by a quota, 8 = refused by the key's policy.
    outcome        smallint    NOT NULL CHECK (outcome BETWEEN 1 AND 8),
    requests       bigint      NOT NULL CHECK (requests >= 0),
    -- Sum of the requests' durations (request start to response headers).
    duration_us    bigint      NOT NULL CHECK (duration_us >= 0),
    -- Requests per duration bucket.
    le_10ms        bigint      NOT NULL CHECK (le_10ms >= 0),
    le_100ms       bigint      NOT NULL CHECK (le_100ms >= 0),
    le_1s          bigint      NOT NULL CHECK (le_1s >= 0),
    over_1s        bigint      NOT NULL CHECK (over_1s >= 0),
    request_bytes  bigint      NOT NULL CHECK (request_bytes >= 0),
    response_bytes bigint      NOT NULL CHECK (response_bytes >= 0),
    PRIMARY KEY (org_id, hour, key_id, outcome)
) PARTITION BY RANGE (hour);

CREATE TABLE usage_hourly_default PARTITION OF usage_hourly DEFAULT;

-- This month's and the next three months' partitions, so that the table works before
-- keysync serve first runs its maintenance.
DO $$
DECLARE
    month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
BEGIN
    FOR i IN 0..3 LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF usage_hourly FOR VALUES FROM (%L) TO (%L)',
            'usage_hourly_p' || to_char(month, 'YYYYMM'),
            (month::timestamp AT TIME ZONE 'UTC'),
            ((month + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
        month := (month + interval '1 month')::date;
    END LOOP;
END
$$;

-- The last cumulative values keysync took from each instance, per counter. A flush
-- adds `new - stored` (never less than zero) and stores the larger of the two.
CREATE TABLE usage_instances (
    instance_id    uuid        NOT NULL,
    org_id         uuid        NOT NULL,
    key_id         uuid        NOT NULL,
    outcome        smallint    NOT NULL,
    requests       bigint      NOT NULL,
    duration_us    bigint      NOT NULL,
    le_10ms        bigint      NOT NULL,
    le_100ms       bigint      NOT NULL,
    le_1s          bigint      NOT NULL,
    over_1s        bigint      NOT NULL,
    request_bytes  bigint      NOT NULL,
    response_bytes bigint      NOT NULL,
    PRIMARY KEY (instance_id, org_id, key_id, outcome)
);

-- One row per instance: its per-instance cumulative totals (requests without a
-- recognized key, requests it could not count), when it was first and last seen, and
-- the latest cut time of its stored flushes (the start of the next flush's window in
-- the usage export's events; NULL before its first flush). A flush locks its
-- instance's row first, so two flushes of one instance (a retry racing the original)
-- take turns. Instances not seen for 7 days are pruned with their counters.
CREATE TABLE usage_instance_totals (
    instance_id           uuid        PRIMARY KEY,
    unattributed_requests bigint      NOT NULL DEFAULT 0,
    dropped_requests      bigint      NOT NULL DEFAULT 0,
    first_seen            timestamptz NOT NULL DEFAULT now(),
    last_seen             timestamptz NOT NULL DEFAULT now(),
    last_cut_at           timestamptz
);

CREATE INDEX usage_instance_totals_by_last_seen ON usage_instance_totals (last_seen);

-- Requests no organization is billed for, added up over every instance by hour:
-- missing, malformed or unknown keys, and requests an instance could not count (its
-- counter slots were full). Small (one row an hour); pruned with the same retention.
CREATE TABLE usage_gateway_hourly (
    hour                  timestamptz PRIMARY KEY,
    unattributed_requests bigint      NOT NULL DEFAULT 0,
    dropped_requests      bigint      NOT NULL DEFAULT 0
);

-- Days and months in UTC.
CREATE VIEW usage_daily AS
SELECT date_trunc('day', hour, 'UTC') AS day, org_id, key_id, outcome,
       sum(requests)::bigint AS requests, sum(duration_us)::bigint AS duration_us,
       sum(le_10ms)::bigint AS le_10ms, sum(le_100ms)::bigint AS le_100ms,
       sum(le_1s)::bigint AS le_1s, sum(over_1s)::bigint AS over_1s,
       sum(request_bytes)::bigint AS request_bytes,
       sum(response_bytes)::bigint AS response_bytes
FROM usage_hourly
GROUP BY 1, org_id, key_id, outcome;

CREATE VIEW usage_monthly AS
SELECT date_trunc('month', hour, 'UTC') AS month, org_id, key_id, outcome,
       sum(requests)::bigint AS requests, sum(duration_us)::bigint AS duration_us,
       sum(le_10ms)::bigint AS le_10ms, sum(le_100ms)::bigint AS le_100ms,
       sum(le_1s)::bigint AS le_1s, sum(over_1s)::bigint AS over_1s,
       sum(request_bytes)::bigint AS request_bytes,
       sum(response_bytes)::bigint AS response_bytes
FROM usage_hourly
GROUP BY 1, org_id, key_id, outcome;
