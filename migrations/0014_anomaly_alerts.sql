-- Anomaly alerts: hours in which an organization's traffic departed from its own
-- baseline (the same hour of the week over the last weeks), found by `keysync serve`'s
-- evaluator in `usage_hourly`: a spike of requests, a drop of a busy hour, a jump in the
-- share of requests refused by the gateway or answered 5xx by the upstream.
--
-- One row per (organization, kind, hour): the primary key is the deduplication. An
-- anomaly that lasts is one alert per hour however often the hour is judged, and two
-- keysync replicas cannot raise the same alert twice (the second insert does nothing,
-- so only the first announces it). No foreign key, like the rollup it is read from.
CREATE TABLE anomaly_alerts (
    org_id            uuid             NOT NULL,
    kind              text             NOT NULL
                      CHECK (kind IN ('spike', 'drop', 'refusals', 'upstream_5xx')),
    -- The start of the UTC hour judged.
    hour              timestamptz      NOT NULL CHECK (hour = date_trunc('hour', hour, 'UTC')),
    -- False for a spike seen while its hour ran (observed: the requests so far).
    hour_complete     boolean          NOT NULL,
    -- Requests (spike, drop) or a share of the hour's requests (refusals, upstream_5xx),
    -- the baseline's median of requests or its share, and what observed had to reach.
    observed          double precision NOT NULL,
    baseline          double precision NOT NULL,
    threshold         double precision NOT NULL,
    -- Every request of the hour, and those the kind counts (all, refused, or 5xx).
    requests          bigint           NOT NULL CHECK (requests >= 0),
    matching_requests bigint           NOT NULL CHECK (matching_requests >= 0),
    baseline_weeks    smallint         NOT NULL CHECK (baseline_weeks BETWEEN 1 AND 52),
    -- The id of the alert's CloudEvent on the usage export, derived from
    -- (org_id, kind, hour).
    event_id          uuid             NOT NULL UNIQUE,
    raised_at         timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, kind, hour)
);

-- Listings run newest first, over every organization or one.
CREATE INDEX anomaly_alerts_by_raised_at ON anomaly_alerts (raised_at, event_id);
CREATE INDEX anomaly_alerts_by_org ON anomaly_alerts (org_id, raised_at, event_id);
