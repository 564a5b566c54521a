package decision

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/agentsigna/agentsigna/ledger"
)

// loggedRecord is the record of entry index of org's log, once proven an
// entry of one of kinds about subject (ledger.ProvenRecord); an entry the
// log does not prove is notLogged, wrapped, and any other error the
// store's (or ledger.ErrUntrustedHead: an outage).
func loggedRecord(ctx context.Context, l *ledger.Ledger, org Organization, index uint64, subject string, notLogged error, kinds ...string) ([]byte, error) {
	record, err := l.ProvenRecord(ctx, l.TenantLog(org.ID, org.Slug), index, subject, kinds...)
	if errors.Is(err, ledger.ErrNotProven) {
		return nil, fmt.Errorf("%w: %v", notLogged, err)
	}
	return record, err
}

// rowProofs remembers, per row and the entry it names (K), what a proof
// of that entry gave (V), or that the row is not the log's: an entry
// never changes, so neither answer is sought again. An outage is not
// remembered.
type rowProofs[K comparable, V any] struct {
	proven  sync.Map // K → V
	refused sync.Map // K → struct{}
}

// get answers for k from what it remembers, or runs prove: ok is false
// for a row refused (prove's error wraps notLogged; refused calls report
// the first time, with that error), err an outage.
func (r *rowProofs[K, V]) get(k K, prove func() (V, error), notLogged error, report func(error)) (v V, ok bool, err error) {
	if got, ok := r.proven.Load(k); ok {
		return got.(V), true, nil
	}
	if _, refused := r.refused.Load(k); refused {
		return v, false, nil
	}
	v, err = prove()
	switch {
	case err == nil:
		r.proven.Store(k, v)
		return v, true, nil
	case !errors.Is(err, notLogged):
		return v, false, err
	}
	if _, seen := r.refused.LoadOrStore(k, struct{}{}); !seen {
		report(err)
	}
	return v, false, nil
}
