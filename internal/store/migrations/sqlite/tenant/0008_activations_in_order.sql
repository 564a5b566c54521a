-- An activation row from now on names its ledger entry and takes the next
-- seq: the service writes no other, and a row inserted behind its back must
-- not either. Without an entry it would be trusted as a row from before the
-- binding (0007); with a seq far ahead it would make every later
-- activation's next seq unusable. (Whoever can write the file can drop the
-- trigger: on the embedded store this raises the bar, no more.)
CREATE TRIGGER policy_activations_in_order BEFORE INSERT ON policy_activations
WHEN NEW.ledger_index IS NULL
    OR NEW.seq <> (SELECT coalesce(max(seq), 0) + 1 FROM policy_activations WHERE tenant_id = NEW.tenant_id)
BEGIN SELECT RAISE(ABORT, 'policy_activations: an activation names its ledger entry and takes the next seq'); END;
