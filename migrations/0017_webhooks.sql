-- Signed webhooks (Standard Webhooks): the endpoints operators register, and the outbox of
-- deliveries to them.
--
-- A delivery row is written in the same transaction as the change it announces (a key
-- created, revoked, rotated, reported leaked; a quota threshold crossed; a key found
-- expired), one per endpoint subscribed to the event, so a change that commits is always
-- announced and one that rolls back never is. `keysync serve` sends them: it claims due
-- rows with FOR UPDATE SKIP LOCKED and moves `next_attempt_at` past the attempt's timeout
-- (a lease), so several replicas never send a row at the same time, and a replica killed
-- mid-attempt leaves the row to be sent again once the lease runs out.
CREATE TABLE webhooks (
    id            uuid        PRIMARY KEY,
    url           text        NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    -- The event types it receives, such as 'key.revoked'.
    events        text[]      NOT NULL CHECK (cardinality(events) > 0),
    -- `whsec_` and the base64 of the signing key: kept in clear, since signing needs it
    -- (shown once at creation, never listed).
    secret        text        NOT NULL,
    -- Sent over plain http, and to private, loopback or link-local addresses: refused
    -- at creation and at each delivery unless allowed here.
    allow_http    boolean     NOT NULL DEFAULT false,
    allow_private boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- The admin token that registered it; NULL: the CLI.
    created_by_token uuid     REFERENCES admin_tokens (id)
);

CREATE TABLE webhook_deliveries (
    id              uuid        PRIMARY KEY,
    webhook_id      uuid        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    -- The `webhook-id` header: one per event (the same for every endpoint and every
    -- retry), so receivers can deduplicate.
    message_id      text        NOT NULL,
    event_type      text        NOT NULL,
    -- The exact body sent on every attempt: {"type", "timestamp", "data"}.
    payload         text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    state           text        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- When it is due (pending), or until when the attempt in progress holds it.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    -- The last attempt's HTTP status, or NULL when it got none (and `last_error` says
    -- why: a timeout, a refused address, a connection error).
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    UNIQUE (webhook_id, message_id)
);

-- The sender's claim: due pending rows, oldest first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';
-- The listing, newest first, of every endpoint or one.
CREATE INDEX webhook_deliveries_by_created ON webhook_deliveries (created_at, id);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, created_at, id);

-- Keys whose expiry has been announced (`key.expired`), once per key: the scan inserts
-- here with ON CONFLICT DO NOTHING, and only the replica whose insert took announces it.
-- A table of its own: marking `api_keys` would stamp a new revision on every expired key.
CREATE TABLE webhook_key_expiries (
    key_id       uuid        PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    expires_at   timestamptz NOT NULL,
    announced_at timestamptz NOT NULL DEFAULT now()
);

-- Keys expired before webhooks existed are not news.
INSERT INTO webhook_key_expiries (key_id, expires_at)
SELECT id, expires_at FROM api_keys WHERE expires_at <= now();

-- The scan looks at keys that expired recently.
CREATE INDEX api_keys_expires_at ON api_keys (expires_at) WHERE expires_at IS NOT NULL;
