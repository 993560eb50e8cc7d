-- Push instead of poll: every transaction that gets a new revision also sends a
-- notification on channel `keysync_changes` carrying that revision. PostgreSQL delivers
-- notifications at commit (and drops them on rollback), so listeners hear only
-- committed revisions, in commit order. keysync LISTENs and catches up at once; its
-- periodic poll stays as a fallback for notifications lost with a connection. (NOTIFY
-- serialises the commits of notifying transactions; these are already serialised by the
-- revision row lock, so nothing new waits.)
--
-- Key rotation: a key issued to replace another one remembers which.

CREATE OR REPLACE FUNCTION keysync_transaction_revision() RETURNS bigint
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
    -- Once per transaction: later rows of the same transaction return above.
    PERFORM pg_notify('keysync_changes', assigned::text);
    RETURN assigned;
END
$$;

-- The key this one replaced (`keysync keys rotate`); NULL for keys created directly.
-- Deleting the old key outright leaves the new one standing.
ALTER TABLE api_keys
    ADD COLUMN rotated_from uuid REFERENCES api_keys (id) ON DELETE SET NULL;
-- The foreign key's ON DELETE looks rows up by rotated_from; few keys have one.
CREATE INDEX api_keys_by_rotated_from ON api_keys (rotated_from)
    WHERE rotated_from IS NOT NULL;
