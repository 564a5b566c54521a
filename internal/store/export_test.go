package store

// MaxTenantRefs is maxTenantRefs, for the external tests.
const MaxTenantRefs = maxTenantRefs
