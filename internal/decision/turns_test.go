package decision

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestTurns: one agent's requests are judged in turn; an outcome decided
// before a request's turn counts for it unless it had settled stored before
// the request's read; an outcome settled unstored stops counting; nothing
// is kept once every request has settled.
func TestTurns(t *testing.T) {
	var ts turns
	ctx := context.Background()
	first := ts.join("org/agt_a", "cp_1", true)
	second := ts.join("org/agt_a", "cp_1", true)
	if c, err := first.take(ctx); err != nil || c != (counts{}) {
		t.Fatalf("first take = %+v, %v; want nothing to add", c, err)
	}
	if c, same, err := first.judge(ctx, counts{}); err != nil || !same || c != (counts{}) {
		t.Fatalf("first judged = %+v, %t, %v; want at once, as used", c, same, err)
	}

	// The agent's next request evaluates meanwhile, guessing that first
	// decides as the agent's last outcome (none yet: allow, here a payment
	// to the same counterparty); another agent's is not concerned.
	other := ts.join("org/agt_b", "cp_1", true)
	if c, err := other.take(ctx); err != nil || c != (counts{}) {
		t.Fatalf("other agent's take = %+v, %v", c, err)
	}
	other.settle(false)
	second.reading() // reads the store now: first not yet committed
	used, err := second.take(ctx)
	if err != nil || used != (counts{decisions: 1, payments: 1}) {
		t.Fatalf("second take = %+v, %v; want first guessed an allowed payment", used, err)
	}
	// It is not judged before first decides.
	waiting, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, _, err := second.judge(waiting, used); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("judge before first decided = %v, want the context's error", err)
	}
	first.decide(Deny, false)
	if c, same, err := second.judge(ctx, used); err != nil || same || c != (counts{decisions: 1, denials: 1}) {
		t.Fatalf("second judged = %+v, %t, %v; want first's denial, not the guess", c, same, err)
	}
	second.decide(Allow, true)

	// The guess follows the agent's last outcome (second's: an allowed
	// payment): right, a request is judged with the counts it used.
	third := ts.join("org/agt_a", "cp_1", true)
	other2 := ts.join("org/agt_a", "cp_2", true)
	third.reading()
	first.settle(true) // after third read: it may be in that read or not
	other2.reading()   // after first settled: its read has first
	used, err = third.take(ctx)
	if err != nil || used != (counts{2, 1, 1}) {
		t.Fatalf("third take = %+v, %v; want 2, 1, 1 (first counts, the stricter side)", used, err)
	}
	used2, err := other2.take(ctx)
	if err != nil || used2 != (counts{decisions: 2}) {
		t.Fatalf("other2 take = %+v, %v; want second and third's guess, paying another counterparty", used2, err)
	}
	if _, same, err := third.judge(ctx, used); err != nil || !same {
		t.Fatalf("third judged: %t, %v", same, err)
	}
	third.decide(Allow, true)
	if c, same, err := other2.judge(ctx, used2); err != nil || !same || c != used2 {
		t.Fatalf("other2 judged = %+v, %t, %v; want the guess confirmed", c, same, err)
	}
	other2.settle(true)

	// A request that ends without deciding frees the next one's turn, which
	// then counts without it.
	fourth := ts.join("org/agt_a", "cp_1", true)
	fifth := ts.join("org/agt_a", "cp_1", true)
	fourth.reading()
	fifth.reading()
	if _, err := fourth.take(ctx); err != nil {
		t.Fatal(err)
	}
	used, err = fifth.take(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fourth.settle(false)
	if c, same, err := fifth.judge(ctx, used); err != nil || same || c.decisions != used.decisions-1 {
		t.Fatalf("fifth judged = %+v, %t, %v after fourth left; used %+v", c, same, err, used)
	}
	fifth.settle(false)

	// second is certainly not stored: it stops counting, even for a
	// request that read before it settled.
	sixth := ts.join("org/agt_a", "cp_1", true)
	sixth.reading()
	second.settle(false)
	second.settle(true) // twice is once
	third.settle(false)
	if c, err := sixth.take(ctx); err != nil || c != (counts{}) {
		t.Fatalf("sixth take = %+v, %v; want nothing", c, err)
	}
	sixth.settle(false)
	if len(ts.agents) != 0 {
		t.Fatalf("%d agents still tracked after every request settled", len(ts.agents))
	}
}

// At most maxEvaluating of an agent's requests evaluate at once; the next
// waits for one to decide.
func TestTurnsBounded(t *testing.T) {
	var ts turns
	ctx := context.Background()
	var taken []*turn
	for range maxEvaluating {
		tn := ts.join("org/agt_a", "", false)
		if _, err := tn.take(ctx); err != nil {
			t.Fatal(err)
		}
		taken = append(taken, tn)
	}
	late := ts.join("org/agt_a", "", false)
	waiting, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := late.take(waiting); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("take past the bound = %v, want the context's error", err)
	}
	taken[0].decide(Allow, false)
	if c, err := late.take(ctx); err != nil || c.decisions != maxEvaluating {
		t.Fatalf("take once one decided = %+v, %v; want %d decisions", c, err, maxEvaluating)
	}
	for _, tn := range append(taken, late) {
		tn.settle(false)
	}
	if len(ts.agents) != 0 {
		t.Fatalf("%d agents still tracked", len(ts.agents))
	}
}
