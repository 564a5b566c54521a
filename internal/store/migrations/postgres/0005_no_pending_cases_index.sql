-- cases_pending_by_expiry (tenant_id, expires_at) WHERE status = 'pending'
-- served no statement, and misled one: closing a case (UPDATE … WHERE
-- tenant_id = $3 AND id = $4 AND status = 'pending') satisfies its
-- predicate, so the planner could use it for the organization's equality
-- alone. Without statistics it did, at every size: each approval read
-- every pending case of the organization. An expiry sweep that needs an
-- index will lead it with expires_at.
DROP INDEX cases_pending_by_expiry;
