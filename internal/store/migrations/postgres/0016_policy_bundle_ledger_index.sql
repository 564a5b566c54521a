-- A policy bundle names the index of its policy.upload entry, written with
-- the row in the batch that appends the entry: an activation proves that
-- entry (revision, SHA-256, signed or not, uploader) before two people's
-- approval of the revision is logged, so a revision the tenant role
-- inserted behind the service's back is not activated. NULL is a bundle
-- stored before this column; a new row must name its entry. Rows never
-- change (0001's append-only triggers), and the tenant role owns neither
-- the table nor the trigger.
ALTER TABLE policy_bundles ADD COLUMN ledger_index bigint CHECK (ledger_index >= 0);
CREATE FUNCTION app_policy_bundle_names_its_entry() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ledger_index IS NULL THEN
        RAISE EXCEPTION 'policy_bundles: a bundle names its ledger entry'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION app_policy_bundle_names_its_entry() FROM PUBLIC;
CREATE TRIGGER policy_bundles_name_their_entry BEFORE INSERT ON policy_bundles
    FOR EACH ROW EXECUTE FUNCTION app_policy_bundle_names_its_entry();
