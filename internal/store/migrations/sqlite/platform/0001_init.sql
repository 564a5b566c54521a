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

-- The platform plane's own transparency log and keys: the same shapes as a
-- tenant's (see sqlite/tenant), without tenant_id.
CREATE TABLE platform_ledger_entries (
    idx        INTEGER PRIMARY KEY CHECK (idx >= 0),
    entry      BLOB NOT NULL CHECK (length(entry) BETWEEN 1 AND 65536),
    leaf_hash  BLOB NOT NULL CHECK (length(leaf_hash) = 32),
    record     BLOB NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX platform_ledger_entries_by_leaf_hash ON platform_ledger_entries (idx >> 12, leaf_hash);

CREATE TABLE platform_ledger_nodes (
    level INTEGER NOT NULL CHECK (level > 0 AND level % 8 = 0 AND level < 64),
    idx   INTEGER NOT NULL CHECK (idx >= 0),
    hash  BLOB NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
) STRICT;

CREATE TABLE platform_ledger_checkpoints (
    size           INTEGER PRIMARY KEY CHECK (size > 0),
    root           BLOB NOT NULL CHECK (length(root) = 32),
    range_hashes   BLOB NOT NULL CHECK (length(range_hashes) % 32 = 0),
    last_leaf_hash BLOB NOT NULL CHECK (length(last_leaf_hash) = 32),
    note           BLOB NOT NULL,
    created_at     TEXT NOT NULL
) STRICT;

CREATE TRIGGER platform_ledger_entries_no_update BEFORE UPDATE ON platform_ledger_entries
BEGIN SELECT RAISE(ABORT, 'append-only: platform_ledger_entries'); END;
CREATE TRIGGER platform_ledger_entries_no_delete BEFORE DELETE ON platform_ledger_entries
BEGIN SELECT RAISE(ABORT, 'append-only: platform_ledger_entries'); END;
CREATE TRIGGER platform_ledger_nodes_no_update BEFORE UPDATE ON platform_ledger_nodes
BEGIN SELECT RAISE(ABORT, 'append-only: platform_ledger_nodes'); END;
CREATE TRIGGER platform_ledger_nodes_no_delete BEFORE DELETE ON platform_ledger_nodes
BEGIN SELECT RAISE(ABORT, 'append-only: platform_ledger_nodes'); END;
CREATE TRIGGER platform_ledger_checkpoints_no_update BEFORE UPDATE ON platform_ledger_checkpoints
BEGIN SELECT RAISE(ABORT, 'append-only: platform_ledger_checkpoints'); END;
CREATE TRIGGER platform_ledger_checkpoints_no_delete BEFORE DELETE ON platform_ledger_checkpoints
BEGIN SELECT RAISE(ABORT, 'append-only: platform_ledger_checkpoints'); END;

CREATE TABLE platform_signing_keys (
    kid            TEXT PRIMARY KEY CHECK (length(kid) BETWEEN 1 AND 128),
    purpose        TEXT NOT NULL CHECK (purpose IN ('log', 'receipt', 'token')),
    algorithm      TEXT NOT NULL,
    public_key     BLOB NOT NULL,
    sealed_private BLOB NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('active', 'retired')),
    created_at     TEXT NOT NULL,
    retired_at     TEXT
) STRICT;
CREATE TRIGGER platform_signing_keys_immutable BEFORE UPDATE OF kid, purpose, algorithm, public_key, sealed_private, created_at ON platform_signing_keys
BEGIN SELECT RAISE(ABORT, 'append-only: a signing key is only ever retired'); END;
CREATE TRIGGER platform_signing_keys_no_delete BEFORE DELETE ON platform_signing_keys
BEGIN SELECT RAISE(ABORT, 'append-only: signing keys are retired, not deleted'); END;

-- Which organization an agent id belongs to: the token endpoint learns the
-- organization from the agent's assertion (iss = sub = agent id). Written
-- when an agent is registered; never changed.
CREATE TABLE agent_directory (
    agent_id   TEXT PRIMARY KEY CHECK (length(agent_id) BETWEEN 1 AND 64),
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    created_at TEXT NOT NULL
) STRICT;
CREATE TRIGGER agent_directory_no_update BEFORE UPDATE ON agent_directory
BEGIN SELECT RAISE(ABORT, 'append-only: agent_directory'); END;
CREATE TRIGGER agent_directory_no_delete BEFORE DELETE ON agent_directory
BEGIN SELECT RAISE(ABORT, 'append-only: agent_directory'); END;
