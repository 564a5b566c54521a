-- At most one active platform signing key per purpose, as tenant files
-- have (tenant migration 0003). The platform has only its log key, so
-- there is nothing to resolve; two active log keys fail the migration,
-- naming themselves, and change nothing.
CREATE TEMP TABLE migration_0002_check (
    two_active_log_keys INTEGER NOT NULL CHECK (two_active_log_keys = 0)
);
INSERT INTO migration_0002_check
SELECT count(*) > 1 FROM platform_signing_keys WHERE purpose = 'log' AND status = 'active';
DROP TABLE migration_0002_check;

CREATE UNIQUE INDEX platform_signing_keys_one_active ON platform_signing_keys (purpose) WHERE status = 'active';
