-- A lookup by leaf hash (an inclusion proof asked by leaf_hash) probes the
-- leaf-hash index epoch by epoch, keyed by (idx >> 12). As the tenant role,
-- under row security, PostgreSQL could not seek that index on its
-- expression: >> (int8shr) is not leakproof, so a condition on it is
-- checked only after the row policy, as a filter, and every lookup read
-- the organization's whole index, at a cost growing with its log (15 ms at
-- 200,000 entries; found by review once agents could ask). The epoch is now
-- a stored column, compared with = (int8eq, leakproof), and the index is
-- keyed by it, so each probe seeks the whole key. The platform log's table
-- gets the same column and index, so that one query serves both.
--
-- Adding a stored generated column rewrites the table: on a large log this
-- migration takes a while, under the table's lock. No row trigger fires (the
-- append-only triggers stand), and no row changes: the column is derived.
ALTER TABLE ledger_entries ADD COLUMN epoch bigint GENERATED ALWAYS AS (idx >> 12) STORED;
CREATE INDEX ledger_entries_by_epoch_leaf_hash ON ledger_entries (tenant_id, epoch, leaf_hash);
DROP INDEX ledger_entries_by_leaf_hash;

ALTER TABLE platform_ledger_entries ADD COLUMN epoch bigint GENERATED ALWAYS AS (idx >> 12) STORED;
CREATE INDEX platform_ledger_entries_by_epoch_leaf_hash ON platform_ledger_entries (epoch, leaf_hash);
DROP INDEX platform_ledger_entries_by_leaf_hash;
