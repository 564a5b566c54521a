package identity_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/identity"
)

func TestMemoryJTIStore(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := identity.NewMemoryJTIStore(func() time.Time { return now })
	ctx := context.Background()
	d := sha256.Sum256([]byte("jti-1"))
	if err := m.Remember(ctx, "agt_1", d[:], now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := m.Remember(ctx, "agt_1", d[:], now.Add(time.Minute)); !errors.Is(err, identity.ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
	if err := m.Remember(ctx, "agt_2", d[:], now.Add(time.Minute)); err != nil {
		t.Fatalf("same jti, another agent: %v", err)
	}
	// Remembered until exp, forgotten after: by then the assertion is expired anyway.
	now = now.Add(59 * time.Second)
	if err := m.Remember(ctx, "agt_1", d[:], now.Add(time.Minute)); !errors.Is(err, identity.ErrReplay) {
		t.Fatalf("replay before exp: %v", err)
	}
	now = now.Add(time.Second)
	if err := m.Remember(ctx, "agt_1", d[:], now.Add(time.Minute)); err != nil {
		t.Fatalf("after exp: %v", err)
	}
	if err := m.Remember(ctx, "agt_1", []byte("jti-1"), now.Add(time.Minute)); err == nil || errors.Is(err, identity.ErrReplay) {
		t.Fatalf("a clear jti was accepted: %v", err)
	}
}

var _ identity.JTIStore = (*identity.MemoryJTIStore)(nil)
