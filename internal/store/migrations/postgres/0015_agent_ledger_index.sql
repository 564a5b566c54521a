-- An agent names the index of the ledger entry that registered it
-- (agent.registered), written with the row in the batch that appends the
-- entry: the decision service takes the risk tier that entry records, proven
-- under a checkpoint the log key signed, as the least the agent's is. NULL is
-- an agent stored before this column; one the tenant role inserted behind
-- the service's back must not be one, so a new row names its entry. Nothing
-- logs a reinstatement or a lowering of tier yet, so a suspended agent is not
-- made active again (a suspension is logged: agent.suspended), and a tier
-- only rises: an agent from before this column, which names no entry, would
-- otherwise be made safer in the store. The tenant role may update only
-- status, risk_tier and updated_at (0001's grant), and owns neither the table
-- nor the triggers.
CREATE FUNCTION app_risk_rank(tier text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE tier WHEN 'low' THEN 0 WHEN 'medium' THEN 1 WHEN 'high' THEN 2 ELSE 3 END
$$;
REVOKE ALL ON FUNCTION app_risk_rank(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_risk_rank(text) TO {{tenant_role}};
ALTER TABLE agents ADD COLUMN ledger_index bigint CHECK (ledger_index >= 0);
CREATE FUNCTION app_agent_names_its_entry() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.ledger_index IS NULL THEN
        RAISE EXCEPTION 'agents: an agent names its ledger entry'
            USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.ledger_index IS DISTINCT FROM OLD.ledger_index THEN
        RAISE EXCEPTION 'append-only: an agent keeps the entry that registered it' USING ERRCODE = 'AS001';
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.status = 'suspended' AND NEW.status = 'active' THEN
        RAISE EXCEPTION 'append-only: a suspended agent is not reinstated' USING ERRCODE = 'AS001';
    END IF;
    IF TG_OP = 'UPDATE' AND app_risk_rank(NEW.risk_tier) < app_risk_rank(OLD.risk_tier) THEN
        RAISE EXCEPTION 'append-only: an agent''s risk tier only rises' USING ERRCODE = 'AS001';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION app_agent_names_its_entry() FROM PUBLIC;
CREATE TRIGGER agents_name_their_entry BEFORE INSERT ON agents
    FOR EACH ROW EXECUTE FUNCTION app_agent_names_its_entry();
CREATE TRIGGER agents_entry_is_final BEFORE UPDATE OF ledger_index, status, risk_tier ON agents
    FOR EACH ROW EXECUTE FUNCTION app_agent_names_its_entry();
