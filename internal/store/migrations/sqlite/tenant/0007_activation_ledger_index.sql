-- An activation names the index of its ledger entry (policy.activate or
-- policy.rollback), written with the row in the batch that appends the
-- entry: the service loads an active revision only once that entry, under
-- a checkpoint the log key signed, says the same. NULL is an activation
-- made before this column, found by its entry instead. The table's
-- triggers already refuse UPDATE and DELETE.
ALTER TABLE policy_activations ADD COLUMN ledger_index INTEGER CHECK (ledger_index >= 0);
