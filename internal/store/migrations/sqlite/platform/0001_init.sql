-- Platform database (DATA_DIR/platform.db): organizations only. Tenant
-- business data lives in one file per organization under DATA_DIR/tenants/.
CREATE TABLE tenants (
    id         TEXT PRIMARY KEY CHECK (length(id) = 36),
    slug       TEXT NOT NULL UNIQUE CHECK (length(slug) BETWEEN 1 AND 63),
    name       TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status     TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    created_at TEXT NOT NULL
) STRICT;

-- Organizations are suspended, never deleted: their logs must stay
-- verifiable.
CREATE TRIGGER tenants_no_delete BEFORE DELETE ON tenants
BEGIN
    SELECT RAISE(ABORT, 'append-only: tenants are suspended, not deleted');
END;
CREATE TRIGGER tenants_immutable_identity BEFORE UPDATE OF id, slug, created_at ON tenants
BEGIN
    SELECT RAISE(ABORT, 'append-only: a tenant''s id, slug and creation time never change');
END;
