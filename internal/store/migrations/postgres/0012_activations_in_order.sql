-- An activation row from now on names its ledger entry and takes the next
-- seq: the service writes no other, and a row the tenant role inserted
-- behind its back must not either. Without an entry it would be trusted as
-- a row from before the binding (0011); with a seq far ahead it would make
-- every later activation's next seq unusable. The tenant role owns neither
-- the table nor the trigger, so it cannot turn this off.
CREATE FUNCTION app_activation_in_order() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ledger_index IS NULL THEN
        RAISE EXCEPTION 'policy_activations: an activation names its ledger entry'
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.seq <> (SELECT coalesce(max(seq), 0) + 1 FROM policy_activations WHERE tenant_id = NEW.tenant_id) THEN
        RAISE EXCEPTION 'policy_activations: an activation takes the next seq'
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION app_activation_in_order() FROM PUBLIC;
CREATE TRIGGER policy_activations_in_order BEFORE INSERT ON policy_activations
    FOR EACH ROW EXECUTE FUNCTION app_activation_in_order();
