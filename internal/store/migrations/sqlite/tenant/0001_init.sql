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
CREATE TRIGGER policy_verification_keys_no_delete BEFORE DELETE ON policy_verification_keys
BEGIN SELECT RAISE(ABORT, 'append-only: policy_verification_keys'); END;

-- Agents (DESIGN §1) and their public keys. An agent is suspended or
-- revoked, never deleted; only status, risk_tier and updated_at change, and
-- a revoked agent stays revoked. A key is retired once, never changed or
-- deleted. Ids are <prefix>_ and 26 characters of [a-z2-7] (store.NewID).
CREATE TABLE agents (
    tenant_id  TEXT NOT NULL,
    id         TEXT NOT NULL CHECK (length(id) = 30 AND substr(id, 1, 4) = 'agt_' AND substr(id, 5) NOT GLOB '*[^a-z2-7]*'),
    name       TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    sponsor    TEXT NOT NULL CHECK (length(sponsor) BETWEEN 1 AND 200),
    risk_tier  TEXT NOT NULL CHECK (risk_tier IN ('low', 'medium', 'high', 'critical')),
    status     TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE TRIGGER agents_immutable BEFORE UPDATE OF tenant_id, id, name, sponsor, created_at ON agents
BEGIN SELECT RAISE(ABORT, 'append-only: an agent only changes status and risk tier'); END;
CREATE TRIGGER agents_revocation_is_final BEFORE UPDATE ON agents WHEN OLD.status = 'revoked' AND NEW.status <> 'revoked'
BEGIN SELECT RAISE(ABORT, 'append-only: a revoked agent stays revoked'); END;
CREATE TRIGGER agents_no_delete BEFORE DELETE ON agents
BEGIN SELECT RAISE(ABORT, 'append-only: agents are revoked, not deleted'); END;

CREATE TABLE agent_keys (
    tenant_id  TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    kid        TEXT NOT NULL CHECK (length(kid) BETWEEN 1 AND 128),
    public_jwk TEXT NOT NULL CHECK (length(public_jwk) BETWEEN 2 AND 4096),
    status     TEXT NOT NULL CHECK (status IN ('active', 'retired')),
    created_at TEXT NOT NULL,
    retired_at TEXT,
    PRIMARY KEY (tenant_id, agent_id, kid),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id),
    CHECK ((status = 'active') = (retired_at IS NULL))
) STRICT;
CREATE TRIGGER agent_keys_immutable BEFORE UPDATE OF tenant_id, agent_id, kid, public_jwk, created_at ON agent_keys
BEGIN SELECT RAISE(ABORT, 'append-only: an agent key is only ever retired'); END;
CREATE TRIGGER agent_keys_retirement_is_final BEFORE UPDATE ON agent_keys WHEN OLD.status = 'retired'
BEGIN SELECT RAISE(ABORT, 'append-only: a retired agent key stays retired'); END;
CREATE TRIGGER agent_keys_no_delete BEFORE DELETE ON agent_keys
BEGIN SELECT RAISE(ABORT, 'append-only: agent keys are retired, not deleted'); END;

-- Client assertions already used (RFC 7523 §3), by the SHA-256 of their
-- jti, until they expire. Not a record: expired rows are taken over or
-- pruned.
CREATE TABLE assertion_jtis (
    tenant_id  TEXT NOT NULL,
    jti_sha256 BLOB NOT NULL CHECK (length(jti_sha256) = 32),
    agent_id   TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, jti_sha256),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id)
) STRICT;
CREATE INDEX assertion_jtis_by_expiry ON assertion_jtis (tenant_id, expires_at);

-- Counterparties: never deleted; only status, the sealed bank details
-- (AES-256-GCM under the master key, bound to tenant, table, row and
-- purpose — never clear text) and updated_at change.
CREATE TABLE counterparties (
    tenant_id           TEXT NOT NULL,
    id                  TEXT NOT NULL CHECK (length(id) = 29 AND substr(id, 1, 3) = 'cp_' AND substr(id, 4) NOT GLOB '*[^a-z2-7]*'),
    name                TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status              TEXT NOT NULL CHECK (status IN ('new', 'verified', 'blocked')),
    bank_details_sealed BLOB CHECK (bank_details_sealed IS NULL OR length(bank_details_sealed) BETWEEN 1 AND 16384),
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE TRIGGER counterparties_immutable BEFORE UPDATE OF tenant_id, id, name, created_at ON counterparties
BEGIN SELECT RAISE(ABORT, 'append-only: a counterparty only changes status and bank details'); END;
CREATE TRIGGER counterparties_no_delete BEFORE DELETE ON counterparties
BEGIN SELECT RAISE(ABORT, 'append-only: counterparties are blocked, not deleted'); END;

-- Decisions (DESIGN §3) and the receipts of allowed (or approved) ones:
-- written once.
-- An Idempotency-Key (its SHA-256) is unique per agent.
CREATE TABLE decisions (
    tenant_id              TEXT NOT NULL,
    id                     TEXT NOT NULL CHECK (length(id) = 30 AND substr(id, 1, 4) = 'dec_' AND substr(id, 5) NOT GLOB '*[^a-z2-7]*'),
    agent_id               TEXT NOT NULL,
    action                 TEXT NOT NULL CHECK (length(action) > 0),
    action_type            TEXT NOT NULL CHECK (length(action_type) BETWEEN 1 AND 256),
    counterparty_id        TEXT,
    reason                 TEXT NOT NULL,
    outcome                TEXT NOT NULL CHECK (outcome IN ('allow', 'deny', 'escalate')),
    reasons                TEXT NOT NULL,
    approvals_required     INTEGER NOT NULL CHECK (approvals_required BETWEEN 0 AND 100),
    base_revision          TEXT NOT NULL,
    tenant_revision        TEXT NOT NULL,
    tenant_bundle_sha256   TEXT NOT NULL,
    idempotency_key_sha256 BLOB CHECK (idempotency_key_sha256 IS NULL OR length(idempotency_key_sha256) = 32),
    request_sha256         BLOB NOT NULL CHECK (length(request_sha256) = 32),
    ledger_index           INTEGER NOT NULL CHECK (ledger_index >= 0),
    response               TEXT NOT NULL CHECK (length(response) > 0),
    created_at             TEXT NOT NULL,
    -- The agent's running counts including this decision, and the time they
    -- run to (store.AgentTally): the policy input's agent.stats are
    -- differences of two of them.
    agent_seq              INTEGER NOT NULL CHECK (agent_seq > 0),
    agent_denials          INTEGER NOT NULL CHECK (agent_denials BETWEEN 0 AND agent_seq),
    agent_tally_at         TEXT NOT NULL CHECK (agent_tally_at >= created_at),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id),
    FOREIGN KEY (tenant_id, counterparty_id) REFERENCES counterparties (tenant_id, id)
) STRICT;
CREATE UNIQUE INDEX decisions_by_idempotency_key ON decisions (tenant_id, agent_id, idempotency_key_sha256)
    WHERE idempotency_key_sha256 IS NOT NULL;
-- The agent's latest tally, and its tally as of a moment: each a seek.
CREATE UNIQUE INDEX decisions_by_agent_seq ON decisions (tenant_id, agent_id, agent_seq);
CREATE INDEX decisions_by_agent_time ON decisions (tenant_id, agent_id, agent_tally_at, agent_seq, agent_denials);

CREATE TABLE receipts (
    tenant_id    TEXT NOT NULL,
    id           TEXT NOT NULL CHECK (length(id) = 30 AND substr(id, 1, 4) = 'rct_' AND substr(id, 5) NOT GLOB '*[^a-z2-7]*'),
    decision_id  TEXT NOT NULL,
    jws          TEXT NOT NULL CHECK (length(jws) > 0),
    ledger_index INTEGER NOT NULL CHECK (ledger_index >= 0),
    created_at   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, decision_id),
    FOREIGN KEY (tenant_id, decision_id) REFERENCES decisions (tenant_id, id)
) STRICT;

CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'append-only: decisions'); END;
CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'append-only: decisions'); END;
CREATE TRIGGER receipts_no_update BEFORE UPDATE ON receipts
BEGIN SELECT RAISE(ABORT, 'append-only: receipts'); END;
CREATE TRIGGER receipts_no_delete BEFORE DELETE ON receipts
BEGIN SELECT RAISE(ABORT, 'append-only: receipts'); END;

-- Cases: one per escalated decision. Created pending, closed once
-- (approved, rejected or expired); a closed case never changes again, and
-- only status and updated_at ever change.
CREATE TABLE cases (
    tenant_id          TEXT NOT NULL,
    id                 TEXT NOT NULL CHECK (length(id) = 31 AND substr(id, 1, 5) = 'case_' AND substr(id, 6) NOT GLOB '*[^a-z2-7]*'),
    decision_id        TEXT NOT NULL,
    agent_id           TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'expired')),
    approvals_required INTEGER NOT NULL CHECK (approvals_required BETWEEN 1 AND 100),
    expires_at         TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, decision_id),
    FOREIGN KEY (tenant_id, decision_id) REFERENCES decisions (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id)
) STRICT;
CREATE INDEX cases_pending_by_expiry ON cases (tenant_id, expires_at) WHERE status = 'pending';
CREATE TRIGGER cases_immutable BEFORE UPDATE OF tenant_id, id, decision_id, agent_id, approvals_required, expires_at, created_at ON cases
BEGIN SELECT RAISE(ABORT, 'append-only: a case only changes status'); END;
CREATE TRIGGER cases_closed_is_final BEFORE UPDATE ON cases WHEN OLD.status <> 'pending'
BEGIN SELECT RAISE(ABORT, 'append-only: a closed case never changes'); END;
CREATE TRIGGER cases_no_delete BEFORE DELETE ON cases
BEGIN SELECT RAISE(ABORT, 'append-only: cases are closed, not deleted'); END;

-- Running counts of payments per counterparty, kept in step with decisions
-- (same transaction), so that building an input costs the same on the
-- millionth decision as on the first. Derived data: they change, decisions
-- do not.
CREATE TABLE counterparty_payments (
    tenant_id       TEXT NOT NULL,
    counterparty_id TEXT NOT NULL,
    payments        INTEGER NOT NULL CHECK (payments >= 0),
    PRIMARY KEY (tenant_id, counterparty_id)
) STRICT;
