package decision

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
)

// Decide answers an agent's request (DESIGN §3), in this order:
//
//  1. validate the request (ErrInvalidRequest); with an Idempotency-Key, a
//     decision the agent already made under it is replayed unchanged if
//     the request is the same (RFC 8785 canonical JSON, SHA-256), and
//     ErrIdempotencyMismatch if it is not;
//  2. read, in one read (store.ReadDecisionInputs), the agent (ErrUnknownAgent), the
//     counterparty the action names (ErrInvalidRequest when the
//     organization has none by that id) and the agent's recent decision
//     counts; and take the organization's receipt signer (cached; the
//     first time, made and logged in a ledger batch of its own,
//     ReceiptKeys);
//  3. evaluate the input under the base and the organization's active
//     policy (loaded again first when the inputs show an activation newer
//     than the engine's: one made by another process or replica; its
//     worker started again first if it was stopped for idleness);
//  4. append the decision to the organization's ledger, then the receipt
//     of an allowed action or the case an escalation opens;
//  5. in the ledger batch's transaction, store the decision, receipt and
//     case, with the response that is returned now and replayed later.
//
// A suspended agent is not refused here: the base policy denies it
// (agent_not_active), and that denial is recorded like any other.
// idempotencyKey "" means none.
func (s *Service) Decide(ctx context.Context, org Organization, agentID string, req DecisionRequest, idempotencyKey string) (Response, error) {
	if store.CheckID(store.PrefixAgent, agentID) != nil {
		return Response{}, ErrUnknownAgent
	}
	start := time.Now()
	v, err := req.validate()
	if err != nil {
		return Response{}, err
	}
	keyHash, err := idempotencyKeyHash(idempotencyKey)
	if err != nil {
		return Response{}, err
	}
	if keyHash != nil {
		// Two identical requests racing in this process: the second waits
		// and replays the first, rather than both reaching the ledger.
		unlock, err := s.inflight.lock(ctx, "decision/"+org.ID+"/"+agentID+"/"+string(keyHash))
		if err != nil {
			return Response{}, err
		}
		defer unlock()
	}
	// The agent's requests are judged in turn, each counting the outcomes
	// before it that the store did not have yet (see turns).
	tn := s.turns.join(org.ID+"/"+agentID, v.Action.Counterparty, store.IsPayment(store.Decision{
		Outcome: store.OutcomeAllow, CounterpartyID: v.Action.Counterparty, ActionType: v.Action.Type,
	}))
	stored := false
	defer func() { tn.settle(stored) }()
	now := s.now()
	// Stage times (Config.Stages), observed once the decision is recorded.
	var readTime, turnTime, policyTime time.Duration
	began := time.Now()
	g, err := s.gather(ctx, org, agentID, v, keyHash, now, tn.reading)
	readTime = time.Since(began)
	if err != nil {
		return Response{}, err
	}
	if g.previous != nil {
		return s.replay(ctx, org, *g.previous, v.sha256)
	}
	if err := s.ensurePolicy(ctx, org, g.policySeq); err != nil {
		return Response{}, err
	}
	// A worker stopped for idleness starts on the request's time, not
	// the evaluation's deadline: compiling would eat into that.
	if err := s.cfg.Evaluator.Wake(ctx, org.ID); err != nil {
		return Response{}, fmt.Errorf("decision: wait for the organization's policy worker: %w", err)
	}
	began = time.Now()
	used, err := tn.take(ctx)
	turnTime = time.Since(began)
	if err != nil {
		return Response{}, err
	}
	read, readPayments := g.input.Agent.Stats, 0
	if g.input.Counterparty != nil {
		readPayments = g.input.Counterparty.PaymentsCount
	}
	evaluate := func(c counts) Evaluation {
		stats := &g.input.Agent.Stats
		stats.Decisions1h, stats.Denials1h, stats.Decisions24h = read.Decisions1h+c.decisions, read.Denials1h+c.denials, read.Decisions24h+c.decisions
		if g.input.Counterparty != nil {
			g.input.Counterparty.PaymentsCount = readPayments + c.payments
		}
		evaluating := time.Now()
		defer func() { policyTime += time.Since(evaluating) }()
		return s.cfg.Evaluator.Evaluate(ctx, g.input)
	}
	ev := evaluate(used)
	began = time.Now()
	exact, same, err := tn.judge(ctx, used)
	turnTime += time.Since(began)
	if err != nil {
		return Response{}, err
	}
	if !same {
		// A request ahead decided otherwise than this one assumed: it is
		// judged on what they decided, before any request behind it.
		ev = evaluate(exact)
	}
	if len(ev.Errors) > 0 {
		s.cfg.Logger.WarnContext(ctx, "decision: policy evaluation failed; the request is denied",
			slog.String("tenant", org.ID), slog.String("agent", agentID), slog.Any("errors", ev.Errors))
	}
	tn.decide(ev.Outcome, store.IsPayment(store.Decision{
		Outcome: store.Outcome(ev.Outcome), CounterpartyID: v.Action.Counterparty, ActionType: v.Action.Type,
	}))
	var resp Response
	resp, stored, err = s.record(ctx, org, v, g, ev, keyHash, now)
	if err == nil && stored {
		s.stages.read.Observe(readTime)
		s.stages.turn.Observe(turnTime)
		s.stages.policy.Observe(policyTime)
		s.stages.total.Since(start)
	}
	return resp, err
}

// idempotencyKeyHash checks the Idempotency-Key header and returns the
// SHA-256 it is stored as (DESIGN §2); nil for no key.
func idempotencyKeyHash(key string) ([]byte, error) {
	if key == "" {
		return nil, nil
	}
	if len(key) > MaxIdempotencyKey {
		return nil, invalid("Idempotency-Key is longer than %d bytes", MaxIdempotencyKey)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return nil, invalid("Idempotency-Key must be printable ASCII")
		}
	}
	sum := sha256.Sum256([]byte(key))
	return sum[:], nil
}

// gathered is what the store says about a request before it is evaluated.
type gathered struct {
	// previous is the decision the agent already made under the same
	// Idempotency-Key; nothing else is used then.
	previous *store.Decision
	agent    store.Agent
	input    Input
	signer   *signing.ReceiptSigner
	// policySeq is the organization's newest policy activation as the
	// inputs were read: the engine must hold it, or a newer one.
	policySeq uint64
}

// gather reads the policy input in one read (store.ReadDecisionInputs: one
// round trip on PostgreSQL), which does not queue behind the ledger's
// batch transactions, and takes the receipt signer (step 2 of Decide).
//
// beforeRead is called just before the store read takes its snapshot.
func (s *Service) gather(ctx context.Context, org Organization, agentID string, v *validRequest, keyHash []byte, now time.Time, beforeRead func()) (gathered, error) {
	var g gathered
	in, err := s.cfg.Tenants.ReadDecisionInputs(ctx, org.ID, store.DecisionInputsQuery{
		AgentID: agentID, IdempotencyKeySHA256: keyHash, CounterpartyID: v.Action.Counterparty, Now: now,
		BeforeRead: beforeRead,
	})
	switch {
	case err != nil:
		return g, err
	case in.Previous != nil && !isActive(in.Agent):
		// A replay hands out the stored answer, an allow's receipt
		// included: refused, as the read routes refuse, to an agent no
		// longer active.
		return g, ErrUnknownAgent
	case in.Previous != nil:
		g.previous = in.Previous
		return g, nil
	case in.Agent == nil:
		return g, ErrUnknownAgent
	}
	agent := *in.Agent
	// No safer than its registration says: the policy and the receipt
	// see the same tier.
	tier, err := s.agents.tier(ctx, org, agent)
	if err != nil {
		return g, err
	}
	agent.RiskTier = tier
	g.agent = agent
	g.policySeq = in.PolicySeq
	g.input = Input{
		Action: v.inputAction(),
		Reason: v.Reason,
		Agent: Agent{
			ID: agent.ID, Name: agent.Name, Sponsor: agent.Sponsor,
			RiskTier: string(agent.RiskTier), Status: string(agent.Status), CreatedAt: agent.CreatedAt,
			Stats: AgentStats{Decisions1h: in.Stats.Decisions1h, Denials1h: in.Stats.Denials1h, Decisions24h: in.Stats.Decisions24h},
		},
		Tenant: Tenant{ID: org.ID, Slug: org.Slug},
		Time:   now,
	}
	if id := v.Action.Counterparty; id != "" {
		cp := in.Counterparty
		if cp == nil {
			// Another organization's counterparty is not visible here:
			// the same answer as one that never existed.
			return g, invalid("action.counterparty: the organization has no such counterparty")
		}
		// Status, age and history only: the bank details stay in the
		// store (PostgreSQL does not even read them). Verified only as
		// the log records it.
		status, err := s.counterparties.status(ctx, org, *cp)
		if err != nil {
			return g, err
		}
		g.input.Counterparty = &Counterparty{ID: cp.ID, Status: string(status), CreatedAt: cp.CreatedAt, PaymentsCount: in.Payments}
	}
	// The Keyring caches the signer; when it has to read the key, or the
	// organization's first key has to be made (and logged), that commits
	// before anything is signed with it.
	g.signer, err = s.receiptKeys.Signer(ctx, org)
	return g, err
}

// replay answers a request made again under the same Idempotency-Key with
// the answer decision d was given, or ErrIdempotencyMismatch when the
// request differs. A rare path: it reads in a transaction of its own.
func (s *Service) replay(ctx context.Context, org Organization, d store.Decision, requestSHA256 []byte) (Response, error) {
	if !sameDigest(d.RequestSHA256, requestSHA256) {
		return Response{}, ErrIdempotencyMismatch // no transaction to tell
	}
	var answered Response
	err := s.cfg.Tenants.InTenantReadTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		answered, err = s.replayIn(ctx, org, tx, d, requestSHA256)
		return err
	})
	return answered, err
}

// replayIn is replay in tx.
func (s *Service) replayIn(ctx context.Context, org Organization, tx store.TenantTx, d store.Decision, requestSHA256 []byte) (Response, error) {
	if !sameDigest(d.RequestSHA256, requestSHA256) {
		return Response{}, ErrIdempotencyMismatch
	}
	return s.readResponse(ctx, org, tx, d)
}

func sameDigest(a, b []byte) bool { return len(a) == len(b) && string(a) == string(b) }

// replayAfterRace is the end of a request that lost the race for its
// Idempotency-Key to another process: the winner's decision is the answer.
// The batch's check kept the loser's entries out of the log.
func (s *Service) replayAfterRace(ctx context.Context, org Organization, agentID string, keyHash, requestSHA256 []byte) (Response, error) {
	var answered Response
	err := s.cfg.Tenants.InTenantReadTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		d, err := tx.Decisions().ByIdempotencyKey(ctx, agentID, keyHash)
		if errors.Is(err, store.ErrNotFound) {
			// A conflict with no winner: not the agent's "no such
			// decision" (404), a fault of ours.
			return fmt.Errorf("decision: internal: an idempotency conflict, but no decision under the key: %v", err)
		}
		if err != nil {
			return fmt.Errorf("decision: reread after an idempotency conflict: %w", err)
		}
		answered, err = s.replayIn(ctx, org, tx, d, requestSHA256)
		return err
	})
	return answered, err
}
