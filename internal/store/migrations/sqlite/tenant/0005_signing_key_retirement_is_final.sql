-- A signing key is retired once, for good, as an agent key is: a retired
-- receipt or token key made active again would sign again under a kid its
-- organization had retired. Every column but status and retired_at was
-- already immutable.
CREATE TRIGGER signing_keys_retirement_is_final BEFORE UPDATE ON signing_keys WHEN OLD.status = 'retired'
BEGIN SELECT RAISE(ABORT, 'append-only: a retired signing key stays retired'); END;
