-- Row security confined a session to app.tenant_id, which any session may
-- set: whoever held the tenant role's credentials could read and write
-- every organization's rows by setting it. Now the policies also ask that
-- the session be bound: that it called app_bind_session() with a MAC only
-- the service can make.
--
-- The MAC is hex(HMAC-SHA256(K, "session/" ‖ name)), over a name the
-- session drew with app_session(): a number from the owner's sequence
-- app_session_names, never drawn twice, and the database. K is derived
-- from the master key; the database keeps it as HMAC's two padded blocks
-- (K ⊕ ipad, K ⊕ opad, 64 bytes each) in a table only the owner role may
-- read, so no app role can make a MAC, and a MAC seen once (in a log, say)
-- binds no other session: no other session can hold its name. Migrate
-- installs the key, as the owner, in the transaction that applies this
-- migration; no app role may install or read it.
--
-- A bound session is marked by the owner's sequence app_bound_sessions
-- having a current value in it: currval() is the session's own, defined
-- only once nextval() ran in it, and only app_bind_session() may run
-- nextval() (the tenant role may read the sequence, not advance or set
-- it). Reading currval() costs the policies next to nothing, where
-- checking a MAC on every statement cost each table a function call.
--
-- Every grant below is revoked from the app roles first, by name: a
-- default privilege of the owner's, or a GRANT … ON ALL …, must not give
-- them more.

CREATE TABLE app_tenant_binding (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    ipad       bytea NOT NULL CHECK (length(ipad) = 64),
    opad       bytea NOT NULL CHECK (length(opad) = 64),
    created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON app_tenant_binding FROM PUBLIC, {{tenant_role}}, {{platform_role}};
CREATE TRIGGER app_tenant_binding_append_only BEFORE UPDATE OR DELETE ON app_tenant_binding
    FOR EACH ROW EXECUTE FUNCTION app_refuse_mutation();
CREATE TRIGGER app_tenant_binding_no_truncate BEFORE TRUNCATE ON app_tenant_binding
    FOR EACH STATEMENT EXECUTE FUNCTION app_refuse_mutation();

CREATE SEQUENCE app_bound_sessions;
REVOKE ALL ON SEQUENCE app_bound_sessions FROM PUBLIC, {{tenant_role}}, {{platform_role}};
GRANT SELECT ON SEQUENCE app_bound_sessions TO {{tenant_role}};
CREATE SEQUENCE app_session_names;
REVOKE ALL ON SEQUENCE app_session_names FROM PUBLIC, {{tenant_role}}, {{platform_role}};

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
REVOKE ALL ON FUNCTION app_tenant_binding_installed() FROM PUBLIC, {{tenant_role}}, {{platform_role}};
GRANT EXECUTE ON FUNCTION app_tenant_binding_installed() TO {{tenant_role}};

-- Draws a new name for this session and returns it: a number of the
-- owner's sequence, which no session draws twice, and the database (whose
-- sequence it is). app_bind_session() reads the session's last draw.
CREATE FUNCTION app_session() RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN nextval('public.app_session_names')::text || '/' || current_database();
END
$$;
REVOKE ALL ON FUNCTION app_session() FROM PUBLIC, {{tenant_role}}, {{platform_role}};
GRANT EXECUTE ON FUNCTION app_session() TO {{tenant_role}};

-- Binds the calling session when p_mac is the MAC of its name (its last
-- app_session(); a session that drew none fails), and says whether it
-- did. The MACs are compared as digests, so that the comparison's time
-- says nothing of where a wrong guess first differs.
CREATE FUNCTION app_bind_session(p_mac text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE k record;
BEGIN
    SELECT b.ipad, b.opad INTO k FROM public.app_tenant_binding b;
    IF NOT FOUND OR p_mac IS NULL THEN
        RETURN false;
    END IF;
    IF sha256(convert_to(p_mac, 'UTF8')) IS DISTINCT FROM sha256(convert_to(encode(
            sha256(k.opad || sha256(k.ipad || convert_to('session/' || currval('public.app_session_names')::text
                || '/' || current_database(), 'UTF8'))), 'hex'), 'UTF8')) THEN
        RETURN false;
    END IF;
    PERFORM nextval('public.app_bound_sessions');
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION app_bind_session(text) FROM PUBLIC, {{tenant_role}}, {{platform_role}};
GRANT EXECUTE ON FUNCTION app_bind_session(text) TO {{tenant_role}};

-- Every tenant table's policy now asks for a bound session: in one that is
-- not, currval() fails the statement. The sub-select makes it an InitPlan,
-- one evaluation per statement, whose value the index conditions use as
-- they used the setting.
DO $$
DECLARE
    r record;
    n integer := 0;
BEGIN
    FOR r IN SELECT p.tablename FROM pg_policies p
            WHERE p.schemaname = current_schema() AND p.policyname = 'tenant_isolation' LOOP
        EXECUTE format('ALTER POLICY tenant_isolation ON %I '
            'USING (tenant_id = (SELECT NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid WHERE currval(''app_bound_sessions'') > 0)) '
            'WITH CHECK (tenant_id = (SELECT NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid WHERE currval(''app_bound_sessions'') > 0))',
            r.tablename);
        n := n + 1;
    END LOOP;
    IF n <> 16 THEN
        RAISE EXCEPTION 'expected 16 tenant_isolation policies, found %', n;
    END IF;
END
$$;

-- An agent id is registered for the organization of the current
-- transaction, by a bound session only, and only in the form the service
-- makes (store.CheckID).
CREATE OR REPLACE FUNCTION app_register_agent(p_agent_id text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE t uuid := NULLIF(current_setting('app.tenant_id', true), '')::uuid;
BEGIN
    PERFORM currval('public.app_bound_sessions');
    IF t IS NULL THEN
        RAISE EXCEPTION 'no tenant in this transaction' USING ERRCODE = '42501';
    END IF;
    IF p_agent_id IS NULL OR p_agent_id !~ '^agt_[2-7a-z]{26}$' THEN
        RAISE EXCEPTION 'agent id must be agt_ and 26 base32 characters' USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO public.agent_directory (agent_id, tenant_id) VALUES (p_agent_id, t);
END
$$;
