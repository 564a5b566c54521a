-- One organization's database (DATA_DIR/tenants/<tenant-id>.db). Isolation
-- is by construction — one file per organization — and every table still
-- carries tenant_id, checked against tenant_meta, so a misplaced or copied
-- file is noticed instead of silently serving another organization's rows.
CREATE TABLE tenant_meta (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    tenant_id  TEXT NOT NULL CHECK (length(tenant_id) = 36),
    created_at TEXT NOT NULL
) STRICT;

CREATE TRIGGER tenant_meta_immutable BEFORE UPDATE ON tenant_meta
BEGIN
    SELECT RAISE(ABORT, 'append-only: tenant_meta is written once');
END;
CREATE TRIGGER tenant_meta_no_delete BEFORE DELETE ON tenant_meta
BEGIN
    SELECT RAISE(ABORT, 'append-only: tenant_meta is written once');
END;

CREATE TABLE tenant_settings (
    tenant_id  TEXT NOT NULL,
    key        TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 128),
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key)
) STRICT;

-- The transparency log's leaves. Written once: the triggers refuse UPDATE
-- and DELETE whatever the caller.
CREATE TABLE ledger_entries (
    tenant_id  TEXT NOT NULL,
    idx        INTEGER NOT NULL CHECK (idx >= 0),
    entry      BLOB NOT NULL CHECK (length(entry) BETWEEN 1 AND 65536),
    leaf_hash  BLOB NOT NULL CHECK (length(leaf_hash) = 32),
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, idx)
) STRICT;

CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'append-only: ledger_entries');
END;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'append-only: ledger_entries');
END;
