-- A counterparty names the index of the ledger entry that recorded it
-- (counterparty.created), written with the row in the batch that appends
-- the entry: the decision service trusts a counterparty as verified only
-- once that entry, under a checkpoint the log key signed, says so. NULL
-- is a counterparty stored before this column; one the tenant role
-- inserted behind the service's back must not be one, so a new row names
-- its entry. Nothing logs a change of status yet, so no row becomes
-- verified but as it was created: the tenant role may update status (to
-- block a counterparty), never to verified. It may update only status,
-- the sealed bank details and updated_at (0001's grant), and owns neither
-- the table nor the triggers.
ALTER TABLE counterparties ADD COLUMN ledger_index bigint CHECK (ledger_index >= 0);
CREATE FUNCTION app_counterparty_names_its_entry() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.ledger_index IS NULL THEN
        RAISE EXCEPTION 'counterparties: a counterparty names its ledger entry'
            USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.ledger_index IS DISTINCT FROM OLD.ledger_index THEN
        RAISE EXCEPTION 'append-only: a counterparty keeps the entry that recorded it' USING ERRCODE = 'AS001';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.status = 'verified' AND OLD.status <> 'verified' THEN
        RAISE EXCEPTION 'append-only: a counterparty is verified only as it was recorded' USING ERRCODE = 'AS001';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION app_counterparty_names_its_entry() FROM PUBLIC;
CREATE TRIGGER counterparties_name_their_entry BEFORE INSERT ON counterparties
    FOR EACH ROW EXECUTE FUNCTION app_counterparty_names_its_entry();
CREATE TRIGGER counterparties_entry_is_final BEFORE UPDATE OF ledger_index, status ON counterparties
    FOR EACH ROW EXECUTE FUNCTION app_counterparty_names_its_entry();
