-- A bundle verification key names the index of its policy.verification_key
-- entry, written with the row in the batch that appends the entry: an
-- upload or activation proves that entry (kid, PEM, algorithm) before it
-- trusts a bundle signed by the key, so a key the tenant role inserted
-- behind the service's back signs nothing in. NULL is a key stored before
-- this column; a new row must name its entry. Rows never change (0001's
-- append-only triggers), and the tenant role owns neither the table nor
-- the trigger.
ALTER TABLE policy_verification_keys ADD COLUMN ledger_index bigint CHECK (ledger_index >= 0);
CREATE FUNCTION app_verification_key_names_its_entry() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ledger_index IS NULL THEN
        RAISE EXCEPTION 'policy_verification_keys: a key names its ledger entry'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION app_verification_key_names_its_entry() FROM PUBLIC;
CREATE TRIGGER policy_verification_keys_name_their_entry BEFORE INSERT ON policy_verification_keys
    FOR EACH ROW EXECUTE FUNCTION app_verification_key_names_its_entry();
