-- A client assertion's jti is remembered per agent, not per organization
-- (RFC 7519 §4.1.7 makes a jti unique per issuer, and each agent is one):
-- with the organization's agents sharing one namespace, an agent that
-- could predict another's jtis (a counter, a time-based UUID) could use
-- them first and have that agent's own assertions refused as replays.
-- SQLite cannot change a primary key in place: the table is made again
-- and its rows copied.
CREATE TABLE assertion_jtis_0004 (
    tenant_id  TEXT NOT NULL,
    jti_sha256 BLOB NOT NULL CHECK (length(jti_sha256) = 32),
    agent_id   TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, jti_sha256),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id)
) STRICT;
INSERT INTO assertion_jtis_0004 (tenant_id, jti_sha256, agent_id, expires_at)
SELECT tenant_id, jti_sha256, agent_id, expires_at FROM assertion_jtis;
DROP TABLE assertion_jtis;
ALTER TABLE assertion_jtis_0004 RENAME TO assertion_jtis;
CREATE INDEX assertion_jtis_by_expiry ON assertion_jtis (tenant_id, expires_at);
