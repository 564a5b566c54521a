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

CREATE TABLE ledger_entries (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    idx        bigint NOT NULL CHECK (idx >= 0),
    entry      bytea NOT NULL CHECK (octet_length(entry) BETWEEN 1 AND 65536),
    leaf_hash  bytea NOT NULL CHECK (octet_length(leaf_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, idx)
);
ALTER TABLE ledger_entries ENABLE ROW LEVEL SECURITY;
ALTER TABLE ledger_entries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ledger_entries
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION app_refuse_mutation();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION app_refuse_mutation();
-- Append-only: no UPDATE, DELETE or TRUNCATE grant.
GRANT SELECT, INSERT ON ledger_entries TO {{tenant_role}};
