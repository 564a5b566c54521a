-- A counterparty names the index of the ledger entry that recorded it
-- (counterparty.created), written with the row in the batch that appends
-- the entry: the decision service trusts a counterparty as verified only
-- once that entry, under a checkpoint the log key signed, says so. NULL
-- is a counterparty stored before this column; a row inserted behind the
-- service's back must not be one, so a new row names its entry, and the
-- index never changes. Nothing logs a change of status yet, so no row
-- becomes verified but as it was created. (Whoever can write the file can
-- drop the triggers: on the embedded store this raises the bar, no more.)
ALTER TABLE counterparties ADD COLUMN ledger_index INTEGER CHECK (ledger_index >= 0);
CREATE TRIGGER counterparties_name_their_entry BEFORE INSERT ON counterparties WHEN NEW.ledger_index IS NULL
BEGIN SELECT RAISE(ABORT, 'counterparties: a counterparty names its ledger entry'); END;
CREATE TRIGGER counterparties_entry_is_final BEFORE UPDATE OF ledger_index ON counterparties
BEGIN SELECT RAISE(ABORT, 'append-only: a counterparty keeps the entry that recorded it'); END;
CREATE TRIGGER counterparties_verified_as_recorded BEFORE UPDATE OF status ON counterparties
WHEN NEW.status = 'verified' AND OLD.status <> 'verified'
BEGIN SELECT RAISE(ABORT, 'append-only: a counterparty is verified only as it was recorded'); END;
