package decision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// agentLog decides which risk tier of an agent row the policy sees: the
// riskier of the row's and the one the agent's registration entry records
// (agent.registered, the entry the row names, proven under the newest
// checkpoint the log key signed). Nothing logs a change of tier yet, so a
// row may make an agent riskier, never safer: the organization's database
// role could otherwise take a high-risk agent's payments out of the base
// policy's escalation. A row whose entry is not its registration is seen
// as critical, and reported once; so is a row that names no entry: one
// stored before agents named their entry cannot be told from one planted
// since, until an operator adopts it (identity.Agents.Adopt: its
// agent.adopted entry then stands for its registration).
type agentLog struct {
	ledger *ledger.Ledger
	logger *slog.Logger
	proofs rowProofs[agentRef, store.RiskTier] // what each registration records
}

type agentRef struct {
	tenant, id string
	index      uint64
	unnamed    bool // the row names no entry
}

// errAgentNotLogged: an agent row does not name its registration entry.
var errAgentNotLogged = errors.New("the agent is not the one the organization's log registered")

// tier is the risk tier of ag (a row of org) the policy sees.
func (l *agentLog) tier(ctx context.Context, org Organization, ag store.Agent) (store.RiskTier, error) {
	ref := agentRef{tenant: org.ID, id: ag.ID, unnamed: ag.LedgerIndex == nil}
	if !ref.unnamed {
		ref.index = *ag.LedgerIndex
	}
	registered, logged, err := l.proofs.get(ref, func() (store.RiskTier, error) { return l.registered(ctx, org, ag) }, errAgentNotLogged,
		func(err error) {
			l.logger.ErrorContext(ctx, "decision: an agent row does not name its registration in the organization's log, so was written behind the service's back or, naming no entry, not adopted; its decisions see it as critical",
				slog.String("tenant", org.Slug), slog.String("agent", ag.ID), slog.Any("reason", err))
		})
	switch {
	case err != nil:
		return "", err
	case !logged:
		return store.RiskCritical, nil
	}
	return riskier(ag.RiskTier, registered), nil
}

// registered is the risk tier ag's registration (or adoption) entry
// records.
func (l *agentLog) registered(ctx context.Context, org Organization, ag store.Agent) (store.RiskTier, error) {
	if ag.LedgerIndex == nil {
		return "", fmt.Errorf("%w: it names no entry (planted, or stored before agents were logged and not adopted since)", errAgentNotLogged)
	}
	index := *ag.LedgerIndex
	rec, err := loggedRecord[identity.AgentRecord](ctx, l.ledger, org, index, ag.ID, errAgentNotLogged, identity.KindAgentRegistered, identity.KindAgentAdopted)
	switch {
	case err != nil:
		return "", err
	case rec.Event != "agent_registered" && rec.Event != "agent_adopted" || rec.AgentID != ag.ID || store.CheckRiskTier(rec.RiskTier) != nil:
		return "", fmt.Errorf("%w: entry %d records another agent", errAgentNotLogged, index)
	}
	return rec.RiskTier, nil
}

// riskier is the riskier of two tiers; a tier it does not know is
// critical.
func riskier(a, b store.RiskTier) store.RiskTier {
	if store.CheckRiskTier(a) != nil || store.CheckRiskTier(b) != nil {
		return store.RiskCritical
	}
	if store.RiskRank(a) >= store.RiskRank(b) {
		return a
	}
	return b
}
