-- The whole fleet's usage at a glance (GET /v1/usage, the web console's overview) at
-- the scale of 1,000 organizations and 13 months of hourly usage, answered in well under
-- a second: the usage of hours no flush can add to any more, rolled up once by keysync
-- serve (keysync/src/usage/fleet_rollup.rs), and the last hours read from usage_hourly
-- itself.
--
-- A flush adds to the hour of its gateway's cut time, at most an hour from keysync's
-- clock (MAX_CLOCK_SKEW): an hour is final once that, and a margin, have passed.

-- Every organization's requests by hour and outcome (the overview's series).
CREATE TABLE usage_fleet_hourly (
    hour     timestamptz NOT NULL CHECK (hour = date_trunc('hour', hour, 'UTC')),
    outcome  smallint    NOT NULL CHECK (outcome BETWEEN 1 AND 8),
    requests bigint      NOT NULL CHECK (requests >= 0),
    PRIMARY KEY (hour, outcome)
);

-- Each organization's requests and refusals (rate limited, over quota, denied by a key's
-- policy) by UTC day (the overview's rankings).
CREATE TABLE usage_org_daily (
    day      timestamptz NOT NULL CHECK (day = date_trunc('day', day, 'UTC')),
    org_id   uuid        NOT NULL,
    requests bigint      NOT NULL CHECK (requests >= 0),
    refused  bigint      NOT NULL CHECK (refused >= 0),
    PRIMARY KEY (day, org_id)
);

-- One row: the hours before `rolled_until` are in the two tables above (NULL: none yet;
-- keysync starts from the oldest partition and catches up a month at a time). Rolling
-- locks this row, so two keysync processes never add an hour twice.
CREATE TABLE usage_fleet_rollup (
    singleton    boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    rolled_until timestamptz
);
INSERT INTO usage_fleet_rollup (singleton, rolled_until) VALUES (true, NULL);

-- The rows of a range of hours without reading whole monthly partitions: rows are
-- written in the order of their hour (a flush adds to the current hour), so a BRIN index
-- (a few pages a partition, next to nothing for a flush to keep up) skips the rest.
-- Partitions keysync attaches later get it from the parent.
CREATE INDEX usage_hourly_by_hour ON usage_hourly USING brin (hour);
