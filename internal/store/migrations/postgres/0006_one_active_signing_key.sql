-- At most one active signing key per purpose. An organization signs its
-- receipts and access tokens with its active key, and a log has one key;
-- but nothing made the active key unique, and under READ COMMITTED two
-- transactions creating an organization's first receipt or token key at
-- once (two replicas, or two requests) each inserted one. Now a second
-- active key of a purpose waits for the first's transaction and is then
-- refused (InsertSigningKey: ON CONFLICT DO NOTHING, ErrConflict), and its
-- creator reads the one that is there.
--
-- Receipt and token keys already doubled keep the newest active one, the
-- one the service opens; the others are retired: they stay published, so
-- what they signed still verifies (an access token they signed is refused,
-- and its agent asks for another). Two active log keys are not resolved
-- here: which one is the log's identity is an operator's question, so the
-- index fails the migration and changes nothing.
--
-- Row security is forced on signing_keys, for the owner too: it is lifted
-- for the update only, inside this migration's transaction.
ALTER TABLE signing_keys NO FORCE ROW LEVEL SECURITY;
UPDATE signing_keys SET status = 'retired', retired_at = now()
WHERE status = 'active' AND purpose IN ('receipt', 'token') AND EXISTS (
    SELECT 1 FROM signing_keys AS newer
    WHERE newer.tenant_id = signing_keys.tenant_id AND newer.purpose = signing_keys.purpose
      AND newer.status = 'active' AND (newer.created_at, newer.kid) > (signing_keys.created_at, signing_keys.kid));
ALTER TABLE signing_keys FORCE ROW LEVEL SECURITY;
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (tenant_id, purpose) WHERE status = 'active';

-- The platform has only its log key, whose creation the log's lock
-- serializes: nothing to resolve.
CREATE UNIQUE INDEX platform_signing_keys_one_active ON platform_signing_keys (purpose) WHERE status = 'active';
