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
-- function returns the public directory entry of one organization.
CREATE FUNCTION app_tenant_directory(p_slug text, p_id uuid)
RETURNS TABLE (id uuid, slug text, status text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.id, t.slug, t.status FROM public.tenants t
    WHERE t.slug = p_slug OR t.id = p_id
$$;
REVOKE ALL ON FUNCTION app_tenant_directory(text, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_tenant_directory(text, uuid) TO {{tenant_role}};

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
CREATE INDEX ledger_entries_by_leaf_hash ON ledger_entries (tenant_id, leaf_hash);

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
CREATE INDEX platform_ledger_entries_by_leaf_hash ON platform_ledger_entries (leaf_hash);
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
