-- At most one active platform signing key per purpose, as tenant files
-- have (tenant migration 0003): the platform has only its log key, whose
-- creation the log's lock serializes, so there is nothing to resolve; two
-- active log keys fail the migration and change nothing.
CREATE UNIQUE INDEX platform_signing_keys_one_active ON platform_signing_keys (purpose) WHERE status = 'active';
