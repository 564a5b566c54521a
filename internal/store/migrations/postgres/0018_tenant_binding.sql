-- Row security confines a session to the organization app_tenant() names,
-- and app_tenant() names one only when the session proves the service set
-- it. Until now the policies trusted app.tenant_id, which any session may
-- set: whoever held the tenant role's credentials could read and write
-- every organization's rows by setting it.
--
-- The proof is app.tenant_mac = hex(HMAC-SHA256(K, tenant id ‖ "/" ‖
-- app_session())), app_session() naming this backend as no other backend
-- of the cluster, before or after, is named. K is derived from the master
-- key; the database keeps it as HMAC's two padded blocks (K ⊕ ipad,
-- K ⊕ opad, 64 bytes each) in a table only the owner role may read, so no
-- app role can compute a MAC, and one the service computed holds only on
-- the connection it was computed for. Migrate installs the key, as the
-- owner, in the transaction that applies this migration; no app role may
-- install or read it.

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

-- Whether a key is installed, for Open to say "run migrate" rather than
-- "wrong master key".
CREATE FUNCTION app_tenant_binding_installed() RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM public.app_tenant_binding);
END
$$;
REVOKE ALL ON FUNCTION app_tenant_binding_installed() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_tenant_binding_installed() TO {{tenant_role}};

-- This backend: its pid, its start to the microsecond, and the database.
-- A pid alone is reused by a later backend, which could replay a MAC seen
-- once (in a log, say); pid and start time together name one backend of
-- the cluster, and the database one of its databases. Run as the querying
-- role, which may read its own backend's start (a role without the
-- session's privileges, the owner in a SECURITY DEFINER function for one,
-- reads NULL): so the policies pass it to app_tenant(). The service reads
-- it once per connection.
CREATE FUNCTION app_session() RETURNS text
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE s text;
BEGIN
    SELECT a.pid::text || '/' || (extract(epoch FROM a.backend_start) * 1000000)::bigint::text || '/' || current_database()
        INTO s FROM pg_stat_get_activity(pg_backend_pid()) a;
    RETURN s;
END
$$;
REVOKE ALL ON FUNCTION app_session() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_session() TO {{tenant_role}};

-- The organization session p_session (app_session(), as the policies
-- pass it) is confined to, or NULL: app.tenant_id when app.tenant_mac
-- proves it for that session, else nothing. A caller may pass any
-- session, but gains nothing by it: the policies pass their own.
-- PL/pgSQL, so its plan is cached per session (see app_tenant_directory in
-- 0001); STABLE, so that the policies evaluate it once per statement, as
-- an InitPlan. The MACs are compared as digests, so that the comparison's
-- time says nothing of where a wrong guess first differs.
CREATE FUNCTION app_tenant(p_session text) RETURNS uuid
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text := current_setting('app.tenant_id', true);
    m text := current_setting('app.tenant_mac', true);
    k record;
BEGIN
    IF t IS NULL OR t = '' OR m IS NULL OR m = '' OR p_session IS NULL OR p_session = '' THEN
        RETURN NULL;
    END IF;
    SELECT b.ipad, b.opad INTO k FROM public.app_tenant_binding b;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF sha256(convert_to(m, 'UTF8')) = sha256(convert_to(encode(
            sha256(k.opad || sha256(k.ipad || convert_to(t || '/' || p_session, 'UTF8'))), 'hex'), 'UTF8')) THEN
        RETURN t::uuid;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION app_tenant(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_tenant(text) TO {{tenant_role}};

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
        EXECUTE format('ALTER POLICY tenant_isolation ON %I USING (tenant_id = (SELECT app_tenant(app_session()))) '
            'WITH CHECK (tenant_id = (SELECT app_tenant(app_session())))', r.tablename);
        n := n + 1;
    END LOOP;
    IF n <> 16 THEN
        RAISE EXCEPTION 'expected 16 tenant_isolation policies, found %', n;
    END IF;
END
$$;

-- An agent id is registered for the organization the caller's session is
-- bound to, and only in the form the service makes (store.CheckID). The
-- caller passes its app_session(), which this function, as the owner,
-- cannot read; a session of another backend is refused by its pid.
DROP FUNCTION app_register_agent(text);
CREATE FUNCTION app_register_agent(p_agent_id text, p_session text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE t uuid;
BEGIN
    IF split_part(p_session, '/', 1) IS DISTINCT FROM pg_backend_pid()::text THEN
        RAISE EXCEPTION 'not this session' USING ERRCODE = '42501';
    END IF;
    t := public.app_tenant(p_session);
    IF t IS NULL THEN
        RAISE EXCEPTION 'no tenant in this transaction' USING ERRCODE = '42501';
    END IF;
    IF p_agent_id IS NULL OR p_agent_id !~ '^agt_[2-7a-z]{26}$' THEN
        RAISE EXCEPTION 'agent id must be agt_ and 26 base32 characters' USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO public.agent_directory (agent_id, tenant_id) VALUES (p_agent_id, t);
END
$$;
REVOKE ALL ON FUNCTION app_register_agent(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_register_agent(text, text) TO {{tenant_role}};
