package decision

import (
	"context"
	"slices"
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
// turns closes that gap inside this process. Each agent's requests are
// judged in turn, and every outcome decided before a request's turn counts
// in its input unless the store read already had it: the request notes how
// many of the agent's outcomes had settled (committed) just before its
// read's statement started (store.DecisionInputsQuery.BeforeRead), and
// counts every outcome decided since beyond those. The counts are so never
// lower than the decisions that precede it. An outcome that committed
// between that note and the statement's snapshot counts twice, which only
// errs towards the stricter answer; so does one whose commit failed in a
// way that leaves it unknown. An outcome certainly not stored stops
// counting when its request ends. The read itself runs outside the turn.
// Requests to two replicas at once are not ordered by this.
//
// Judged in turn, not evaluated in turn: waiting for each evaluation
// before starting the next bounded one agent to one evaluation at a time,
// and an evaluation in a policy worker is a round trip to another process.
// So up to maxEvaluating of an agent's requests evaluate at once, each
// assuming that the requests ahead of it decide as the agent's last
// decision did (a burst is mostly alike). A request then waits for those
// ahead to decide; if its counts differ from what they decided, it is
// evaluated again with the counts as they now are, before any request
// behind it decides. What a request decides is therefore what it would
// have decided one after another; a wrong guess costs an evaluation.
type turns struct {
	mu     sync.Mutex
	agents map[string]*agentTurns
}

// maxEvaluating bounds how many of one agent's requests evaluate at once:
// how many evaluations a run of wrong guesses can waste.
const maxEvaluating = 8

// agentTurns is one agent's turns and its running totals of outcomes,
// kept while any of its requests is in progress.
type agentTurns struct {
	slots chan struct{} // holds a token per request between take and decide
	// ahead holds the requests that have taken their turn and not decided
	// (or left), in order of take: the first is judged next.
	ahead            []*turn
	last             Outcome // the agent's last outcome decided here: the guess
	refs             int     // requests in progress
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

// counts are what a request adds to the store's counts: decisions,
// denials, and payments to its counterparty.
type counts struct{ decisions, denials, payments int }

// turn is one request's place among its agent's requests.
type turn struct {
	t            *turns
	key          string
	a            *agentTurns
	counterparty string
	payment      bool // allowed, the request is a payment to counterparty
	// base is the settled totals before the request read the store.
	base    counts
	holding bool          // a slot, from take to decide or settle
	next    chan struct{} // closed once no request is ahead of this one
	guess   counted       // what requests behind assume this one adds
	outcome *counted      // set by decide
	done    bool
}

// join enters a request of the agent key, before it reads the store.
// payment says whether the request, allowed, pays counterparty
// (store.IsPayment).
func (t *turns) join(key, counterparty string, payment bool) *turn {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.agents == nil {
		t.agents = map[string]*agentTurns{}
	}
	a := t.agents[key]
	if a == nil {
		a = &agentTurns{slots: make(chan struct{}, maxEvaluating), last: Allow}
		t.agents[key] = a
	}
	a.refs++
	return &turn{t: t, key: key, a: a, counterparty: counterparty, payment: payment}
}

// reading notes what has settled, just before the store read takes its
// snapshot (store.DecisionInputsQuery.BeforeRead). A request that never
// read never takes its turn.
func (tn *turn) reading() {
	tn.t.mu.Lock()
	defer tn.t.mu.Unlock()
	s := &tn.a.settled
	tn.base = counts{s.decisions, s.denials, s.payments[tn.counterparty]}
}

// take waits for room among the agent's requests evaluating, or gives up
// when ctx ends. It returns the counts to evaluate with: the outcomes
// decided and not yet settled before the store read, and a guess for each
// request ahead (what the agent's last outcome would add).
func (tn *turn) take(ctx context.Context) (counts, error) {
	select {
	case tn.a.slots <- struct{}{}:
		tn.holding = true
	case <-ctx.Done():
		return counts{}, ctx.Err()
	}
	tn.t.mu.Lock()
	defer tn.t.mu.Unlock()
	a := tn.a
	c := tn.uncommitted()
	for _, ahead := range a.ahead {
		c.add(ahead.guess, tn.counterparty)
	}
	tn.guess = counted{denial: a.last == Deny}
	if a.last == Allow && tn.payment {
		tn.guess.paid = tn.counterparty
	}
	tn.next = make(chan struct{})
	if a.ahead = append(a.ahead, tn); len(a.ahead) == 1 {
		close(tn.next)
	}
	return c, nil
}

// add counts o, an outcome of the same agent, for a request paying
// counterparty.
func (c *counts) add(o counted, counterparty string) {
	c.decisions++
	if o.denial {
		c.denials++
	}
	if o.paid != "" && o.paid == counterparty {
		c.payments++
	}
}

// uncommitted is what to add to the store's counts now: the outcomes
// decided before that had not settled before the store read. t.mu is
// held.
func (tn *turn) uncommitted() counts {
	d := &tn.a.decided
	return counts{d.decisions - tn.base.decisions, d.denials - tn.base.denials, d.payments[tn.counterparty] - tn.base.payments}
}

// judge waits until every request ahead has decided or left, and returns
// the counts as they are then, and whether they are the counts used (what
// take returned): if not, a request ahead decided otherwise than guessed,
// and the request must be evaluated again with these before it decides.
func (tn *turn) judge(ctx context.Context, used counts) (counts, bool, error) {
	select {
	case <-tn.next:
	default:
		select {
		case <-tn.next:
		case <-ctx.Done():
			return counts{}, false, ctx.Err()
		}
	}
	tn.t.mu.Lock()
	defer tn.t.mu.Unlock()
	c := tn.uncommitted()
	return c, c == used, nil
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
	tn.a.last = outcome
	tn.outcome = &o
	tn.leave()
	tn.t.mu.Unlock()
	tn.release()
}

// leave takes the request out of those ahead, the next one's turn coming
// if it was first. t.mu is held.
func (tn *turn) leave() {
	a := tn.a
	i := slices.Index(a.ahead, tn)
	if i < 0 {
		return
	}
	a.ahead = slices.Delete(a.ahead, i, i+1)
	if i == 0 && len(a.ahead) > 0 {
		close(a.ahead[0].next)
	}
}

// release gives the request's slot back if it holds one (decide and
// settle call it).
func (tn *turn) release() {
	if tn.holding {
		tn.holding = false
		<-tn.a.slots
	}
}

// settle ends the request: it leaves the turns if it had not decided, and
// a decided outcome settles: stored (in the store, or perhaps: it keeps
// counting for requests that read before this) or not (it stops counting).
// Once only.
func (tn *turn) settle(stored bool) {
	if tn.done {
		return
	}
	tn.done = true
	tn.t.mu.Lock()
	defer tn.t.mu.Unlock()
	// Out of the turns before the slot is free: a request taking it must
	// not count this one as ahead of it.
	tn.leave()
	tn.release()
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
