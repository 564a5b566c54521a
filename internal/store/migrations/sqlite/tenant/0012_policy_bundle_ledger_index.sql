-- A policy bundle names the index of its policy.upload entry, written with
-- the row in the batch that appends the entry: an activation proves that
-- entry before two people's approval of the revision is logged. NULL is a
-- bundle stored before this column; a row inserted behind the service's
-- back must not be one, so a new row names its entry. Rows never change
-- (0001's append-only triggers). (Whoever can write the file can drop the
-- triggers: on the embedded store this raises the bar, no more.)
ALTER TABLE policy_bundles ADD COLUMN ledger_index INTEGER CHECK (ledger_index >= 0);
CREATE TRIGGER policy_bundles_name_their_entry BEFORE INSERT ON policy_bundles WHEN NEW.ledger_index IS NULL
BEGIN SELECT RAISE(ABORT, 'policy_bundles: a bundle names its ledger entry'); END;
