-- The revision history's identity. Revisions restart from an older value when a dump is
-- restored or a lagging replica takes over, and then count past it with other changes:
-- a client that resumes "after revision R" must learn that R now means something else.
-- keysync derives an epoch from this random id together with the database's OID, the
-- counter table's OID and the WAL timeline (see keysync/src/sync/history.rs), sends it
-- beside every revision, and replaces the id when it sees the counter go backwards
-- without anything else changing, so every keysync and every gateway reloads.
ALTER TABLE keysync_revision ADD COLUMN history_id bigint NOT NULL DEFAULT 0;
UPDATE keysync_revision
SET history_id = ('x' || md5(random()::text || clock_timestamp()::text))::bit(64)::bigint;
