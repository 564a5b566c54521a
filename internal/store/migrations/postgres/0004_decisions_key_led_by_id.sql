-- The decisions primary key leads with id: (id, tenant_id), not
-- (tenant_id, id). It still serves every lookup of one decision (both
-- columns are given) and the foreign keys of receipts and cases; it no
-- longer serves a scan of an organization's decisions, which nothing
-- wants.
--
-- Led by tenant_id, it offered every statement that names the
-- organization a plan for its equality alone. Without statistics the
-- planner estimates that equality to keep one row in two hundred, where
-- it keeps them all (one organization's rows per database, typically).
-- On a table of about a hundred decisions, the primary key was then a
-- level shorter than decisions_by_agent_seq, and cheaper by that margin:
-- a connection planning then took it for the agent's latest tally, in the
-- decisions insert and in the stats. That plan reads every decision of
-- the organization and sorts them, each batch and each request, and the
-- connection keeps it: nothing invalidates it until the table is
-- analyzed, which with autovacuum off is never. Load runs fell to a
-- sixth of their rate (about 2,000 decisions/s to 320), or not, according to
-- when the pool's connections first planned. Led by id, the key has
-- nothing to offer a statement that does not give the id.
--
-- The foreign keys depend on the key's index: they are dropped and made
-- again, which checks every receipt and case once. The three tables are
-- locked first, in the order the store writes them, and stay unavailable
-- while the key is built. Row security is forced on them, for the owner
-- too, and would hide every row from that check: it is lifted inside
-- this migration's transaction, as 0002 does.
LOCK TABLE decisions, receipts, cases IN ACCESS EXCLUSIVE MODE;
ALTER TABLE decisions NO FORCE ROW LEVEL SECURITY;
ALTER TABLE receipts NO FORCE ROW LEVEL SECURITY;
ALTER TABLE cases NO FORCE ROW LEVEL SECURITY;
ALTER TABLE receipts DROP CONSTRAINT receipts_tenant_id_decision_id_fkey;
ALTER TABLE cases DROP CONSTRAINT cases_tenant_id_decision_id_fkey;
ALTER TABLE decisions DROP CONSTRAINT decisions_pkey;
ALTER TABLE decisions ADD CONSTRAINT decisions_pkey PRIMARY KEY (id, tenant_id);
ALTER TABLE receipts ADD CONSTRAINT receipts_tenant_id_decision_id_fkey
    FOREIGN KEY (tenant_id, decision_id) REFERENCES decisions (tenant_id, id);
ALTER TABLE cases ADD CONSTRAINT cases_tenant_id_decision_id_fkey
    FOREIGN KEY (tenant_id, decision_id) REFERENCES decisions (tenant_id, id);
ALTER TABLE decisions FORCE ROW LEVEL SECURITY;
ALTER TABLE receipts FORCE ROW LEVEL SECURITY;
ALTER TABLE cases FORCE ROW LEVEL SECURITY;
