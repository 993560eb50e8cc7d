-- The fleet: every gateway that reports to keysync (an Envoy with the wasm or the native
-- filter, or a keysync replica answering ext_authz checks) and the store revision it
-- serves. A gateway talks to one keysync replica; the row is how every other replica
-- (and the CLI) sees it, so `keys revoke --wait` on any of them can tell when a
-- revocation has reached every live gateway.
--
-- Written by the replica a gateway reports to when the revision it serves moves, and
-- otherwise at most every few seconds (a heartbeat that keeps `last_seen` fresh):
-- never per request or per usage flush. A gateway is live while `last_seen` is within
-- KEYSYNC_GATEWAY_LIVE_WINDOW; rows unseen for a day are deleted by `serve`.
CREATE TABLE keysync_gateways (
    -- The Envoy process's usage instance id, or the keysync replica's own id.
    instance_id uuid PRIMARY KEY,
    host        text NOT NULL,
    mode        text NOT NULL CHECK (mode IN ('wasm', 'native', 'ext_authz')),
    version     text NOT NULL,
    -- Every change up to this revision is reflected in every admission the gateway
    -- makes; 0 when it serves none of the current revision history (the epoch differs).
    revision    bigint NOT NULL CHECK (revision >= 0),
    last_seen   timestamptz NOT NULL
);

CREATE INDEX keysync_gateways_by_last_seen ON keysync_gateways (last_seen);
