-- A receipt's compact JWS is the record of its ledger entry (the log digests
-- exactly what the agent holds), and was stored a second time in its
-- receipts row: a quarter of the bytes each allowed decision wrote. The
-- row now keeps the entry's index only; the JWS is read from the entry,
-- and a receipt is only stored when its entry holds that JWS (store code).
--
-- DROP COLUMN does not rewrite the table: rows stored before keep their
-- bytes until the table is rewritten (VACUUM FULL); new rows are smaller.
-- The ALTERs lock receipts and ledger_entries for the migration's
-- transaction, which reads every receipt once.
--
-- The column goes only if every stored receipt is its entry's record. Row
-- security is forced on both tables, for the owner too: it is lifted for
-- this check only, inside this migration's transaction.
ALTER TABLE receipts NO FORCE ROW LEVEL SECURITY;
ALTER TABLE ledger_entries NO FORCE ROW LEVEL SECURITY;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM receipts r
        WHERE NOT EXISTS (SELECT 1 FROM ledger_entries e
            WHERE e.tenant_id = r.tenant_id AND e.idx = r.ledger_index AND e.record = convert_to(r.jws, 'UTF8'))) THEN
        RAISE EXCEPTION 'a stored receipt is not the record of its ledger entry: receipts.jws is kept';
    END IF;
END
$$;
ALTER TABLE receipts FORCE ROW LEVEL SECURITY;
ALTER TABLE ledger_entries FORCE ROW LEVEL SECURITY;

ALTER TABLE receipts DROP COLUMN jws;

-- Fails the statement it is in, with message, unless ok: for checks one
-- statement makes of what it wrote (a receipt's entry, above), so that a
-- pipeline of statements stops at the first that fails, server-side.
CREATE FUNCTION app_assert(ok boolean, message text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION '%', message USING ERRCODE = '23514';
    END IF;
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION app_assert(boolean, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_assert(boolean, text) TO {{tenant_role}};
