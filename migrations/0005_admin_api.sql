-- The operator HTTP API (`/v1/` on keysync's admin port).
--
-- Admin tokens: `keysync admin-tokens create` prints a token once; like API keys, only
-- its SHA-256 and a short display prefix are stored. A revoked token stays as a row
-- (revoked_at set) so that the changes it made keep naming it.
CREATE TABLE admin_tokens (
    id           uuid        PRIMARY KEY,
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    token_hash   bytea       NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    token_prefix text        NOT NULL,
    -- A read-only token may read everything and change nothing.
    read_only    boolean     NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

-- Which admin token made the last operator change to a row: set by the statement that
-- makes the change, NULL for the CLI (which acts with the database's own credentials)
-- and for rows older than this migration. An audit table added later can copy
-- NEW.changed_by_token from a trigger on these tables. Plain columns, not set by a
-- trigger: api_keys rows are also rewritten by the revision machinery (an org's new
-- limit restamps its keys), which is not an operator's change to the key.
ALTER TABLE organizations ADD COLUMN changed_by_token uuid REFERENCES admin_tokens (id);
ALTER TABLE api_keys ADD COLUMN changed_by_token uuid REFERENCES admin_tokens (id);
ALTER TABLE rate_limit_configs ADD COLUMN changed_by_token uuid REFERENCES admin_tokens (id);

-- Creates sent with an `Idempotency-Key` header: the first answer, replayed to retries.
-- The answer may hold a new API key, so it is stored sealed under a key derived from the
-- Idempotency-Key, which is not stored (only its SHA-256 is, to find the row): the
-- database alone cannot open it. Rows older than KEYSYNC_IDEMPOTENCY_TTL are deleted.
CREATE TABLE api_idempotency (
    token_id     uuid        NOT NULL REFERENCES admin_tokens (id),
    key_hash     bytea       NOT NULL CHECK (octet_length(key_hash) = 32),
    -- SHA-256 of what was asked (route, path and body): a retry must ask the same.
    request_hash bytea       NOT NULL CHECK (octet_length(request_hash) = 32),
    status       smallint    NOT NULL,
    -- salt (16 bytes) || ChaCha20-Poly1305 ciphertext of the response body.
    response     bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_id, key_hash)
);
CREATE INDEX api_idempotency_by_created ON api_idempotency (created_at);

-- Listing pages walk (created_at, id), oldest first, from a cursor.
CREATE INDEX organizations_by_created ON organizations (created_at, id);
CREATE INDEX api_keys_by_org_created ON api_keys (org_id, created_at, id);
