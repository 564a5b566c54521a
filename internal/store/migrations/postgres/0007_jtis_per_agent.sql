-- A client assertion's jti is remembered per agent, not per organization
-- (RFC 7519 §4.1.7 makes a jti unique per issuer, and each agent is one):
-- with the organization's agents sharing one namespace, an agent that
-- could predict another's jtis (a counter, a time-based UUID) could use
-- them first and have that agent's own assertions refused as replays.
-- Stop every replica of an older build before this runs: its ON CONFLICT
-- names the old key, and its token requests would fail.
ALTER TABLE assertion_jtis
    DROP CONSTRAINT assertion_jtis_pkey,
    ADD PRIMARY KEY (tenant_id, agent_id, jti_sha256);
-- A row is taken over only by its own agent now: agent_id never changes.
REVOKE UPDATE (agent_id) ON assertion_jtis FROM {{tenant_role}};
