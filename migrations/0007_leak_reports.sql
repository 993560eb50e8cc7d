-- Leak reports (a secret scanner found a key in public): when the key was first reported.
-- Set once, by the first report, whatever KEYSYNC_LEAK_ACTION says (revoke or flag); a
-- replayed or repeated report finds it set and changes nothing. Shown by `keys list`.
ALTER TABLE api_keys ADD COLUMN leaked_at timestamptz;
