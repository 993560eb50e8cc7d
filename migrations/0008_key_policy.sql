-- Key policy: the scopes a key grants (a route may require some) and the networks it
-- may be used from. An empty array means no scopes / from anywhere, so every existing
-- key keeps working exactly as before (the defaults are constants: no table rewrite).
--
-- The bounds and the scope charset are the contract's (`contract/src/key_policy.rs`:
-- at most 32 scopes of 1 to 64 characters of [a-z0-9:._-], at most 16 networks); they
-- are checked here too, so a row written by hand (psql) cannot hold a policy keysync
-- would have refused. keysync stores scopes sorted without repeats and networks with
-- their host bits cleared (the cidr type insists). What the checks cannot see (an
-- allowlist that admits no address, unsorted values) keysync reads defensively: a key
-- whose stored policy fails the contract's checks is served locked out, never crashes
-- a load (see keysync/src/key_policy.rs).
--
-- Setting either column is an UPDATE of the key row, so the api_keys_stamp_revision
-- trigger restamps the key and keysync pushes the new policy like a new limit.

CREATE FUNCTION keysync_scopes_valid(scopes text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_ndims(scopes), 1) = 1
       AND cardinality(scopes) <= 32
       AND coalesce(bool_and(scope IS NOT NULL AND scope ~ '^[a-z0-9:._-]{1,64}$'), true)
    FROM unnest(scopes) AS scope
$$;

ALTER TABLE api_keys
    ADD COLUMN scopes           text[] NOT NULL DEFAULT '{}',
    ADD COLUMN allowed_networks cidr[] NOT NULL DEFAULT '{}',
    ADD CONSTRAINT api_keys_scopes_valid CHECK (keysync_scopes_valid(scopes)),
    ADD CONSTRAINT api_keys_allowed_networks_valid CHECK (
        coalesce(array_ndims(allowed_networks), 1) = 1
        AND cardinality(allowed_networks) <= 16
        AND array_position(allowed_networks, NULL) IS NULL);
