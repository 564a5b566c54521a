-- The platform plane reads no organization's agents: the agent directory
-- (which organization an agent id belongs to) is written by the tenant
-- plane through app_register_agent and read through app_agent_tenant, both
-- SECURITY DEFINER. The SELECT the platform role had on it let it list
-- every organization's agent ids (DESIGN §1: never tenant data), and no
-- platform query used it.
REVOKE SELECT ON agent_directory FROM {{platform_role}};
