package decision

import (
	"context"
	"sync"
)

// keyedMutex serialises work on one key (an idempotency key, a case, an
// organization's policy load) inside this process, holding memory only for
// keys in use. Across replicas the store's unique keys and conditional
// updates are what keep records right; this only spares the ledger the
// entries that two racing goroutines of one process would both append.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*refLock
}

// refLock is a lock that a waiter can give up on: a one-slot channel.
type refLock struct {
	slot chan struct{}
	refs int // holders and waiters
}

// lock takes key's lock, or gives up when ctx ends, and returns its release.
func (k *keyedMutex) lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*refLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &refLock{slot: make(chan struct{}, 1)}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()

	select {
	case l.slot <- struct{}{}:
		return func() {
			<-l.slot
			k.release(key, l)
		}, nil
	case <-ctx.Done():
		k.release(key, l)
		return nil, ctx.Err()
	}
}

func (k *keyedMutex) release(key string, l *refLock) {
	k.mu.Lock()
	if l.refs--; l.refs == 0 {
		delete(k.locks, key)
	}
	k.mu.Unlock()
}
