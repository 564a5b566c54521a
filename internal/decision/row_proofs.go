package decision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/agentsigna/agentsigna/ledger"
)

// loggedRecord is the record of entry index of org's log, decoded as an
// R, once proven an entry of one of kinds about subject
// (ledger.ProvenRecord): the record a row naming that entry is to match.
// An entry the log does not prove, or whose record does not decode, is
// notLogged, wrapped; any other error is the store's (or
// ledger.ErrUntrustedHead: an outage).
func loggedRecord[R any](ctx context.Context, l *ledger.Ledger, org Organization, index uint64, subject string, notLogged error, kinds ...string) (R, error) {
	var rec R
	record, err := l.ProvenRecord(ctx, l.TenantLog(org.ID, org.Slug), index, subject, kinds...)
	switch {
	case errors.Is(err, ledger.ErrNotProven):
		return rec, fmt.Errorf("%w: %v", notLogged, err)
	case err != nil:
		return rec, err
	case json.Unmarshal(record, &rec) != nil:
		return rec, fmt.Errorf("%w: entry %d's record does not decode", notLogged, index)
	}
	return rec, nil
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
