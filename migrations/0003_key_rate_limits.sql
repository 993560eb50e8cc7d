-- A key may carry its own rate limit, which replaces its organization's for that key
-- and is counted for that key alone (an organization's limit is one budget shared by
-- all its keys). Budget per fixed one-minute window: rate_limit_rpm + rate_limit_burst
-- (burst NULL means 0). NULL rate_limit_rpm: the organization's limit applies, if any.
--
-- Setting or clearing these columns is an UPDATE of the key row, so the existing
-- api_keys_stamp_revision trigger restamps the key and keysync pushes the new limit.
-- The new columns are NULL in every existing row, so the checks hold at once.

ALTER TABLE api_keys
    ADD COLUMN rate_limit_rpm   integer CHECK (rate_limit_rpm > 0),
    ADD COLUMN rate_limit_burst integer CHECK (rate_limit_burst >= 0),
    ADD CONSTRAINT api_keys_rate_limit_burst_needs_rpm
        CHECK (rate_limit_burst IS NULL OR rate_limit_rpm IS NOT NULL);
