-- A bundle verification key names the index of its policy.verification_key
-- entry, written with the row in the batch that appends the entry: an
-- upload or activation proves that entry before it trusts a bundle signed
-- by the key. NULL is a key stored before this column; a row inserted
-- behind the service's back must not be one, so a new row names its entry.
-- Rows never change (0001's append-only triggers). (Whoever can write the
-- file can drop the triggers: on the embedded store this raises the bar,
-- no more.)
ALTER TABLE policy_verification_keys ADD COLUMN ledger_index INTEGER CHECK (ledger_index >= 0);
CREATE TRIGGER policy_verification_keys_name_their_entry BEFORE INSERT ON policy_verification_keys WHEN NEW.ledger_index IS NULL
BEGIN SELECT RAISE(ABORT, 'policy_verification_keys: a key names its ledger entry'); END;
