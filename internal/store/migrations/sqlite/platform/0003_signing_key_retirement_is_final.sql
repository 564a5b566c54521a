-- A platform signing key is retired once, for good, as tenant files'
-- signing keys are (tenant migration 0005).
CREATE TRIGGER platform_signing_keys_retirement_is_final BEFORE UPDATE ON platform_signing_keys WHEN OLD.status = 'retired'
BEGIN SELECT RAISE(ABORT, 'append-only: a retired signing key stays retired'); END;
