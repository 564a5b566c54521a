-- An agent key names the index of the ledger entry that registered it
-- (agent.registered or agent.key_rotated), written with the row in the
-- batch that appends the entry: the token endpoint accepts an assertion
-- under the key only once that entry, under a checkpoint the log key
-- signed, records the same agent, kid and public key. NULL is a key
-- stored before this column; a row inserted behind the service's back
-- must not be one, so a new row names its entry, and the index never
-- changes. (Whoever can write the file can drop the triggers: on the
-- embedded store this raises the bar, no more.)
ALTER TABLE agent_keys ADD COLUMN ledger_index INTEGER CHECK (ledger_index >= 0);
CREATE TRIGGER agent_keys_name_their_entry BEFORE INSERT ON agent_keys WHEN NEW.ledger_index IS NULL
BEGIN SELECT RAISE(ABORT, 'agent_keys: a key names its ledger entry'); END;
CREATE TRIGGER agent_keys_entry_is_final BEFORE UPDATE OF ledger_index ON agent_keys
BEGIN SELECT RAISE(ABORT, 'append-only: an agent key is only ever retired'); END;
