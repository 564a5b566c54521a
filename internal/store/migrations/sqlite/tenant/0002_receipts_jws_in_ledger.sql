-- A receipt's compact JWS is the record of its ledger entry (the log digests
-- exactly what the agent holds), and was stored a second time in its
-- receipts row: a quarter of the bytes each allowed decision wrote. The
-- row now keeps the entry's index only; the JWS is read from the entry,
-- and a receipt is only stored when its entry holds that JWS (store code).
--
-- The column goes only if every stored receipt is its entry's record: the
-- CHECK below fails the migration, and changes nothing, if one is not.
CREATE TEMP TABLE migration_0002_check (
    receipts_not_in_ledger INTEGER NOT NULL CHECK (receipts_not_in_ledger = 0)
);
INSERT INTO migration_0002_check
SELECT count(*) FROM receipts r
WHERE NOT EXISTS (SELECT 1 FROM ledger_entries e
    WHERE e.tenant_id = r.tenant_id AND e.idx = r.ledger_index AND e.record = CAST(r.jws AS BLOB));
DROP TABLE migration_0002_check;

ALTER TABLE receipts DROP COLUMN jws;
