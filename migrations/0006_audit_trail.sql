-- The audit trail: one row per change an operator makes (the CLI or an admin token of
-- the HTTP API), written by the operation in the same transaction as the change, so a
-- change is recorded exactly when it is committed. A change that changes nothing (the
-- limit it already has, revoking a revoked key) and a failed one leave no row.
--
-- No secret is ever stored here: never a key, a key hash, an admin token or its hash;
-- keys and tokens appear by id and display prefix only.
--
-- `action` and `actor` are plain text checked for shape only, so a later vocabulary
-- (`scopes_set`, `leak_report`, ...) needs no migration.
CREATE TABLE audit_events (
    id             uuid        PRIMARY KEY,
    -- The change's transaction time (now()): every row of one transaction shares it.
    at             timestamptz NOT NULL DEFAULT now(),
    -- `<object>.<verb>`: `key.created`, `org.limit_set`, `admin_token.revoked`, ...
    action         text        NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    -- `cli`, `admin_token` (with actor_token_id), later others.
    actor          text        NOT NULL CHECK (actor ~ '^[a-z_]+$'),
    actor_token_id uuid        REFERENCES admin_tokens (id),
    object_type    text        NOT NULL CHECK (object_type ~ '^[a-z_]+$'),
    object_id      uuid        NOT NULL,
    -- The organization the object belongs to; NULL for admin tokens. No foreign key:
    -- the trail is a record of what happened, not part of the live data.
    org_id         uuid,
    -- The object's audited fields before and after; NULL: it did not exist, or had
    -- none (no limit).
    old_value      jsonb,
    new_value      jsonb,
    CONSTRAINT audit_events_token_actor
        CHECK ((actor = 'admin_token') = (actor_token_id IS NOT NULL))
);

-- `keysync audit` and `GET /v1/audit` list newest first, all or one organization's.
CREATE INDEX audit_events_by_time ON audit_events (at, id);
CREATE INDEX audit_events_by_org_time ON audit_events (org_id, at, id);
