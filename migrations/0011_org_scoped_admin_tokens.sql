-- Admin tokens limited to one organization (`keysync admin-tokens create --org-id ORG`),
-- for a customer's dashboard: such a token sees and changes only that organization, its
-- keys, limits, quotas, usage and audit trail; anything else answers as if it did not
-- exist. NULL: every organization, as for the tokens made before this migration.
ALTER TABLE admin_tokens ADD COLUMN org_id uuid REFERENCES organizations (id);
