package decision

import (
	"context"
	"sync"
)

// An agent's decisions depend on the ones before them: agent.stats
// (decisions and denials in the last hour, decisions in the last day) and
// counterparty.payments_count are policy input, and the base policy
// escalates everything once an agent has 5 denials in the hour. A decision
// is only visible in the store once its ledger batch commits, so a burst
// of requests would all read the same counts and each be judged as if it
// were the agent's only one.
//
// turns closes that gap inside this process. Each agent's requests take
// turns to evaluate, and every outcome decided before a request's turn
// counts in its input unless the store read already had it: the request
// notes how many of the agent's outcomes had settled (committed) just
// before its read's statement started (store.DecisionInputsQuery.
// BeforeRead), and counts every outcome decided since beyond those. The
// counts are so never lower than the decisions that precede it. An outcome
// that committed between that note and the statement's snapshot counts
// twice, which only errs towards the stricter answer; so does one whose
// commit failed in a way that leaves it unknown. An outcome certainly not
// stored stops counting when its request ends. The read itself runs
// outside the turn; only the evaluation is ordered, one request at a time
// per agent. Requests to two replicas at once are not ordered by this.
type turns struct {
	mu     sync.Mutex
	agents map[string]*agentTurns
}

// agentTurns is one agent's turn and its running totals of outcomes, kept
// while any of its requests is in progress.
type agentTurns struct {
	slot             chan struct{} // holds a token while a request has the turn
	refs             int           // requests in progress
	decided, settled tally
}

// tally counts outcomes: decisions, denials, and allowed payments by
// counterparty id.
type tally struct {
	decisions, denials int
	payments           map[string]int
}

func (t *tally) add(o counted, n int) {
	t.decisions += n
	if o.denial {
		t.denials += n
	}
	if o.paid != "" {
		if t.payments == nil {
			t.payments = map[string]int{}
		}
		if t.payments[o.paid] += n; t.payments[o.paid] == 0 {
			delete(t.payments, o.paid)
		}
	}
}

// counted is what one outcome adds to a tally.
type counted struct {
	denial bool
	paid   string // the counterparty of an allowed payment, or ""
}

// turn is one request's place among its agent's requests.
type turn struct {
	t            *turns
	key          string
	a            *agentTurns
	counterparty string
	// base is the settled totals before the request read the store.
	base    struct{ decisions, denials, payments int }
	holding bool
	outcome *counted // set by decide
	done    bool
}

// join enters a request of the agent key, before it reads the store.
func (t *turns) join(key, counterparty string) *turn {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.agents == nil {
		t.agents = map[string]*agentTurns{}
	}
	a := t.agents[key]
	if a == nil {
		a = &agentTurns{slot: make(chan struct{}, 1)}
		t.agents[key] = a
	}
	a.refs++
	return &turn{t: t, key: key, a: a, counterparty: counterparty}
}

// reading notes what has settled, just before the store read takes its
// snapshot (store.DecisionInputsQuery.BeforeRead). A request that never
// read never takes its turn.
func (tn *turn) reading() {
	tn.t.mu.Lock()
	defer tn.t.mu.Unlock()
	s := &tn.a.settled
	tn.base.decisions, tn.base.denials, tn.base.payments = s.decisions, s.denials, s.payments[tn.counterparty]
}

// take waits for the request's turn to evaluate, or gives up when ctx
// ends.
func (tn *turn) take(ctx context.Context) error {
	select {
	case tn.a.slot <- struct{}{}:
		tn.holding = true
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// uncommitted returns what to add to the store's counts: the outcomes
// decided before this turn that had not settled before the store read.
func (tn *turn) uncommitted() (decisions, denials, payments int) {
	tn.t.mu.Lock()
	defer tn.t.mu.Unlock()
	d := &tn.a.decided
	return d.decisions - tn.base.decisions, d.denials - tn.base.denials, d.payments[tn.counterparty] - tn.base.payments
}

// decide counts the request's outcome for the agent's later requests and
// hands the turn on. Call settle once the outcome is committed, or will
// never be.
func (tn *turn) decide(outcome Outcome, payment bool) {
	o := counted{denial: outcome == Deny}
	if payment {
		o.paid = tn.counterparty
	}
	tn.t.mu.Lock()
	tn.a.decided.add(o, 1)
	tn.outcome = &o
	tn.t.mu.Unlock()
	tn.release()
}

// release hands the turn on if this request holds it (decide and settle
// call it).
func (tn *turn) release() {
	if tn.holding {
		tn.holding = false
		<-tn.a.slot
	}
}

// settle ends the request: the turn is handed on if still held, and a
// decided outcome settles: stored (in the store, or perhaps: it keeps
// counting for requests that read before this) or not (it stops counting).
// Once only.
func (tn *turn) settle(stored bool) {
	if tn.done {
		return
	}
	tn.done = true
	tn.release()
	tn.t.mu.Lock()
	defer tn.t.mu.Unlock()
	switch {
	case tn.outcome == nil:
	case stored:
		tn.a.settled.add(*tn.outcome, 1)
	default:
		tn.a.decided.add(*tn.outcome, -1)
	}
	if tn.a.refs--; tn.a.refs == 0 {
		delete(tn.t.agents, tn.key)
	}
}
