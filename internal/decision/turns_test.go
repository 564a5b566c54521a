package decision

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestTurns: one agent's requests take turns; a decided outcome counts for
// the agent's later requests until it is settled; nothing is kept once
// every request has settled.
func TestTurns(t *testing.T) {
	var ts turns
	ctx := context.Background()
	first, err := ts.take(ctx, "org/agt_a")
	if err != nil {
		t.Fatal(err)
	}

	// The agent's next request waits for the turn; another agent's does not.
	other, err := ts.take(ctx, "org/agt_b")
	if err != nil {
		t.Fatal(err)
	}
	other.settle()
	waiting, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := ts.take(waiting, "org/agt_a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("take while the turn is held = %v, want the context's error", err)
	}

	first.decide(Deny, "cp_1", false)
	second, err := ts.take(ctx, "org/agt_a") // handed on by decide
	if err != nil {
		t.Fatal(err)
	}
	if d, n, p := second.uncommitted("cp_1"); d != 1 || n != 1 || p != 0 {
		t.Fatalf("uncommitted = %d decisions, %d denials, %d payments; want 1, 1, 0", d, n, p)
	}
	second.decide(Allow, "cp_1", true)
	third, err := ts.take(ctx, "org/agt_a")
	if err != nil {
		t.Fatal(err)
	}
	if d, n, p := third.uncommitted("cp_1"); d != 2 || n != 1 || p != 1 {
		t.Fatalf("uncommitted = %d, %d, %d; want 2, 1, 1", d, n, p)
	}
	if _, _, p := third.uncommitted("cp_2"); p != 0 {
		t.Fatalf("payments to another counterparty = %d, want 0", p)
	}
	first.settle()
	second.settle()
	second.settle() // twice is once
	if d, n, p := third.uncommitted("cp_1"); d != 0 || n != 0 || p != 0 {
		t.Fatalf("after settling: %d, %d, %d; want nothing", d, n, p)
	}
	third.settle() // never decided: hands the turn on
	if len(ts.agents) != 0 {
		t.Fatalf("%d agents still tracked after every request settled", len(ts.agents))
	}
}
