package decision_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
)

// An outcome whose decision is certainly not stored stops counting for
// the agent's other requests (turns): here request A is decided and its
// batch held until request B of the same agent has read the store; then
// A's decision fails to be stored, and B, evaluated after A ended, must
// count only what the store holds. The tenant policy denies every request
// with the count it saw, so B's reason shows it.
func TestUnstoredOutcomeStopsCounting(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			for _, tc := range []struct {
				name string
				// prepare makes the one decision the store holds before B
				// reads, and returns A's Idempotency-Key.
				prepare func(t *testing.T, e *serviceEnv, s *stallingBackend, agentID string) string
				// aErr checks A's error.
				aErr func(error) bool
			}{
				{
					// A's rows fail to be written in its batch (the
					// entries stay in the log): the agent gets an error.
					name: "row write failed",
					prepare: func(t *testing.T, e *serviceEnv, s *stallingBackend, agentID string) string {
						e.decide(t, agentID, action("report.archive"), "")
						s.failRecord.Store(true)
						return ""
					},
					aErr: func(err error) bool { return err != nil && !errors.Is(err, decision.ErrIdempotencyMismatch) },
				},
				{
					// Another process stored a decision under A's
					// Idempotency-Key between A's read and A's batch: the
					// batch's check finds it, and A's never reaches the
					// log. That other decision counts, A's does not.
					name: "Idempotency-Key taken",
					prepare: func(t *testing.T, e *serviceEnv, s *stallingBackend, agentID string) string {
						const key = "pay-once"
						sum := sha256.Sum256([]byte(key))
						s.afterFirstRead = func() {
							// In A's goroutine: t.Error, not t.Fatal.
							err := e.backend.InTenantTx(context.Background(), e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
								_, err := tx.Decisions().Insert(ctx, store.Decision{
									AgentID: agentID, Action: `{"type":"report.archive"}`, ActionType: "report.archive",
									Reason: "elsewhere", Outcome: store.OutcomeDeny, Reasons: []string{"elsewhere"},
									BaseRevision: "b", IdempotencyKeySHA256: sum[:], RequestSHA256: make([]byte, 32),
									Response: `{"decision_id":"x","outcome":"deny","reasons":["elsewhere"]}`,
								})
								return err
							})
							if err != nil {
								t.Error(err)
							}
						}
						return key
					},
					// The stored decision was made for another request
					// (its request digest differs).
					aErr: func(err error) bool { return errors.Is(err, decision.ErrIdempotencyMismatch) },
				},
			} {
				t.Run(tc.name, func(t *testing.T) {
					e := newServiceEnv(t, kind)
					e.activate(t, regoBundle(t, "count-1", `package tenant

decision := {"deny": [sprintf("seen_%d", [input.agent.stats.decisions_1h])]}
`))
					agent := e.agent(t, store.RiskLow)
					s := &stallingBackend{Backend: e.backend, bRead: make(chan struct{}), aDone: make(chan struct{})}
					svc := e.serviceOverStalling(t, s)
					key := tc.prepare(t, e, s, agent.ID)

					var aErr error
					var wg sync.WaitGroup
					wg.Go(func() {
						defer close(s.aDone)
						_, aErr = svc.Decide(context.Background(), e.org, agent.ID, action("report.archive"), key)
					})
					<-s.aHeld() // A is decided, its batch open
					b, err := svc.Decide(context.Background(), e.org, agent.ID, action("report.archive"), "")
					wg.Wait()
					if !tc.aErr(aErr) {
						t.Fatalf("A: %v", aErr)
					}
					if err != nil {
						t.Fatalf("B: %v", err)
					}
					if want := []string{"seen_1"}; !slices.Equal(b.Reasons, want) {
						t.Errorf("B's reasons %q, want %q: B counted A's decision, which is not stored", b.Reasons, want)
					}
				})
			}
		})
	}
}

// serviceOverStalling is a service whose store and ledger go through s.
func (e *serviceEnv) serviceOverStalling(t *testing.T, s *stallingBackend) *decision.Service {
	t.Helper()
	_, _, svc := e.newServiceOver(t, e.newLedgerOver(t, s), s, bundles.Limits{}, decision.Config{})
	return svc
}

// stallingBackend holds request A's ledger batch, at its Idempotency-Key
// check or at its rows' write, until request B has read the store; B then
// waits after its read until A has ended.
type stallingBackend struct {
	store.Backend
	failRecord     atomic.Bool // fail the next rows write
	afterFirstRead func()      // after A's read

	mu       sync.Mutex
	reads    int
	held     chan struct{} // closed once A's batch is held
	bRead    chan struct{} // closed once B has read
	aDone    chan struct{} // closed once A's Decide returned
	heldOnce sync.Once
}

func (s *stallingBackend) aHeld() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held == nil {
		s.held = make(chan struct{})
	}
	return s.held
}

func (s *stallingBackend) ReadDecisionInputs(ctx context.Context, tenantID string, q store.DecisionInputsQuery) (store.DecisionInputs, error) {
	in, err := s.Backend.ReadDecisionInputs(ctx, tenantID, q)
	s.mu.Lock()
	s.reads++
	n := s.reads
	s.mu.Unlock()
	switch n {
	case 1: // A
		if s.afterFirstRead != nil {
			s.afterFirstRead()
		}
	case 2: // B: let A's batch go on, and evaluate only once A ended
		close(s.bRead)
		<-s.aDone
	}
	return in, err
}

func (s *stallingBackend) InTenantTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	return s.Backend.InTenantTx(ctx, tenantID, func(ctx context.Context, tx store.TenantTx) error {
		return fn(ctx, stallingTx{TenantTx: tx, s: s})
	})
}

// hold is where A's batch waits for B's read.
func (s *stallingBackend) hold() {
	s.heldOnce.Do(func() { close(s.aHeld()) })
	<-s.bRead
}

type stallingTx struct {
	store.TenantTx
	s *stallingBackend
}

func (t stallingTx) Decisions() store.DecisionTx {
	return stallingDecisions{DecisionTx: t.TenantTx.Decisions(), s: t.s}
}

type stallingDecisions struct {
	store.DecisionTx
	s *stallingBackend
}

func (d stallingDecisions) ByIdempotencyKey(ctx context.Context, agentID string, keySHA256 []byte) (store.Decision, error) {
	d.s.hold()
	return d.DecisionTx.ByIdempotencyKey(ctx, agentID, keySHA256)
}

func (d stallingDecisions) Record(ctx context.Context, r store.DecisionRecord) error {
	d.s.hold()
	if d.s.failRecord.CompareAndSwap(true, false) {
		return fmt.Errorf("%w: test: the row is not written", store.ErrUnavailable)
	}
	return d.DecisionTx.Record(ctx, r)
}
