-- An agent, agent key or counterparty stored before rows named their entry
-- (ledger_index NULL) is trusted by nothing now: not the agent, not the
-- key, not the counterparty as verified. `agentsigna ledger adopt` makes
-- such rows, as the operator listed them, name the entry that records
-- them: the one the log holds already (a registration, a key's
-- introduction, a counterparty's creation), or a new agent.adopted or
-- counterparty.adopted entry, written with the rows in the batch that
-- appends it. So the tenant role may now
-- update ledger_index, but only to name an entry for a row that names
-- none: never to change or unname one. The service holds the named entry
-- to the row, under a checkpoint the log key signed, so naming a wrong one
-- trusts nothing. A retired key that names none is adopted too (the entry
-- records it retired): naming its entry is the one change a retired key
-- takes. Every other check is as before, and the tenant role owns neither
-- the tables nor the triggers.
CREATE OR REPLACE FUNCTION app_agent_key_names_its_entry() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.ledger_index IS NULL THEN
        RAISE EXCEPTION 'agent_keys: a key names its ledger entry'
            USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.ledger_index IS NOT NULL AND NEW.ledger_index IS DISTINCT FROM OLD.ledger_index THEN
        RAISE EXCEPTION 'append-only: an agent key is only ever retired, once' USING ERRCODE = 'AS001';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION app_agent_key_names_its_entry() FROM PUBLIC;
CREATE OR REPLACE FUNCTION app_agent_keys_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id OR NEW.agent_id IS DISTINCT FROM OLD.agent_id
       OR NEW.kid IS DISTINCT FROM OLD.kid OR NEW.public_jwk IS DISTINCT FROM OLD.public_jwk
       OR NEW.created_at IS DISTINCT FROM OLD.created_at
       OR (OLD.status = 'retired' AND NOT (OLD.ledger_index IS NULL AND NEW.ledger_index IS NOT NULL
           AND NEW.status = OLD.status AND NEW.retired_at IS NOT DISTINCT FROM OLD.retired_at)) THEN
        RAISE EXCEPTION 'append-only: an agent key is only ever retired, once' USING ERRCODE = 'AS001';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION app_agent_keys_guard() FROM PUBLIC;
CREATE OR REPLACE FUNCTION app_counterparty_names_its_entry() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.ledger_index IS NULL THEN
        RAISE EXCEPTION 'counterparties: a counterparty names its ledger entry'
            USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.ledger_index IS NOT NULL AND NEW.ledger_index IS DISTINCT FROM OLD.ledger_index THEN
        RAISE EXCEPTION 'append-only: a counterparty keeps the entry that recorded it' USING ERRCODE = 'AS001';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.status = 'verified' AND OLD.status <> 'verified' THEN
        RAISE EXCEPTION 'append-only: a counterparty is verified only as it was recorded' USING ERRCODE = 'AS001';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION app_counterparty_names_its_entry() FROM PUBLIC;
CREATE OR REPLACE FUNCTION app_agent_names_its_entry() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.ledger_index IS NULL THEN
        RAISE EXCEPTION 'agents: an agent names its ledger entry'
            USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.ledger_index IS NOT NULL AND NEW.ledger_index IS DISTINCT FROM OLD.ledger_index THEN
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
GRANT UPDATE (ledger_index) ON agents, agent_keys, counterparties TO {{tenant_role}};
