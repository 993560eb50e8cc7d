-- What operators keep about keys and organizations beyond authentication (issue 25,
-- sections 2 to 4): when each key was last used, an organization's id in the operator's
-- own billing system, a small JSON object of metadata on keys and organizations, and
-- which keys were imported from another system.

-- When each key was last used, to the minute, from the usage flushes the gateways send
-- (keysync/src/usage/store.rs): one statement a flush, for the keys it counted, that
-- writes a row only when its minute moved. A table of its own rather than a column of
-- api_keys: an UPDATE of api_keys restamps the key's revision (trigger
-- api_keys_stamp_revision) and would push every used key to every gateway each minute,
-- and a narrow row keeps the once-a-minute rewrite small. No row: never used.
CREATE TABLE api_key_last_used (
    key_id       uuid        PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    last_used_at timestamptz NOT NULL
                 CHECK (last_used_at = date_trunc('minute', last_used_at, 'UTC'))
);

-- Metadata: a JSON object of at most 1 KiB, kept as the text it was given (the `json`
-- type keeps key order and whitespace, which `jsonb` would not), checked by keysync
-- (operations/metadata.rs) and here. Setting a key's metadata is an UPDATE of its row,
-- so the key is restamped and resent to the gateways once, unchanged: rare, and cheaper
-- than a second table on every listing.
ALTER TABLE api_keys
    ADD COLUMN metadata json
        CHECK (metadata IS NULL
               OR (json_typeof(metadata) = 'object' AND octet_length(metadata::text) <= 1024)),
    -- Imported (`keys import`) rather than issued by keysync: no checksum, and the
    -- display prefix is what the import gave (possibly empty).
    ADD COLUMN imported boolean NOT NULL DEFAULT false;

ALTER TABLE organizations
    -- The customer's id in the operator's own billing system; unique when set. The
    -- usage export's events carry it as `subject`.
    ADD COLUMN external_id text UNIQUE
        CHECK (external_id IS NULL OR length(external_id) BETWEEN 1 AND 200),
    ADD COLUMN metadata json
        CHECK (metadata IS NULL
               OR (json_typeof(metadata) = 'object' AND octet_length(metadata::text) <= 1024));
