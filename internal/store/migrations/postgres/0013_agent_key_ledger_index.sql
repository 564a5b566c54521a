-- An agent key names the index of the ledger entry that registered it
-- (agent.registered or agent.key_rotated), written with the row in the
-- batch that appends the entry: the token endpoint accepts an assertion
-- under the key only once that entry, under a checkpoint the log key
-- signed, records the same agent, kid and public key. NULL is a key
-- stored before this column; a key row the tenant role inserted behind
-- the service's back must not be one, so a new row names its entry. The
-- tenant role may update only status and retired_at (0001's grant), and
-- owns neither the table nor the trigger.
ALTER TABLE agent_keys ADD COLUMN ledger_index bigint CHECK (ledger_index >= 0);
CREATE FUNCTION app_agent_key_names_its_entry() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.ledger_index IS NULL THEN
        RAISE EXCEPTION 'agent_keys: a key names its ledger entry'
            USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.ledger_index IS DISTINCT FROM OLD.ledger_index THEN
        RAISE EXCEPTION 'append-only: an agent key is only ever retired, once' USING ERRCODE = 'AS001';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION app_agent_key_names_its_entry() FROM PUBLIC;
CREATE TRIGGER agent_keys_name_their_entry BEFORE INSERT ON agent_keys
    FOR EACH ROW EXECUTE FUNCTION app_agent_key_names_its_entry();
CREATE TRIGGER agent_keys_entry_is_final BEFORE UPDATE OF ledger_index ON agent_keys
    FOR EACH ROW EXECUTE FUNCTION app_agent_key_names_its_entry();
