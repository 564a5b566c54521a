-- At most one active signing key per purpose. An organization signs its
-- receipts and access tokens with its active key, and a log has one key;
-- but nothing made the active key unique, so two transactions creating an
-- organization's first receipt or token key at once could each insert one
-- (on PostgreSQL, where two replicas do not serialize; here BEGIN
-- IMMEDIATE does, but one schema serves both). Now a second active key of
-- a purpose is refused (InsertSigningKey: ErrConflict) and its creator
-- takes the one that is there.
--
-- Receipt and token keys already doubled keep the newest active one, the
-- one the service opens; the others are retired: they stay published, so
-- what they signed still verifies (an access token they signed is refused,
-- and its agent asks for another). Stop every process of an older build
-- before this runs: one still signing with a key it retires would hand out
-- tokens nobody accepts.
--
-- Two active log keys are not resolved here: which one is the log's
-- identity is an operator's question. The CHECK below fails the migration,
-- and changes nothing, if the file holds them.
CREATE TEMP TABLE migration_0003_check (
    two_active_log_keys INTEGER NOT NULL CHECK (two_active_log_keys = 0)
);
INSERT INTO migration_0003_check
SELECT count(*) > 1 FROM signing_keys WHERE purpose = 'log' AND status = 'active';
DROP TABLE migration_0003_check;

UPDATE signing_keys SET status = 'retired', retired_at = strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000000Z'
WHERE status = 'active' AND purpose IN ('receipt', 'token') AND EXISTS (
    SELECT 1 FROM signing_keys AS newer
    WHERE newer.tenant_id = signing_keys.tenant_id AND newer.purpose = signing_keys.purpose
      AND newer.status = 'active' AND (newer.created_at, newer.kid) > (signing_keys.created_at, signing_keys.kid));
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (tenant_id, purpose) WHERE status = 'active';
