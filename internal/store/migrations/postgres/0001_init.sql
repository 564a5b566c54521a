-- Runs as the owner role (NOLOGIN; the app roles own nothing). The runner
-- substitutes {{tenant_role}} and {{platform_role}} with quoted identifiers.

-- Refuses UPDATE, DELETE and TRUNCATE on append-only tables, whatever the
-- role: the grants already deny the app roles, this stops the owner too
-- unless it deliberately disables the trigger.
CREATE FUNCTION app_refuse_mutation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'AS001';
END
$$;
REVOKE ALL ON FUNCTION app_refuse_mutation() FROM PUBLIC;

-- ---------------------------------------------------------------- platform

CREATE TABLE tenants (
    id         uuid PRIMARY KEY,
    slug       text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status     text NOT NULL CHECK (status IN ('active', 'suspended')),
    created_at timestamptz NOT NULL DEFAULT now()
);
-- Organizations are suspended, never deleted, and their identity is fixed.
CREATE FUNCTION app_tenants_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.id <> OLD.id OR NEW.slug <> OLD.slug OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'append-only: tenants are suspended, not deleted or renamed'
            USING ERRCODE = 'AS001';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION app_tenants_guard() FROM PUBLIC;
CREATE TRIGGER tenants_guard BEFORE UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION app_tenants_guard();
CREATE TRIGGER tenants_no_truncate BEFORE TRUNCATE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION app_refuse_mutation();
GRANT SELECT, INSERT, UPDATE (name, status) ON tenants TO {{platform_role}};

-- The tenant plane resolves /t/<slug> without any grant on tenants: this
-- function returns the public directory entry of one organization. Every
-- tenant transaction calls it, so it is PL/pgSQL, whose plans are cached
-- per session: a SQL function with SECURITY DEFINER and SET is never
-- inlined, and was planned again on every call (0.2 ms, a third of the
-- database's time per decision).
CREATE FUNCTION app_tenant_directory(p_slug text, p_id uuid)
RETURNS TABLE (id uuid, slug text, status text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_slug IS NULL THEN
        RETURN QUERY SELECT t.id, t.slug, t.status FROM public.tenants t WHERE t.id = p_id;
    ELSIF p_id IS NULL THEN
        RETURN QUERY SELECT t.id, t.slug, t.status FROM public.tenants t WHERE t.slug = p_slug;
    ELSE
        RETURN QUERY SELECT t.id, t.slug, t.status FROM public.tenants t WHERE t.slug = p_slug OR t.id = p_id;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION app_tenant_directory(text, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_tenant_directory(text, uuid) TO {{tenant_role}};

-- Which organization an agent id belongs to: the token endpoint learns the
-- organization from the agent's assertion (iss = sub = agent id). The tenant
-- role registers its own agents and reads the mapping only through these
-- functions; it has no grant on the table.
CREATE TABLE agent_directory (
    agent_id   text PRIMARY KEY CHECK (length(agent_id) BETWEEN 1 AND 64),
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER agent_directory_append_only BEFORE UPDATE OR DELETE ON agent_directory
    FOR EACH ROW EXECUTE FUNCTION app_refuse_mutation();
CREATE TRIGGER agent_directory_no_truncate BEFORE TRUNCATE ON agent_directory
    FOR EACH STATEMENT EXECUTE FUNCTION app_refuse_mutation();
GRANT SELECT ON agent_directory TO {{platform_role}};

-- Registers an agent id for the organization of the current transaction
-- (app.tenant_id): a tenant can only ever claim ids for itself.
CREATE FUNCTION app_register_agent(p_agent_id text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE t uuid := NULLIF(current_setting('app.tenant_id', true), '')::uuid;
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'no tenant in this transaction' USING ERRCODE = '42501';
    END IF;
    INSERT INTO public.agent_directory (agent_id, tenant_id) VALUES (p_agent_id, t);
END
$$;
REVOKE ALL ON FUNCTION app_register_agent(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_register_agent(text) TO {{tenant_role}};

CREATE FUNCTION app_agent_tenant(p_agent_id text)
RETURNS TABLE (id uuid, slug text, status text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.id, t.slug, t.status FROM public.agent_directory d JOIN public.tenants t ON t.id = d.tenant_id
    WHERE d.agent_id = p_agent_id
$$;
REVOKE ALL ON FUNCTION app_agent_tenant(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_agent_tenant(text) TO {{tenant_role}};

-- ------------------------------------------------------------------ tenant
-- Every tenant table: tenant_id, ENABLE + FORCE ROW LEVEL SECURITY, and one
-- policy for every role on current_setting('app.tenant_id'). Unset (NULL) or
-- empty (what a finished transaction leaves behind) matches no row; a value
-- that is not a UUID fails the cast and the statement errors. Both fail closed.

CREATE TABLE tenant_settings (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    key        text NOT NULL CHECK (length(key) BETWEEN 1 AND 128),
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
ALTER TABLE tenant_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_settings
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_settings TO {{tenant_role}};

-- The transparency log (DESIGN §4): leaves with their records, tree hashes
-- at levels 8, 16, … (level 0 is ledger_entries.leaf_hash), and every signed
-- checkpoint with the compact range the next batch extends. Written once.
CREATE TABLE ledger_entries (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    idx        bigint NOT NULL CHECK (idx >= 0),
    entry      bytea NOT NULL CHECK (octet_length(entry) BETWEEN 1 AND 65536),
    leaf_hash  bytea NOT NULL CHECK (octet_length(leaf_hash) = 32),
    record     bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, idx)
);
-- Keyed by epoch (idx >> 12) first: random leaf hashes then land in one
-- small subtree per batch instead of across the whole index.
CREATE INDEX ledger_entries_by_leaf_hash ON ledger_entries (tenant_id, (idx >> 12), leaf_hash);

CREATE TABLE ledger_nodes (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    level     smallint NOT NULL CHECK (level > 0 AND level % 8 = 0 AND level < 64),
    idx       bigint NOT NULL CHECK (idx >= 0),
    hash      bytea NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (tenant_id, level, idx)
);

CREATE TABLE ledger_checkpoints (
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    size           bigint NOT NULL CHECK (size > 0),
    root           bytea NOT NULL CHECK (octet_length(root) = 32),
    range_hashes   bytea NOT NULL CHECK (octet_length(range_hashes) % 32 = 0),
    last_leaf_hash bytea NOT NULL CHECK (octet_length(last_leaf_hash) = 32),
    note           bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, size)
);

-- Signing keys, private halves sealed with the master key. Only status and
-- retired_at change; keys are never deleted.
CREATE TABLE signing_keys (
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    kid            text NOT NULL CHECK (length(kid) BETWEEN 1 AND 128),
    purpose        text NOT NULL CHECK (purpose IN ('log', 'receipt', 'token')),
    algorithm      text NOT NULL,
    public_key     bytea NOT NULL,
    sealed_private bytea NOT NULL,
    status         text NOT NULL CHECK (status IN ('active', 'retired')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    retired_at     timestamptz,
    PRIMARY KEY (tenant_id, kid)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['ledger_entries', 'ledger_nodes', 'ledger_checkpoints', 'signing_keys'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['ledger_entries', 'ledger_nodes', 'ledger_checkpoints'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION app_refuse_mutation()', t || '_append_only', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION app_refuse_mutation()', t || '_no_truncate', t);
    END LOOP;
END
$$;

CREATE FUNCTION app_signing_keys_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.kid <> OLD.kid OR NEW.purpose <> OLD.purpose OR NEW.algorithm <> OLD.algorithm
       OR NEW.public_key <> OLD.public_key OR NEW.sealed_private <> OLD.sealed_private OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'append-only: a signing key is only ever retired' USING ERRCODE = 'AS001';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION app_signing_keys_guard() FROM PUBLIC;
CREATE TRIGGER signing_keys_guard BEFORE UPDATE OR DELETE ON signing_keys
    FOR EACH ROW EXECUTE FUNCTION app_signing_keys_guard();
CREATE TRIGGER signing_keys_no_truncate BEFORE TRUNCATE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION app_refuse_mutation();

-- Append-only: no UPDATE, DELETE or TRUNCATE grant.
GRANT SELECT, INSERT ON ledger_entries, ledger_nodes, ledger_checkpoints TO {{tenant_role}};
GRANT SELECT, INSERT, UPDATE (status, retired_at) ON signing_keys TO {{tenant_role}};

-- Policy bundles (DESIGN §3): every uploaded revision kept, written once;
-- activations (and rollbacks) are an append-only sequence whose newest row
-- is the active revision. Verification keys are added, not changed.
CREATE TABLE policy_bundles (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    revision    text NOT NULL CHECK (length(revision) BETWEEN 1 AND 256),
    digest      bytea NOT NULL CHECK (octet_length(digest) = 32),
    bundle      bytea NOT NULL,
    manifest    text NOT NULL,
    signed      boolean NOT NULL,
    uploaded_by text NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, revision)
);
CREATE TABLE policy_activations (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    seq          bigint NOT NULL CHECK (seq > 0),
    revision     text NOT NULL,
    rollback     boolean NOT NULL,
    activated_by text NOT NULL,
    approved_by  text NOT NULL,
    activated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, seq),
    FOREIGN KEY (tenant_id, revision) REFERENCES policy_bundles (tenant_id, revision)
);
CREATE TABLE policy_verification_keys (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    kid        text NOT NULL CHECK (length(kid) BETWEEN 1 AND 128),
    public_pem text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, kid)
);
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['policy_bundles', 'policy_activations', 'policy_verification_keys'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION app_refuse_mutation()', t || '_append_only', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION app_refuse_mutation()', t || '_no_truncate', t);
    END LOOP;
END
$$;
GRANT SELECT, INSERT ON policy_bundles, policy_activations, policy_verification_keys TO {{tenant_role}};

-- Agents (DESIGN §1) and their public keys. An agent is suspended or
-- revoked, never deleted; only status, risk_tier and updated_at change, and
-- a revoked agent stays revoked. A key is retired once, never changed or
-- deleted. Ids are <prefix>_ and 26 characters of [a-z2-7] (store.NewID).
CREATE TABLE agents (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    id         text NOT NULL CHECK (id ~ '^agt_[a-z2-7]{26}$'),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    sponsor    text NOT NULL CHECK (length(sponsor) BETWEEN 1 AND 200),
    risk_tier  text NOT NULL CHECK (risk_tier IN ('low', 'medium', 'high', 'critical')),
    status     text NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE agent_keys (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    agent_id   text NOT NULL,
    kid        text NOT NULL CHECK (length(kid) BETWEEN 1 AND 128),
    public_jwk text NOT NULL CHECK (length(public_jwk) BETWEEN 2 AND 4096),
    status     text NOT NULL CHECK (status IN ('active', 'retired')),
    created_at timestamptz NOT NULL,
    retired_at timestamptz,
    PRIMARY KEY (tenant_id, agent_id, kid),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id),
    CHECK ((status = 'active') = (retired_at IS NULL))
);

-- Client assertions already used (RFC 7523 §3), by the SHA-256 of their
-- jti, until they expire. Not a record: expired rows are taken over or
-- pruned: the tenant role may delete from it.
CREATE TABLE assertion_jtis (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    jti_sha256 bytea NOT NULL CHECK (octet_length(jti_sha256) = 32),
    agent_id   text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, jti_sha256),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id)
);
CREATE INDEX assertion_jtis_by_expiry ON assertion_jtis (tenant_id, expires_at);

-- Counterparties: never deleted; only status, the sealed bank details
-- (AES-256-GCM under the master key, bound to tenant, table, row and
-- purpose — never clear text) and updated_at change.
CREATE TABLE counterparties (
    tenant_id           uuid NOT NULL REFERENCES tenants (id),
    id                  text NOT NULL CHECK (id ~ '^cp_[a-z2-7]{26}$'),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status              text NOT NULL CHECK (status IN ('new', 'verified', 'blocked')),
    bank_details_sealed bytea CHECK (octet_length(bank_details_sealed) BETWEEN 1 AND 16384),
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- Decisions (DESIGN §3) and the receipts of allowed (or approved) ones:
-- written once.
-- An Idempotency-Key (its SHA-256) is unique per agent.
CREATE TABLE decisions (
    tenant_id              uuid NOT NULL REFERENCES tenants (id),
    id                     text NOT NULL CHECK (id ~ '^dec_[a-z2-7]{26}$'),
    agent_id               text NOT NULL,
    action                 text NOT NULL CHECK (length(action) > 0),
    action_type            text NOT NULL CHECK (length(action_type) BETWEEN 1 AND 256),
    counterparty_id        text,
    reason                 text NOT NULL,
    outcome                text NOT NULL CHECK (outcome IN ('allow', 'deny', 'escalate')),
    reasons                text NOT NULL,
    approvals_required     integer NOT NULL CHECK (approvals_required BETWEEN 0 AND 100),
    base_revision          text NOT NULL,
    tenant_revision        text NOT NULL,
    tenant_bundle_sha256   text NOT NULL,
    idempotency_key_sha256 bytea CHECK (octet_length(idempotency_key_sha256) = 32),
    request_sha256         bytea NOT NULL CHECK (octet_length(request_sha256) = 32),
    ledger_index           bigint NOT NULL CHECK (ledger_index >= 0),
    response               text NOT NULL CHECK (length(response) > 0),
    created_at             timestamptz NOT NULL,
    -- The agent's running counts including this decision, and the time they
    -- run to (store.AgentTally): the policy input's agent.stats are
    -- differences of two of them.
    agent_seq              bigint NOT NULL CHECK (agent_seq > 0),
    agent_denials          bigint NOT NULL CHECK (agent_denials BETWEEN 0 AND agent_seq),
    agent_tally_at         timestamptz NOT NULL CHECK (agent_tally_at >= created_at),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id),
    FOREIGN KEY (tenant_id, counterparty_id) REFERENCES counterparties (tenant_id, id)
);
CREATE UNIQUE INDEX decisions_by_idempotency_key ON decisions (tenant_id, agent_id, idempotency_key_sha256)
    WHERE idempotency_key_sha256 IS NOT NULL;
-- The agent's latest tally, and its tally as of a moment: each a seek.
-- Agent ids are unique across organizations, so these indexes do not lead
-- with tenant_id: the primary key must be the only index a lookup by
-- (tenant_id, id) can use. The foreign-key checks of receipts and cases
-- plan that lookup once per connection, often before the table has been
-- analyzed; with (tenant_id, agent_id, created_at) here the planner took
-- this index at equal cost and filtered every decision of the
-- organization by id — a receipt insert growing linearly with them.
-- The tally is unique per organization: a duplicate in another's rows would
-- answer "conflict" where its foreign key answers "not found", telling an
-- organization that an agent id exists elsewhere.
CREATE UNIQUE INDEX decisions_by_agent_seq ON decisions (agent_id, tenant_id, agent_seq) INCLUDE (agent_denials, agent_tally_at);
CREATE INDEX decisions_by_agent_time ON decisions (agent_id, agent_tally_at, agent_seq) INCLUDE (agent_denials, tenant_id);

CREATE TABLE receipts (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    id           text NOT NULL CHECK (id ~ '^rct_[a-z2-7]{26}$'),
    decision_id  text NOT NULL,
    jws          text NOT NULL CHECK (length(jws) > 0),
    ledger_index bigint NOT NULL CHECK (ledger_index >= 0),
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, decision_id),
    FOREIGN KEY (tenant_id, decision_id) REFERENCES decisions (tenant_id, id)
);

-- Cases: one per escalated decision. Created pending, closed once
-- (approved, rejected or expired); a closed case never changes again, and
-- only status and updated_at ever change.
CREATE TABLE cases (
    tenant_id          uuid NOT NULL REFERENCES tenants (id),
    id                 text NOT NULL CHECK (id ~ '^case_[a-z2-7]{26}$'),
    decision_id        text NOT NULL,
    agent_id           text NOT NULL,
    status             text NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'expired')),
    approvals_required integer NOT NULL CHECK (approvals_required BETWEEN 1 AND 100),
    expires_at         timestamptz NOT NULL,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, decision_id),
    FOREIGN KEY (tenant_id, decision_id) REFERENCES decisions (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id)
);
CREATE INDEX cases_pending_by_expiry ON cases (tenant_id, expires_at) WHERE status = 'pending';

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['agents', 'agent_keys', 'assertion_jtis', 'counterparties', 'decisions', 'receipts', 'cases'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['decisions', 'receipts'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION app_refuse_mutation()', t || '_append_only', t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['agents', 'agent_keys', 'counterparties', 'decisions', 'receipts', 'cases'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION app_refuse_mutation()', t || '_no_truncate', t);
    END LOOP;
END
$$;

-- Column guards: the grants below already limit the tenant role to the
-- columns that may change; these stop the owner too, and enforce the
-- one-way transitions (revoked, retired and closed are final).
CREATE FUNCTION app_agents_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id OR NEW.id IS DISTINCT FROM OLD.id
       OR NEW.name IS DISTINCT FROM OLD.name OR NEW.sponsor IS DISTINCT FROM OLD.sponsor
       OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION 'append-only: an agent only changes status and risk tier' USING ERRCODE = 'AS001';
    END IF;
    IF OLD.status = 'revoked' AND NEW.status <> 'revoked' THEN
        RAISE EXCEPTION 'append-only: a revoked agent stays revoked' USING ERRCODE = 'AS001';
    END IF;
    RETURN NEW;
END
$$;
CREATE FUNCTION app_agent_keys_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id OR NEW.agent_id IS DISTINCT FROM OLD.agent_id
       OR NEW.kid IS DISTINCT FROM OLD.kid OR NEW.public_jwk IS DISTINCT FROM OLD.public_jwk
       OR NEW.created_at IS DISTINCT FROM OLD.created_at OR OLD.status = 'retired' THEN
        RAISE EXCEPTION 'append-only: an agent key is only ever retired, once' USING ERRCODE = 'AS001';
    END IF;
    RETURN NEW;
END
$$;
CREATE FUNCTION app_counterparties_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id OR NEW.id IS DISTINCT FROM OLD.id
       OR NEW.name IS DISTINCT FROM OLD.name OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION 'append-only: a counterparty only changes status and bank details' USING ERRCODE = 'AS001';
    END IF;
    RETURN NEW;
END
$$;
CREATE FUNCTION app_cases_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id OR NEW.id IS DISTINCT FROM OLD.id
       OR NEW.decision_id IS DISTINCT FROM OLD.decision_id OR NEW.agent_id IS DISTINCT FROM OLD.agent_id
       OR NEW.approvals_required IS DISTINCT FROM OLD.approvals_required
       OR NEW.expires_at IS DISTINCT FROM OLD.expires_at OR NEW.created_at IS DISTINCT FROM OLD.created_at
       OR OLD.status <> 'pending' THEN
        RAISE EXCEPTION 'append-only: a case only leaves pending, once' USING ERRCODE = 'AS001';
    END IF;
    RETURN NEW;
END
$$;
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['agents', 'agent_keys', 'counterparties', 'cases'] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %I() FROM PUBLIC', 'app_' || t || '_guard');
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION %I()', t || '_guard', t, 'app_' || t || '_guard');
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE (status, risk_tier, updated_at) ON agents TO {{tenant_role}};
GRANT SELECT, INSERT, UPDATE (status, retired_at) ON agent_keys TO {{tenant_role}};
GRANT SELECT, INSERT, UPDATE (agent_id, expires_at), DELETE ON assertion_jtis TO {{tenant_role}};
GRANT SELECT, INSERT, UPDATE (status, bank_details_sealed, updated_at) ON counterparties TO {{tenant_role}};
GRANT SELECT, INSERT ON decisions, receipts TO {{tenant_role}};
GRANT SELECT, INSERT, UPDATE (status, updated_at) ON cases TO {{tenant_role}};

-- Running counts of payments per counterparty, kept in step with decisions
-- (same transaction), so that building an input costs the same on the
-- millionth decision as on the first. Derived data: they change, decisions
-- do not.
CREATE TABLE counterparty_payments (
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    counterparty_id text NOT NULL,
    payments        bigint NOT NULL CHECK (payments >= 0),
    PRIMARY KEY (tenant_id, counterparty_id)
);
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['counterparty_payments'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE (payments) ON counterparty_payments TO {{tenant_role}};

-- ---------------------------------------------------------- platform log
-- The platform plane's own log and keys: the same shapes without tenant_id,
-- granted to the platform role only.
CREATE TABLE platform_ledger_entries (
    idx        bigint PRIMARY KEY CHECK (idx >= 0),
    entry      bytea NOT NULL CHECK (octet_length(entry) BETWEEN 1 AND 65536),
    leaf_hash  bytea NOT NULL CHECK (octet_length(leaf_hash) = 32),
    record     bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX platform_ledger_entries_by_leaf_hash ON platform_ledger_entries ((idx >> 12), leaf_hash);
CREATE TABLE platform_ledger_nodes (
    level smallint NOT NULL CHECK (level > 0 AND level % 8 = 0 AND level < 64),
    idx   bigint NOT NULL CHECK (idx >= 0),
    hash  bytea NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (level, idx)
);
CREATE TABLE platform_ledger_checkpoints (
    size           bigint PRIMARY KEY CHECK (size > 0),
    root           bytea NOT NULL CHECK (octet_length(root) = 32),
    range_hashes   bytea NOT NULL CHECK (octet_length(range_hashes) % 32 = 0),
    last_leaf_hash bytea NOT NULL CHECK (octet_length(last_leaf_hash) = 32),
    note           bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE platform_signing_keys (
    kid            text PRIMARY KEY CHECK (length(kid) BETWEEN 1 AND 128),
    purpose        text NOT NULL CHECK (purpose IN ('log', 'receipt', 'token')),
    algorithm      text NOT NULL,
    public_key     bytea NOT NULL,
    sealed_private bytea NOT NULL,
    status         text NOT NULL CHECK (status IN ('active', 'retired')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    retired_at     timestamptz
);
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['platform_ledger_entries', 'platform_ledger_nodes', 'platform_ledger_checkpoints'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION app_refuse_mutation()', t || '_append_only', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION app_refuse_mutation()', t || '_no_truncate', t);
    END LOOP;
END
$$;
CREATE TRIGGER platform_signing_keys_guard BEFORE UPDATE OR DELETE ON platform_signing_keys
    FOR EACH ROW EXECUTE FUNCTION app_signing_keys_guard();
CREATE TRIGGER platform_signing_keys_no_truncate BEFORE TRUNCATE ON platform_signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION app_refuse_mutation();
GRANT SELECT, INSERT ON platform_ledger_entries, platform_ledger_nodes, platform_ledger_checkpoints TO {{platform_role}};
GRANT SELECT, INSERT, UPDATE (status, retired_at) ON platform_signing_keys TO {{platform_role}};
