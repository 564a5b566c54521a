-- An agent names the index of the ledger entry that registered it
-- (agent.registered), written with the row in the batch that appends the
-- entry: the decision service takes the risk tier that entry records, proven
-- under a checkpoint the log key signed, as the least the agent's is. NULL is
-- an agent stored before this column; a row inserted behind the service's
-- back must not be one, so a new row names its entry, and the index never
-- changes. Nothing logs a reinstatement or a lowering of tier yet, so a
-- suspended agent is not made active again, and a tier only rises. (Whoever
-- can write the file can drop the triggers, or go around them: on the
-- embedded store this raises the bar, no more.)
ALTER TABLE agents ADD COLUMN ledger_index INTEGER CHECK (ledger_index >= 0);
CREATE TRIGGER agents_name_their_entry BEFORE INSERT ON agents WHEN NEW.ledger_index IS NULL
BEGIN SELECT RAISE(ABORT, 'agents: an agent names its ledger entry'); END;
CREATE TRIGGER agents_entry_is_final BEFORE UPDATE OF ledger_index ON agents
BEGIN SELECT RAISE(ABORT, 'append-only: an agent keeps the entry that registered it'); END;
CREATE TRIGGER agents_suspension_is_not_undone BEFORE UPDATE OF status ON agents
WHEN OLD.status = 'suspended' AND NEW.status = 'active'
BEGIN SELECT RAISE(ABORT, 'append-only: a suspended agent is not reinstated'); END;
CREATE TRIGGER agents_tier_only_rises BEFORE UPDATE OF risk_tier ON agents
WHEN (CASE NEW.risk_tier WHEN 'low' THEN 0 WHEN 'medium' THEN 1 WHEN 'high' THEN 2 ELSE 3 END)
   < (CASE OLD.risk_tier WHEN 'low' THEN 0 WHEN 'medium' THEN 1 WHEN 'high' THEN 2 ELSE 3 END)
BEGIN SELECT RAISE(ABORT, 'append-only: an agent''s risk tier only rises'); END;
