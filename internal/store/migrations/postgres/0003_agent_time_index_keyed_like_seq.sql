-- An agent's stats seek the newest decision at or before each window's
-- start in decisions_by_agent_time. That index kept tenant_id among its
-- included columns, so only decisions_by_agent_seq had both equalities of
-- the seek, (agent_id, tenant_id), as index conditions. A plan made
-- without statistics on a table of thousands of decisions, which a new
-- or invalidated cached plan is, then took decisions_by_agent_seq: it
-- read every decision of the agent, filtered by time and sorted them,
-- twice per request, and the service slowed as the agent's history grew
-- (1,100-1,700 decisions/s down to 250-400 in the load test, whenever
-- other work on the server invalidated the pool's plans). With the same
-- equality prefix, the time index is cheaper by any estimate: it also
-- bounds the time and gives the order.
DROP INDEX decisions_by_agent_time;
CREATE INDEX decisions_by_agent_time ON decisions (agent_id, tenant_id, agent_tally_at, agent_seq) INCLUDE (agent_denials);
