-- An agent, agent key or counterparty stored before rows named their entry
-- (ledger_index NULL) is trusted by nothing now: not the agent, not the
-- key, not the counterparty as verified. `agentsigna ledger adopt` makes
-- such rows, as the operator listed them, name the entry that records
-- them: the one the log holds already (a registration, a key's
-- introduction, a counterparty's creation), or a new agent.adopted or
-- counterparty.adopted entry, written with the rows in the batch that
-- appends it. So ledger_index may now be
-- updated, but only to name an entry for a row that names none: never to
-- change or unname one. The service holds the named entry to the row,
-- under a checkpoint the log key signed, so naming a wrong one trusts
-- nothing. A retired key that names none is adopted too (the entry
-- records it retired): naming its entry is the one change a retired key
-- takes. (Whoever can write the file can drop the triggers: on the
-- embedded store this raises the bar, no more.)
DROP TRIGGER agent_keys_entry_is_final;
CREATE TRIGGER agent_keys_entry_is_final BEFORE UPDATE OF ledger_index ON agent_keys WHEN OLD.ledger_index IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'append-only: an agent key is only ever retired'); END;
DROP TRIGGER agent_keys_retirement_is_final;
CREATE TRIGGER agent_keys_retirement_is_final BEFORE UPDATE ON agent_keys WHEN OLD.status = 'retired'
    AND NOT (OLD.ledger_index IS NULL AND NEW.ledger_index IS NOT NULL
        AND NEW.status = OLD.status AND NEW.retired_at IS OLD.retired_at)
BEGIN SELECT RAISE(ABORT, 'append-only: a retired agent key stays retired'); END;
DROP TRIGGER counterparties_entry_is_final;
CREATE TRIGGER counterparties_entry_is_final BEFORE UPDATE OF ledger_index ON counterparties WHEN OLD.ledger_index IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'append-only: a counterparty keeps the entry that recorded it'); END;
DROP TRIGGER agents_entry_is_final;
CREATE TRIGGER agents_entry_is_final BEFORE UPDATE OF ledger_index ON agents WHEN OLD.ledger_index IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'append-only: an agent keeps the entry that registered it'); END;
