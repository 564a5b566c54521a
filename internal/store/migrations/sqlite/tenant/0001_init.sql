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

-- The transparency log (DESIGN §4). Every table here is written once: the
-- triggers refuse UPDATE and DELETE whatever the caller.
--   ledger_entries:     the leaves, with the record each one digests
--   ledger_nodes:       tree hashes at levels 8, 16, … (tlog-tiles rows; level
--                       0 is ledger_entries.leaf_hash)
--   ledger_checkpoints: every signed checkpoint, with the compact range that
--                       lets the next batch extend the tree without re-reading it
CREATE TABLE ledger_entries (
    tenant_id  TEXT NOT NULL,
    idx        INTEGER NOT NULL CHECK (idx >= 0),
    entry      BLOB NOT NULL CHECK (length(entry) BETWEEN 1 AND 65536),
    leaf_hash  BLOB NOT NULL CHECK (length(leaf_hash) = 32),
    record     BLOB NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, idx)
) STRICT;
CREATE INDEX ledger_entries_by_leaf_hash ON ledger_entries (tenant_id, idx >> 12, leaf_hash);

CREATE TABLE ledger_nodes (
    tenant_id TEXT NOT NULL,
    level     INTEGER NOT NULL CHECK (level > 0 AND level % 8 = 0 AND level < 64),
    idx       INTEGER NOT NULL CHECK (idx >= 0),
    hash      BLOB NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (tenant_id, level, idx)
) STRICT;

CREATE TABLE ledger_checkpoints (
    tenant_id      TEXT NOT NULL,
    size           INTEGER NOT NULL CHECK (size > 0),
    root           BLOB NOT NULL CHECK (length(root) = 32),
    range_hashes   BLOB NOT NULL CHECK (length(range_hashes) % 32 = 0),
    last_leaf_hash BLOB NOT NULL CHECK (length(last_leaf_hash) = 32),
    note           BLOB NOT NULL,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, size)
) STRICT;

CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'append-only: ledger_entries'); END;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'append-only: ledger_entries'); END;
CREATE TRIGGER ledger_nodes_no_update BEFORE UPDATE ON ledger_nodes
BEGIN SELECT RAISE(ABORT, 'append-only: ledger_nodes'); END;
CREATE TRIGGER ledger_nodes_no_delete BEFORE DELETE ON ledger_nodes
BEGIN SELECT RAISE(ABORT, 'append-only: ledger_nodes'); END;
CREATE TRIGGER ledger_checkpoints_no_update BEFORE UPDATE ON ledger_checkpoints
BEGIN SELECT RAISE(ABORT, 'append-only: ledger_checkpoints'); END;
CREATE TRIGGER ledger_checkpoints_no_delete BEFORE DELETE ON ledger_checkpoints
BEGIN SELECT RAISE(ABORT, 'append-only: ledger_checkpoints'); END;

-- Signing keys (log, receipt, token), private halves sealed with the master
-- key. Only status and retired_at ever change; keys are never deleted, so
-- old receipts and checkpoints stay verifiable.
CREATE TABLE signing_keys (
    tenant_id      TEXT NOT NULL,
    kid            TEXT NOT NULL CHECK (length(kid) BETWEEN 1 AND 128),
    purpose        TEXT NOT NULL CHECK (purpose IN ('log', 'receipt', 'token')),
    algorithm      TEXT NOT NULL,
    public_key     BLOB NOT NULL,
    sealed_private BLOB NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('active', 'retired')),
    created_at     TEXT NOT NULL,
    retired_at     TEXT,
    PRIMARY KEY (tenant_id, kid)
) STRICT;
CREATE TRIGGER signing_keys_immutable BEFORE UPDATE OF tenant_id, kid, purpose, algorithm, public_key, sealed_private, created_at ON signing_keys
BEGIN SELECT RAISE(ABORT, 'append-only: a signing key is only ever retired'); END;
CREATE TRIGGER signing_keys_no_delete BEFORE DELETE ON signing_keys
BEGIN SELECT RAISE(ABORT, 'append-only: signing keys are retired, not deleted'); END;

-- Policy bundles (DESIGN §3): every uploaded revision is kept, written once;
-- activations (and rollbacks) are an append-only sequence whose newest row
-- is the active revision.
CREATE TABLE policy_bundles (
    tenant_id   TEXT NOT NULL,
    revision    TEXT NOT NULL CHECK (length(revision) BETWEEN 1 AND 256),
    digest      BLOB NOT NULL CHECK (length(digest) = 32),
    bundle      BLOB NOT NULL,
    manifest    TEXT NOT NULL,
    signed      INTEGER NOT NULL CHECK (signed IN (0, 1)),
    uploaded_by TEXT NOT NULL,
    uploaded_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, revision)
) STRICT;
CREATE TABLE policy_activations (
    tenant_id    TEXT NOT NULL,
    seq          INTEGER NOT NULL CHECK (seq > 0),
    revision     TEXT NOT NULL,
    rollback     INTEGER NOT NULL CHECK (rollback IN (0, 1)),
    activated_by TEXT NOT NULL,
    approved_by  TEXT NOT NULL,
    activated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq),
    FOREIGN KEY (tenant_id, revision) REFERENCES policy_bundles (tenant_id, revision)
) STRICT;
CREATE TABLE policy_verification_keys (
    tenant_id  TEXT NOT NULL,
    kid        TEXT NOT NULL CHECK (length(kid) BETWEEN 1 AND 128),
    public_pem TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, kid)
) STRICT;
CREATE TRIGGER policy_bundles_no_update BEFORE UPDATE ON policy_bundles
BEGIN SELECT RAISE(ABORT, 'append-only: policy_bundles'); END;
CREATE TRIGGER policy_bundles_no_delete BEFORE DELETE ON policy_bundles
BEGIN SELECT RAISE(ABORT, 'append-only: policy_bundles'); END;
CREATE TRIGGER policy_activations_no_update BEFORE UPDATE ON policy_activations
BEGIN SELECT RAISE(ABORT, 'append-only: policy_activations'); END;
CREATE TRIGGER policy_activations_no_delete BEFORE DELETE ON policy_activations
BEGIN SELECT RAISE(ABORT, 'append-only: policy_activations'); END;
CREATE TRIGGER policy_verification_keys_no_update BEFORE UPDATE ON policy_verification_keys
BEGIN SELECT RAISE(ABORT, 'append-only: policy_verification_keys'); END;
