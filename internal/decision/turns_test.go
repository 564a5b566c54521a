package decision

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestTurns: one agent's requests take turns to evaluate; an outcome
// decided before a request's turn counts for it unless it had settled
// before the request read the store; nothing is kept once every request
// has settled.
func TestTurns(t *testing.T) {
	var ts turns
	ctx := context.Background()
	first := ts.join("org/agt_a", "cp_1")
	second := ts.join("org/agt_a", "cp_1") // reads the store now, with first undecided
	if err := first.take(ctx); err != nil {
		t.Fatal(err)
	}

	// The agent's next request waits for the turn; another agent's does not.
	other := ts.join("org/agt_b", "cp_1")
	if err := other.take(ctx); err != nil {
		t.Fatal(err)
	}
	other.settle()
	waiting, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := second.take(waiting); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("take while the turn is held = %v, want the context's error", err)
	}

	first.decide(Deny, false)
	if err := second.take(ctx); err != nil { // handed on by decide
		t.Fatal(err)
	}
	if d, n, p := second.uncommitted(); d != 1 || n != 1 || p != 0 {
		t.Fatalf("uncommitted = %d decisions, %d denials, %d payments; want 1, 1, 0", d, n, p)
	}
	second.decide(Allow, true)
	third := ts.join("org/agt_a", "cp_1")
	other2 := ts.join("org/agt_a", "cp_2")
	first.settle() // after third and other2 read the store
	if err := third.take(ctx); err != nil {
		t.Fatal(err)
	}
	// first settled after third joined: it may be in third's read or not,
	// so it still counts (the stricter side); second has not settled.
	if d, n, p := third.uncommitted(); d != 2 || n != 1 || p != 1 {
		t.Fatalf("uncommitted = %d, %d, %d; want 2, 1, 1", d, n, p)
	}
	third.release()
	if err := other2.take(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, p := other2.uncommitted(); p != 0 {
		t.Fatalf("payments to another counterparty = %d, want 0", p)
	}
	other2.settle()
	second.settle()
	second.settle() // twice is once

	// A request that joins after both settled finds them in the store.
	fourth := ts.join("org/agt_a", "cp_1")
	if err := fourth.take(ctx); err != nil {
		t.Fatal(err)
	}
	if d, n, p := fourth.uncommitted(); d != 0 || n != 0 || p != 0 {
		t.Fatalf("after settling: %d, %d, %d; want nothing", d, n, p)
	}
	fourth.settle()
	third.settle()
	if len(ts.agents) != 0 {
		t.Fatalf("%d agents still tracked after every request settled", len(ts.agents))
	}
}
