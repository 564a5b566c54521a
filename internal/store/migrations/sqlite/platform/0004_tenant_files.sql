-- The organizations whose database file the store has made (tenants/<id>.db),
-- written once, when the file is first claimed. A file missing where a row
-- says one was made is refused, not made again empty: an empty file would
-- start the organization's log over under the same origin, and its earlier
-- checkpoints, held by auditors, would no longer match. Files made before
-- this table are recorded the next time the store opens them.
CREATE TABLE tenant_files (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants (id),
    created_at TEXT NOT NULL
) STRICT;
CREATE TRIGGER tenant_files_no_update BEFORE UPDATE ON tenant_files
BEGIN SELECT RAISE(ABORT, 'append-only: tenant_files'); END;
CREATE TRIGGER tenant_files_no_delete BEFORE DELETE ON tenant_files
BEGIN SELECT RAISE(ABORT, 'append-only: tenant_files'); END;
