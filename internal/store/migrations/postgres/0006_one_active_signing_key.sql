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
-- and its agent asks for another). Stop every replica of an older build
-- before this runs: one still signing with a key it retires would hand out
-- tokens nobody accepts, and an older build's plain INSERT of a first key
-- now fails.
--
-- Two active log keys are not resolved here: which one is the log's
-- identity is an operator's question, so they fail the migration, which
-- changes nothing.
--
-- Row security is forced on signing_keys, for the owner too: it is lifted
-- for this migration's reads and update only, inside its transaction.
ALTER TABLE signing_keys NO FORCE ROW LEVEL SECURITY;
DO $$
DECLARE t uuid;
BEGIN
    SELECT tenant_id INTO t FROM signing_keys WHERE purpose = 'log' AND status = 'active'
        GROUP BY tenant_id HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'organization % has two active log keys: retire the one that is not its log''s', t;
    END IF;
    IF (SELECT count(*) FROM platform_signing_keys WHERE purpose = 'log' AND status = 'active') > 1 THEN
        RAISE EXCEPTION 'the platform has two active log keys: retire the one that is not its log''s';
    END IF;
END
$$;
UPDATE signing_keys SET status = 'retired', retired_at = now()
WHERE status = 'active' AND purpose IN ('receipt', 'token') AND EXISTS (
    SELECT 1 FROM signing_keys AS newer
    WHERE newer.tenant_id = signing_keys.tenant_id AND newer.purpose = signing_keys.purpose
      AND newer.status = 'active' AND (newer.created_at, newer.kid) > (signing_keys.created_at, signing_keys.kid));
ALTER TABLE signing_keys FORCE ROW LEVEL SECURITY;
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (tenant_id, purpose) WHERE status = 'active';
CREATE UNIQUE INDEX platform_signing_keys_one_active ON platform_signing_keys (purpose) WHERE status = 'active';
