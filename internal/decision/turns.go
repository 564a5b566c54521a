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
// turns closes that gap inside this process: each agent's requests take
// turns from reading their input to knowing their outcome, and an outcome
// counts in the input of the agent's later requests from then until its
// batch has committed, when the store has it. The counts a request sees
// are never lower than the committed decisions that precede it; for the
// moment between a commit and its caller's return they may count a
// decision twice, which only errs towards the stricter answer. Requests to
// two replicas at once are not ordered by this.
type turns struct {
	mu     sync.Mutex
	agents map[string]*agentTurns
}

// agentTurns is one agent's turn and its decided-but-uncommitted outcomes.
type agentTurns struct {
	slot chan struct{} // holds a token while a request has the turn
	refs int           // requests holding, waiting for or owing a settle
	pending
}

// pending counts outcomes decided and not yet known to be committed.
type pending struct {
	decisions, denials int
	payments           map[string]int // by counterparty id: allowed payments
}

// turn is one request's place in its agent's order.
type turn struct {
	t       *turns
	key     string
	a       *agentTurns
	holding bool
	counted *counted // what decide added; settle takes it away
	settled bool
}

type counted struct {
	denial       bool
	counterparty string // paid, or ""
}

// take waits for the agent's turn, or gives up when ctx ends.
func (t *turns) take(ctx context.Context, key string) (*turn, error) {
	t.mu.Lock()
	if t.agents == nil {
		t.agents = map[string]*agentTurns{}
	}
	a := t.agents[key]
	if a == nil {
		a = &agentTurns{slot: make(chan struct{}, 1)}
		t.agents[key] = a
	}
	a.refs++
	t.mu.Unlock()
	select {
	case a.slot <- struct{}{}:
		return &turn{t: t, key: key, a: a, holding: true}, nil
	case <-ctx.Done():
		t.drop(key, a)
		return nil, ctx.Err()
	}
}

// uncommitted returns the outcomes decided before this turn that are not
// yet known committed. Read it before the store, so that a decision that
// leaves it has already committed when the store is read.
func (tn *turn) uncommitted(counterparty string) (decisions, denials, payments int) {
	tn.t.mu.Lock()
	defer tn.t.mu.Unlock()
	return tn.a.decisions, tn.a.denials, tn.a.payments[counterparty]
}

// decide records the request's outcome as pending and hands the turn to
// the agent's next request. Call settle once the outcome is committed, or
// will never be.
func (tn *turn) decide(outcome Outcome, counterparty string, payment bool) {
	c := &counted{denial: outcome == Deny}
	if payment {
		c.counterparty = counterparty
	}
	tn.t.mu.Lock()
	tn.a.decisions++
	if c.denial {
		tn.a.denials++
	}
	if c.counterparty != "" {
		if tn.a.payments == nil {
			tn.a.payments = map[string]int{}
		}
		tn.a.payments[c.counterparty]++
	}
	tn.counted = c
	tn.t.mu.Unlock()
	tn.release()
}

// release hands the turn on without deciding (the request ended early).
func (tn *turn) release() {
	if tn.holding {
		tn.holding = false
		<-tn.a.slot
	}
}

// settle ends the turn: the turn is handed on if still held, and what
// decide counted no longer counts (the store has it, or never will).
func (tn *turn) settle() {
	if tn.settled {
		return
	}
	tn.settled = true
	tn.release()
	if c := tn.counted; c != nil {
		tn.counted = nil
		tn.t.mu.Lock()
		tn.a.decisions--
		if c.denial {
			tn.a.denials--
		}
		if c.counterparty != "" {
			if tn.a.payments[c.counterparty]--; tn.a.payments[c.counterparty] == 0 {
				delete(tn.a.payments, c.counterparty)
			}
		}
		tn.t.mu.Unlock()
	}
	tn.t.drop(tn.key, tn.a)
}

func (t *turns) drop(key string, a *agentTurns) {
	t.mu.Lock()
	if a.refs--; a.refs == 0 {
		delete(t.agents, key)
	}
	t.mu.Unlock()
}
