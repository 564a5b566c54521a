package decision

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestTurns: one agent's requests take turns to evaluate; an outcome
// decided before a request's turn counts for it unless it had settled
// stored before the request's read; an outcome settled unstored stops
// counting; nothing is kept once every request has settled.
func TestTurns(t *testing.T) {
	var ts turns
	ctx := context.Background()
	first := ts.join("org/agt_a", "cp_1")
	second := ts.join("org/agt_a", "cp_1")
	if err := first.take(ctx); err != nil {
		t.Fatal(err)
	}

	// The agent's next request waits for the turn; another agent's does not.
	other := ts.join("org/agt_b", "cp_1")
	if err := other.take(ctx); err != nil {
		t.Fatal(err)
	}
	other.settle(false)
	waiting, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := second.take(waiting); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("take while the turn is held = %v, want the context's error", err)
	}

	first.decide(Deny, false)
	second.reading()                         // reads the store now: first not yet committed
	if err := second.take(ctx); err != nil { // handed on by decide
		t.Fatal(err)
	}
	if d, n, p := second.uncommitted(); d != 1 || n != 1 || p != 0 {
		t.Fatalf("uncommitted = %d decisions, %d denials, %d payments; want 1, 1, 0", d, n, p)
	}
	second.decide(Allow, true)

	third := ts.join("org/agt_a", "cp_1")
	other2 := ts.join("org/agt_a", "cp_2")
	third.reading()
	first.settle(true) // after third read: it may be in that read or not
	other2.reading()   // after first settled: its read has first
	if err := third.take(ctx); err != nil {
		t.Fatal(err)
	}
	if d, n, p := third.uncommitted(); d != 2 || n != 1 || p != 1 {
		t.Fatalf("uncommitted = %d, %d, %d; want 2, 1, 1 (first counts, the stricter side)", d, n, p)
	}
	third.release()
	if err := other2.take(ctx); err != nil {
		t.Fatal(err)
	}
	if d, n, p := other2.uncommitted(); d != 1 || n != 0 || p != 0 {
		t.Fatalf("uncommitted = %d, %d, %d; want 1, 0, 0 (second only, paying another counterparty)", d, n, p)
	}
	other2.settle(true)

	// second is certainly not stored: it stops counting, even for a
	// request that read before it settled.
	fourth := ts.join("org/agt_a", "cp_1")
	fourth.reading()
	second.settle(false)
	second.settle(true) // twice is once
	if err := fourth.take(ctx); err != nil {
		t.Fatal(err)
	}
	if d, n, p := fourth.uncommitted(); d != 0 || n != 0 || p != 0 {
		t.Fatalf("uncommitted = %d, %d, %d; want nothing", d, n, p)
	}
	fourth.settle(false)
	third.settle(false)
	if len(ts.agents) != 0 {
		t.Fatalf("%d agents still tracked after every request settled", len(ts.agents))
	}
}
