-- A signing key is retired once, for good, as an agent key is: the guard
-- let a retired key be made active again (the app roles may UPDATE the
-- status column, to retire), and a receipt or token key brought back
-- would sign again under a kid its organization had retired. Every
-- column but status and retired_at was already immutable. The function
-- guards both signing_keys and platform_signing_keys; replaced in place,
-- it keeps its owner, its grants and its triggers.
CREATE OR REPLACE FUNCTION app_signing_keys_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.kid <> OLD.kid OR NEW.purpose <> OLD.purpose OR NEW.algorithm <> OLD.algorithm
       OR NEW.public_key <> OLD.public_key OR NEW.sealed_private <> OLD.sealed_private OR NEW.created_at <> OLD.created_at
       OR OLD.status = 'retired' THEN
        RAISE EXCEPTION 'append-only: a signing key is only ever retired, once' USING ERRCODE = 'AS001';
    END IF;
    RETURN NEW;
END
$$;
