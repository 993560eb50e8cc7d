-- What one gateway instance may still add to the usage counts: the requests a gateway
-- can plausibly serve (KEYSYNC_GATEWAY_MAX_RATE a second), saved up since its last
-- flush for at most a window's worth (keysync/src/usage/allowance.rs). A flush whose
-- increments go beyond it is refused for the rest, so a token holder cannot add a
-- billion requests to a tenant's usage in one call.

ALTER TABLE usage_instance_totals
    -- Requests the instance may still add as of `allowance_at`; NULL (an instance not
    -- seen since this migration, or never): a full window's worth.
    ADD COLUMN allowance    bigint,
    ADD COLUMN allowance_at timestamptz;
