-- Core schema: organizations, their API keys (hashed) and their rate limits, plus the
-- revision counter that lets keysync follow changes incrementally.

CREATE TABLE organizations (
    id         uuid        PRIMARY KEY,
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id         uuid        PRIMARY KEY,
    org_id     uuid        NOT NULL REFERENCES organizations (id),
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- SHA-256 of the full key; the key itself is never stored.
    key_hash   bytea       NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    -- Shown in listings so operators can tell keys apart (`sk_live_AbCd`).
    key_prefix text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    active     boolean     NOT NULL DEFAULT true,
    -- Set by trigger: the revision of the transaction that last wrote this row.
    revision   bigint      NOT NULL DEFAULT 0
);

-- "All active keys", in the order keysync pages them out.
CREATE INDEX api_keys_active_by_hash ON api_keys (key_hash) WHERE active;
-- Incremental catch-up: everything written after a revision.
CREATE INDEX api_keys_by_revision ON api_keys (revision);
CREATE INDEX api_keys_by_org ON api_keys (org_id);

CREATE TABLE rate_limit_configs (
    org_id              uuid        PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    requests_per_minute integer     NOT NULL CHECK (requests_per_minute > 0),
    burst               integer     NOT NULL CHECK (burst >= 0),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Keys deleted outright (rather than revoked) must still reach keysync as removals.
CREATE TABLE api_key_tombstones (
    key_hash bytea  PRIMARY KEY,
    revision bigint NOT NULL
);
CREATE INDEX api_key_tombstones_by_revision ON api_key_tombstones (revision);

-- One row: the revision of the newest committed change that affects authentication.
CREATE TABLE keysync_revision (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    revision  bigint  NOT NULL
);
INSERT INTO keysync_revision (singleton, revision) VALUES (true, 0);

-- The revision of the current transaction: one per transaction, shared by every row it
-- writes. Bumping the single counter row takes its row lock until commit, so revisions
-- become visible in order: a reader that sees revision N has seen every revision below N.
CREATE FUNCTION keysync_transaction_revision() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    current text := current_setting('keysync.transaction_revision', true);
    assigned bigint;
BEGIN
    IF current IS NOT NULL AND current <> '' THEN
        RETURN current::bigint;
    END IF;
    UPDATE keysync_revision SET revision = revision + 1 RETURNING revision INTO assigned;
    PERFORM set_config('keysync.transaction_revision', assigned::text, true);
    RETURN assigned;
END
$$;

CREATE FUNCTION api_keys_stamp_revision() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := keysync_transaction_revision();
    RETURN NEW;
END
$$;

CREATE TRIGGER api_keys_stamp_revision
    BEFORE INSERT OR UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_stamp_revision();

CREATE FUNCTION api_keys_record_tombstone() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO api_key_tombstones (key_hash, revision)
    VALUES (OLD.key_hash, keysync_transaction_revision())
    ON CONFLICT (key_hash) DO UPDATE SET revision = EXCLUDED.revision;
    RETURN OLD;
END
$$;

CREATE TRIGGER api_keys_record_tombstone
    AFTER DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_record_tombstone();

-- A changed org limit changes what every key of the org carries: restamp them.
CREATE FUNCTION rate_limit_configs_restamp_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE api_keys SET revision = 0
    WHERE org_id = COALESCE(NEW.org_id, OLD.org_id) AND active;
    RETURN NULL;
END
$$;

CREATE TRIGGER rate_limit_configs_restamp_keys
    AFTER INSERT OR UPDATE OR DELETE ON rate_limit_configs
    FOR EACH ROW EXECUTE FUNCTION rate_limit_configs_restamp_keys();
