package postgres

import "github.com/jackc/pgx/v5/pgxpool"

// Test hooks for the external postgres_test package (which imports pgtest,
// which imports this package).
var (
	MapErr = mapErr
	Ident  = ident
	// MigrateTo builds a database of an earlier version, to upgrade it.
	MigrateTo = migrateTo
)

func TenantPool(s *Store) *pgxpool.Pool { return s.tenant }

func PlatformPool(s *Store) *pgxpool.Pool { return s.platform }

// AgentStatsQuery is DecisionTx.AgentStats' statement, for its plan test.
const AgentStatsQuery = agentStatsQuery

// InsertReceiptsSQL is the pipeline's receipt insert, for its plan test.
const InsertReceiptsSQL = insertReceiptsSQL

// InsertDecisionsSQL is the pipeline's decisions insert, for its plan test.
const InsertDecisionsSQL = insertDecisionsSQL

// DecisionByKeySQL is the Idempotency-Key lookup, for its plan test.
const DecisionByKeySQL = decisionByKeySQL

// InsertCaseSQL and CloseCaseSQL are CaseTx's writes, for their plan test.
const (
	InsertCaseSQL = insertCaseSQL
	CloseCaseSQL  = closeCaseSQL
)

// DecisionInputsSQL is ReadDecisionInputs' statement, for its plan test.
const DecisionInputsSQL = decisionInputsSQL

// ReceiptByDecisionSQL and CaseByIDSQL are single-row reads, for their
// plan test.
const (
	ReceiptByDecisionSQL = receiptByDecisionSQL
	CaseByIDSQL          = caseByIDSQL
)

// SessionMAC is the MAC that binds a backend (its app_session()), for
// tests that bind a raw connection as the store does.
var SessionMAC = sessionMAC

// LeafHashQuery is EntryByLeafHash's statement for a tenant's log ("" for
// the platform's), for its plan test.
func LeafHashQuery(tenantID string, last int64, leafHash []byte) (string, []any) {
	scope := platformScope
	if tenantID != "" {
		scope = logScope{tenantID: tenantID}
	}
	return (&logTx{logScope: scope}).leafHashQuery(last, leafHash)
}
