-- Usage by endpoint: the gateways count each key's requests by the route that served
-- them too (its name, chosen by the operator: bounded, not the raw path; `-` for a
-- route without a name, `(other)` for names a gateway could not count as themselves).
-- See keysync_contract::usage_endpoint.
--
-- The rows counted before this migration came from routes nobody counted by name: they
-- are endpoint `-`. The column's default fills them without rewriting a table; the
-- primary keys take the endpoint in, which rebuilds their indexes (on every monthly
-- partition of `usage_hourly`: time and locks grow with the rollup's size). Partitions
-- keysync creates later (`CREATE TABLE ... (LIKE usage_hourly ...)`) get the column and
-- the key from the parent.

ALTER TABLE usage_hourly ADD COLUMN endpoint text NOT NULL DEFAULT '-';
-- Still led by org_id (every report is one organization's) and holding `hour`, the
-- partition key, as a partitioned table's primary key must.
ALTER TABLE usage_hourly DROP CONSTRAINT usage_hourly_pkey;
ALTER TABLE usage_hourly ADD PRIMARY KEY (org_id, hour, key_id, endpoint, outcome);

-- The last cumulative values taken from each instance are per endpoint as well: an
-- instance's counter of one endpoint never stands for another's.
ALTER TABLE usage_instances ADD COLUMN endpoint text NOT NULL DEFAULT '-';
ALTER TABLE usage_instances DROP CONSTRAINT usage_instances_pkey;
ALTER TABLE usage_instances ADD PRIMARY KEY (instance_id, org_id, key_id, endpoint, outcome);

-- Days and months in UTC, by endpoint too (a view's columns cannot be inserted in the
-- middle: dropped and made again).
DROP VIEW usage_daily;
DROP VIEW usage_monthly;

CREATE VIEW usage_daily AS
SELECT date_trunc('day', hour, 'UTC') AS day, org_id, key_id, endpoint, outcome,
       sum(requests)::bigint AS requests, sum(duration_us)::bigint AS duration_us,
       sum(le_10ms)::bigint AS le_10ms, sum(le_100ms)::bigint AS le_100ms,
       sum(le_1s)::bigint AS le_1s, sum(over_1s)::bigint AS over_1s,
       sum(request_bytes)::bigint AS request_bytes,
       sum(response_bytes)::bigint AS response_bytes
FROM usage_hourly
GROUP BY 1, org_id, key_id, endpoint, outcome;

CREATE VIEW usage_monthly AS
SELECT date_trunc('month', hour, 'UTC') AS month, org_id, key_id, endpoint, outcome,
       sum(requests)::bigint AS requests, sum(duration_us)::bigint AS duration_us,
       sum(le_10ms)::bigint AS le_10ms, sum(le_100ms)::bigint AS le_100ms,
       sum(le_1s)::bigint AS le_1s, sum(over_1s)::bigint AS over_1s,
       sum(request_bytes)::bigint AS request_bytes,
       sum(response_bytes)::bigint AS response_bytes
FROM usage_hourly
GROUP BY 1, org_id, key_id, endpoint, outcome;
