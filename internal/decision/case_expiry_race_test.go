package decision_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
)

// beforeNextBatch is the store a ledger writes through, on which fn, once
// set, runs just before the ledger's next transaction begins: what another
// process does in between, committed before the batch takes the log's
// lock.
type beforeNextBatch struct {
	store.TenantStore
	mu  sync.Mutex
	fn  func(context.Context) error
	ran bool
}

func (s *beforeNextBatch) set(fn func(context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fn, s.ran = fn, false
}

func (s *beforeNextBatch) hasRun() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ran
}

func (s *beforeNextBatch) InTenantTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	s.mu.Lock()
	before := s.fn
	s.fn = nil
	s.mu.Unlock()
	if before != nil {
		if err := before(ctx); err != nil {
			return err
		}
		s.mu.Lock()
		s.ran = true
		s.mu.Unlock()
	}
	return s.TenantStore.InTenantTx(ctx, tenantID, fn)
}

// A pending case read past its expiry, but closed by someone else after
// the read saw it pending and before the expiry's batch runs, is not
// expired: the batch's precondition finds it closed, no "case.expired"
// entry is appended, and the read answers, without an error, with the case
// as it now stands.
func TestCaseClosedBeforeItsExpiryIsRecorded(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e, agent, id := escalatedCase(t, kind)
			ctx := context.Background()

			// The reader is a process whose ledger writes through tenants.
			tenants := &beforeNextBatch{TenantStore: e.backend}
			_, _, reader := e.newService(t, e.newLedgerOver(t, tenants), decision.Config{})

			e.clock.Advance(decision.DefaultCaseLifetime + time.Minute)
			size := e.ledgerSize(t)
			// An approver rejects the case once the reader has seen it
			// pending and gone to record its expiry.
			tenants.set(func(ctx context.Context) error {
				return e.backend.InTenantTx(ctx, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
					return tx.Cases().SetStatus(ctx, id, store.CaseRejected)
				})
			})
			v, err := reader.GetCase(ctx, e.org, agent.ID, id)
			if !tenants.hasRun() {
				t.Fatalf("the reader never went to record the expiry (%+v, %v)", v, err)
			}
			if err != nil || v.ID != id || v.Status != store.CaseRejected || v.Receipt != "" {
				t.Errorf("read while the case was closed: %+v, %v; want it rejected, no error", v, err)
			}
			if got := e.ledgerSize(t); got != size {
				t.Fatalf("the log grew by %d entries, want none", got-size)
			}
			for i := range size {
				if got, _ := e.entryAt(t, i); got.Kind == decision.KindCaseExpired {
					t.Fatalf("entry %d records the closed case's expiry: %+v", i, got)
				}
			}
			// It stays as it was closed, for this reader and the other.
			for name, s := range map[string]*decision.Service{"reader": reader, "other": e.service} {
				if v, err := s.GetCase(ctx, e.org, agent.ID, id); err != nil || v.Status != store.CaseRejected {
					t.Fatalf("%s reads again: %+v, %v", name, v, err)
				}
			}
			if got := e.ledgerSize(t); got != size {
				t.Fatalf("reading again grew the log by %d entries", got-size)
			}
		})
	}
}

// A read whose caller gives up while the case's expiry is being recorded
// (a long poll whose client left, or whose server began to stop) answers
// with the case as the expiry left it, not the pending case it read
// before: the ledger writer had taken the expiry, which committed.
func TestCaseExpiryRecordedAsItsReaderLeaves(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e, agent, id := escalatedCase(t, kind)
			tenants := &beforeNextBatch{TenantStore: e.backend}
			_, _, reader := e.newService(t, e.newLedgerOver(t, tenants), decision.Config{})
			e.clock.Advance(decision.DefaultCaseLifetime + time.Minute)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// The caller leaves as the expiry's batch begins.
			tenants.set(func(context.Context) error { cancel(); return nil })
			v, err := reader.GetCase(ctx, e.org, agent.ID, id)
			if !tenants.hasRun() {
				t.Fatalf("the reader never went to record the expiry (%+v, %v)", v, err)
			}
			if err != nil || v.Status != store.CaseExpired {
				t.Fatalf("read as its caller left: %+v, %v; want the case expired", v, err)
			}
		})
	}
}

// closingCases is the store a ledger writes through, whose case closes
// call before, once set, and fail while failures remain.
type closingCases struct {
	store.TenantStore
	mu       sync.Mutex
	failures int
	before   func()
}

func (s *closingCases) InTenantTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	return s.TenantStore.InTenantTx(ctx, tenantID, func(ctx context.Context, tx store.TenantTx) error {
		return fn(ctx, closingTx{tx, s})
	})
}

type closingTx struct {
	store.TenantTx
	s *closingCases
}

func (t closingTx) Cases() store.CaseTx { return closingCaseTx{t.TenantTx.Cases(), t.s} }

type closingCaseTx struct {
	store.CaseTx
	s *closingCases
}

func (c closingCaseTx) SetStatus(ctx context.Context, id string, status store.CaseStatus) error {
	c.s.mu.Lock()
	before, fail := c.s.before, c.s.failures > 0
	c.s.before = nil
	if fail {
		c.s.failures--
	}
	c.s.mu.Unlock()
	if before != nil {
		before()
	}
	if fail {
		return errors.New("injected: the store failed the close")
	}
	return c.CaseTx.SetStatus(ctx, id, status)
}

// escalatedCase is a payment that opened a case, by agent of e.
func escalatedCase(t *testing.T, kind string) (e *serviceEnv, agent store.Agent, caseID string) {
	t.Helper()
	e, agent, payee := payingEnv(t, kind)
	resp := e.decide(t, agent.ID, payment("5000.00", payee.ID), "")
	if resp.Case == nil {
		t.Fatalf("no case opened: %+v", resp)
	}
	return e, agent, resp.Case.ID
}

// expiredEntries counts case.expired entries of caseID from index from.
func (e *serviceEnv) expiredEntries(t *testing.T, from uint64, caseID string) int {
	t.Helper()
	n := 0
	for i := from; i < e.ledgerSize(t); i++ {
		if got, _ := e.entryAt(t, i); got.Kind == decision.KindCaseExpired && got.Subject == caseID {
			n++
		}
	}
	return n
}

// An expiry whose close the store fails logs nothing: the case stays
// pending, and the next read expires it, once. (Its entry used to stay
// while the store kept the case pending, and the next read logged a
// second expiry.)
func TestCaseExpiryThatFailsLogsNothing(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e, agent, id := escalatedCase(t, kind)
			ctx := context.Background()
			cs := &closingCases{TenantStore: e.backend, failures: 1}
			_, _, reader := e.newService(t, e.newLedgerOver(t, cs), decision.Config{})
			e.clock.Advance(decision.DefaultCaseLifetime + time.Minute)
			from := e.ledgerSize(t)
			if v, err := reader.GetCase(ctx, e.org, agent.ID, id); err == nil {
				t.Fatalf("a failed expiry answered %+v", v)
			}
			if n := e.expiredEntries(t, from, id); n != 0 {
				t.Fatalf("a failed expiry logged %d entries", n)
			}
			v, err := reader.GetCase(ctx, e.org, agent.ID, id)
			if err != nil || v.Status != store.CaseExpired {
				t.Fatalf("read again: %+v, %v", v, err)
			}
			if n := e.expiredEntries(t, from, id); n != 1 {
				t.Fatalf("%d case.expired entries, want 1", n)
			}
		})
	}
}

// On PostgreSQL another transaction may close the case (an approver's
// rejection) after the expiry's batch took the log's lock: the expiry's
// close then finds it closed, logs nothing, and answers the case as the
// approver left it. (Its entry used to stay, saying "expired" of a case
// the store says "rejected".) On SQLite the batch holds the file's write
// lock: nobody closes a case in between.
func TestCaseExpiryLosesToACloseInItsBatch(t *testing.T) {
	e, agent, id := escalatedCase(t, "postgres")
	ctx := context.Background()
	cs := &closingCases{TenantStore: e.backend}
	cs.before = func() {
		err := e.backend.InTenantTx(ctx, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
			return tx.Cases().SetStatus(ctx, id, store.CaseRejected)
		})
		if err != nil {
			t.Errorf("the approver's rejection: %v", err)
		}
	}
	_, _, reader := e.newService(t, e.newLedgerOver(t, cs), decision.Config{})
	e.clock.Advance(decision.DefaultCaseLifetime + time.Minute)
	from := e.ledgerSize(t)
	v, err := reader.GetCase(ctx, e.org, agent.ID, id)
	if err != nil || v.Status != store.CaseRejected {
		t.Fatalf("read: %+v, %v; want the rejected case", v, err)
	}
	if n := e.expiredEntries(t, from, id); n != 0 {
		t.Fatalf("%d case.expired entries of a rejected case", n)
	}
}
