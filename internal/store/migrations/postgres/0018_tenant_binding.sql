-- Row security confines a session to the organization app_tenant() names,
-- and app_tenant() names one only when the session proves the service set
-- it. Until now the policies trusted app.tenant_id, which any session may
-- set: whoever held the tenant role's credentials could read and write
-- every organization's rows by setting it.
--
-- The proof is app.tenant_mac = hex(HMAC-SHA256(K, tenant id ‖ "/" ‖
-- the backend's pid)). K is derived from the master key; the database
-- keeps it as HMAC's two padded blocks (K ⊕ ipad, K ⊕ opad, 64 bytes each)
-- in a table only the owner role may read, so no app role can compute a
-- MAC, and one the service computed holds only on the connection it was
-- computed for. The platform role installs the key once, on the first
-- start after this migration, and is told afterwards only whether the key
-- it offers is the one installed.

CREATE TABLE app_tenant_binding (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    ipad       bytea NOT NULL CHECK (length(ipad) = 64),
    opad       bytea NOT NULL CHECK (length(opad) = 64),
    created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON app_tenant_binding FROM PUBLIC;
CREATE TRIGGER app_tenant_binding_append_only BEFORE UPDATE OR DELETE ON app_tenant_binding
    FOR EACH ROW EXECUTE FUNCTION app_refuse_mutation();
CREATE TRIGGER app_tenant_binding_no_truncate BEFORE TRUNCATE ON app_tenant_binding
    FOR EACH STATEMENT EXECUTE FUNCTION app_refuse_mutation();

-- Installs the key when none is, and says whether p_ipad, p_opad are the
-- key installed. The comparison is of digests, so that its time says
-- nothing of where a wrong guess first differs.
CREATE FUNCTION app_install_tenant_binding(p_ipad bytea, p_opad bytea) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO public.app_tenant_binding (ipad, opad) VALUES (p_ipad, p_opad)
        ON CONFLICT (one) DO NOTHING;
    RETURN EXISTS (SELECT 1 FROM public.app_tenant_binding b
        WHERE sha256(b.ipad || b.opad) = sha256(p_ipad || p_opad));
END
$$;
REVOKE ALL ON FUNCTION app_install_tenant_binding(bytea, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_install_tenant_binding(bytea, bytea) TO {{platform_role}};

-- The organization this session is confined to, or NULL: app.tenant_id
-- when app.tenant_mac proves it for this backend, else nothing. PL/pgSQL,
-- so its plan is cached per session (see app_tenant_directory in 0001);
-- STABLE, so that the policies below evaluate it once per statement, as an
-- InitPlan. The MACs are compared as digests, as above.
CREATE FUNCTION app_tenant() RETURNS uuid
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text := current_setting('app.tenant_id', true);
    m text := current_setting('app.tenant_mac', true);
    k record;
BEGIN
    IF t IS NULL OR t = '' OR m IS NULL OR m = '' THEN
        RETURN NULL;
    END IF;
    SELECT b.ipad, b.opad INTO k FROM public.app_tenant_binding b;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF sha256(convert_to(m, 'UTF8')) = sha256(convert_to(encode(
            sha256(k.opad || sha256(k.ipad || convert_to(t || '/' || pg_backend_pid()::text, 'UTF8'))), 'hex'), 'UTF8')) THEN
        RETURN t::uuid;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION app_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_tenant() TO {{tenant_role}};

-- Every tenant table's policy now asks app_tenant(). The sub-select makes
-- it an InitPlan: one call per statement, its value a parameter the index
-- conditions use as they used the setting.
DO $$
DECLARE
    r record;
    n integer := 0;
BEGIN
    FOR r IN SELECT p.tablename FROM pg_policies p
            WHERE p.schemaname = current_schema() AND p.policyname = 'tenant_isolation' LOOP
        EXECUTE format('ALTER POLICY tenant_isolation ON %I USING (tenant_id = (SELECT app_tenant())) '
            'WITH CHECK (tenant_id = (SELECT app_tenant()))', r.tablename);
        n := n + 1;
    END LOOP;
    IF n <> 16 THEN
        RAISE EXCEPTION 'expected 16 tenant_isolation policies, found %', n;
    END IF;
END
$$;

-- An agent id is registered for the session's proven organization, and
-- only in the form the service makes (store.CheckID).
CREATE OR REPLACE FUNCTION app_register_agent(p_agent_id text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE t uuid := public.app_tenant();
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'no tenant in this transaction' USING ERRCODE = '42501';
    END IF;
    IF p_agent_id IS NULL OR p_agent_id !~ '^agt_[2-7a-z]{26}$' THEN
        RAISE EXCEPTION 'agent id must be agt_ and 26 base32 characters' USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO public.agent_directory (agent_id, tenant_id) VALUES (p_agent_id, t);
END
$$;
