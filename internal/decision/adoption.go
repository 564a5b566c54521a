package decision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// Adopter binds an organization's rows that name no ledger entry — agents,
// agent keys and counterparties stored before rows named their entry, or
// planted since, which nothing tells apart — to entries, once an operator
// has checked them (agentsigna ledger adopt). Until then the service
// trusts them with nothing.
//
// It reads the organization's log first (Plan), as ledger verify does,
// and binds each row to the entries the log holds of it already (a
// registration, a key's introduction, a counterparty's creation); a row
// the log does not record is logged as found, by a new agent.adopted or
// counterparty.adopted entry; a row that says otherwise than its entries
// is refused, named, as ledger verify would fail it. The plan's Digest
// names what the operator saw: Adopt carries out only that plan.
type Adopter struct {
	ledger  *ledger.Ledger
	tenants store.TenantStore
	agents  *identity.Agents
}

// NewAdopter returns the adopter of the rows of tenants' organizations,
// logged in l.
func NewAdopter(l *ledger.Ledger, tenants store.TenantStore) (*Adopter, error) {
	agents, err := identity.NewAgents(l, tenants)
	if err != nil {
		return nil, err
	}
	return &Adopter{ledger: l, tenants: tenants, agents: agents}, nil
}

// AdoptionPlan is what Adopt would do with an organization's rows that
// name no entry.
type AdoptionPlan struct {
	Agents         []identity.Adoption
	Counterparties []CounterpartyAdoption
	// Refused says, for each row not adopted, why: what ledger verify
	// would fail once it named its entry.
	Refused []string
}

// CounterpartyAdoption binds a counterparty that names no entry: to
// Recorded, the entry that recorded it already, or, nil, to a new
// counterparty.adopted entry recording it as found.
type CounterpartyAdoption struct {
	Counterparty store.Counterparty // sealed bank details included
	Recorded     *uint64
}

// Empty reports whether the plan adopts and refuses nothing.
func (p AdoptionPlan) Empty() bool {
	return len(p.Agents) == 0 && len(p.Counterparties) == 0 && len(p.Refused) == 0
}

// Digest is the SHA-256 of everything the plan lists, in hex: every
// member of every row it binds, the entries it binds them to, and what
// it refuses. An operator confirms a plan by its digest, so that rows
// changed, added or planted after the listing are not adopted unseen.
func (p AdoptionPlan) Digest() string {
	b, err := json.Marshal(p)
	if err != nil {
		panic(err) // not reached: every member marshals
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ErrPlanChanged: the rows are not those of the plan the operator
// confirmed.
var ErrPlanChanged = errors.New("decision: the rows to adopt changed since they were listed")

// ErrUnverifiedLog: the organization's log does not verify, so no row is
// held to it.
var ErrUnverifiedLog = errors.New("decision: the organization's log does not verify")

// Plan reads org's log, verifying its entries and checkpoints as ledger
// verify does (with the key stored with it), and its rows that name no
// entry, and says what Adopt would do with each. A log that does not
// verify adopts nothing (ErrUnverifiedLog); one never begun (no entries,
// no key) is read as empty, as ledger verify reads it.
func (a *Adopter) Plan(ctx context.Context, org Organization) (AdoptionPlan, error) {
	rows := NewRowLog()
	var plan AdoptionPlan
	planned := false
	rep, err := a.ledger.CheckWith(ctx, a.ledger.TenantLog(org.ID, org.Slug), "", ledger.CheckOptions{
		CheckRecord: rows.Entry,
		CheckRows: func(ctx context.Context, tx store.TenantTx) error {
			var err error
			plan, err = rows.planAdoption(ctx, tx)
			planned = err == nil
			return err
		},
	})
	switch {
	case errors.Is(err, signing.ErrNoLogKey) && planned && rep.Problem == nil && rep.Size == 0:
		return plan, nil
	case err != nil:
		return AdoptionPlan{}, err
	case rep.Problem != nil:
		return AdoptionPlan{}, fmt.Errorf("%w (entry %d: %s); nothing is adopted into it", ErrUnverifiedLog, rep.Problem.Index, rep.Problem.Reason)
	}
	return plan, nil
}

// Adopt carries out the plan whose Digest is digest, as Plan makes it now:
// ErrPlanChanged when the rows changed since (list them again). Each row
// (an agent with its keys) is bound in a transaction of its own, with
// its entry when it needs one, and only if it is still as the plan lists
// it: a row changed meanwhile (store.ErrConflict) is left unbound, the
// others are bound all the same, and Adopt then fails, naming how many
// were not. report is told of each row, with its error if it was not
// bound; the plan's refusals are left as they are. Any other error (the
// store's, the log's) stops it.
func (a *Adopter) Adopt(ctx context.Context, org Organization, digest string, report func(what string, index uint64, err error)) (AdoptionPlan, error) {
	plan, err := a.Plan(ctx, org)
	if err != nil {
		return plan, err
	}
	if got := plan.Digest(); got != digest {
		return plan, fmt.Errorf("%w: the listing now is %s, not %s; nothing adopted: list them again", ErrPlanChanged, got, digest)
	}
	ref := store.TenantRef{ID: org.ID, Slug: org.Slug}
	failed := 0
	outcome := func(what string, index uint64, err error) error {
		switch {
		case errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrNotFound):
			failed++
		case err != nil:
			return err
		}
		report(what, index, err)
		return nil
	}
	for _, ad := range plan.Agents {
		index, err := a.agents.Adopt(ctx, ref, ad)
		if err := outcome(DescribeAgentAdoption(ad), index, err); err != nil {
			return plan, err
		}
	}
	for _, ca := range plan.Counterparties {
		index, err := a.adoptCounterparty(ctx, org, ca)
		if err := outcome(DescribeCounterpartyAdoption(ca), index, err); err != nil {
			return plan, err
		}
	}
	if failed > 0 {
		return plan, fmt.Errorf("%w: %d of %d rows were not bound; list them again", ErrPlanChanged, failed, len(plan.Agents)+len(plan.Counterparties))
	}
	return plan, nil
}

// adoptCounterparty binds ca's row, as listed, to its entry.
func (a *Adopter) adoptCounterparty(ctx context.Context, org Organization, ca CounterpartyAdoption) (uint64, error) {
	cp := ca.Counterparty
	// Bound first, then compared with the listing, as identity's Adopt
	// does: bound, the row is this transaction's until it ends.
	bind := func(ctx context.Context, tx store.TenantTx, at uint64) error {
		if err := tx.Counterparties().Adopt(ctx, cp.ID, at); err != nil {
			return err
		}
		now, err := tx.Counterparties().Get(ctx, cp.ID)
		if err != nil {
			return err
		}
		if now.LedgerIndex == nil || *now.LedgerIndex != at || now.Name != cp.Name || now.Status != cp.Status || !bytes.Equal(now.BankDetailsSealed, cp.BankDetailsSealed) {
			return fmt.Errorf("%w: counterparty %s changed since it was listed; list it again", store.ErrConflict, cp.ID)
		}
		return nil
	}
	if ca.Recorded != nil {
		at := *ca.Recorded
		return at, a.tenants.InTenantTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error { return bind(ctx, tx, at) })
	}
	b, err := json.Marshal(CounterpartyRecord{Event: "counterparty_adopted", CounterpartyID: cp.ID, Name: cp.Name,
		Status: string(cp.Status), BankDetailsSealedSHA256: bankDigest(cp.BankDetailsSealed)})
	if err != nil {
		return 0, err
	}
	var index uint64
	_, err = a.ledger.AppendAllAndChange(ctx, a.ledger.TenantLog(org.ID, org.Slug),
		[]ledger.Entry{{Kind: KindCounterpartyAdopted, Subject: cp.ID, Record: b}},
		func(ctx context.Context, tx store.TenantTx, at uint64) error {
			index = at
			return bind(ctx, tx, at)
		})
	return index, err
}

// bankDigest is how a counterparty entry records sealed bank details: the
// SHA-256 in standard base64, "" for none.
func bankDigest(sealed []byte) string {
	if sealed == nil {
		return ""
	}
	sum := sha256.Sum256(sealed)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// planAdoption lists, in tx, the rows that name no entry, and holds each
// to what the entries read say of it.
func (r *RowLog) planAdoption(ctx context.Context, tx store.TenantTx) (AdoptionPlan, error) {
	var plan AdoptionPlan
	u, err := identity.ReadUnbound(ctx, tx)
	if err != nil {
		return plan, err
	}
	for _, ua := range u.Agents {
		ag := ua.Agent
		ad := identity.Adoption{Agent: &ag, Keys: ua.Keys, Introduced: map[string]uint64{}}
		if why := adoptable(ad); why != "" {
			plan.Refused = append(plan.Refused, why)
			continue
		}
		if why := r.planAgent(&ad); why != "" {
			plan.Refused = append(plan.Refused, why)
			continue
		}
		plan.Agents = append(plan.Agents, ad)
	}
	// Keys naming no entry of agents that name theirs (ReadUnbound lists
	// them by agent): each bound to the entry that introduced it, if one
	// did, an agent's all or none, as its rows are compared whole.
	for i := 0; i < len(u.Keys); {
		agentID := u.Keys[i].AgentID
		ad := identity.Adoption{Introduced: map[string]uint64{}}
		var refused []string
		for ; i < len(u.Keys) && u.Keys[i].AgentID == agentID; i++ {
			k := u.Keys[i]
			l := r.agents[agentID]
			if err := identity.CheckAdoptableKey(k); err != nil {
				refused = append(refused, err.Error())
				continue
			}
			if l == nil || l.keys[k.KID] == nil {
				refused = append(refused, fmt.Sprintf("key %s of agent %s names no entry, and no entry introduced it", k.KID, agentID))
				continue
			}
			switch why := l.keyProblem(k, agentID); {
			case why != "":
				refused = append(refused, why)
			default:
				ad.Keys = append(ad.Keys, k)
				ad.Introduced[k.KID] = l.keys[k.KID].introduced
			}
		}
		if len(refused) > 0 {
			plan.Refused = append(plan.Refused, refused...)
			continue
		}
		plan.Agents = append(plan.Agents, ad)
	}
	cps, err := tx.Counterparties().List(ctx)
	if err != nil {
		return plan, err
	}
	for _, cp := range cps {
		if cp.LedgerIndex != nil {
			continue
		}
		// List reads no bank details.
		full, err := tx.Counterparties().Get(ctx, cp.ID)
		if err != nil {
			return plan, err
		}
		ca := CounterpartyAdoption{Counterparty: full}
		if err := store.CheckCounterparty(full); err != nil {
			plan.Refused = append(plan.Refused, fmt.Sprintf("counterparty %q: %v", cp.ID, err))
			continue
		}
		if l, ok := r.counterparties[cp.ID]; ok {
			if why := l.rowProblem(full); why != "" {
				plan.Refused = append(plan.Refused, why)
				continue
			}
			index := l.index
			ca.Recorded = &index
		}
		plan.Counterparties = append(plan.Counterparties, ca)
	}
	return plan, nil
}

// adoptable refuses an agent, or a key of it, that its rows could not
// hold or that no agent could register today, as Adopt would: it says
// why, quoting what it read, or "".
func adoptable(ad identity.Adoption) string {
	if err := store.CheckAgent(*ad.Agent); err != nil {
		return fmt.Sprintf("agent %q: %v", ad.Agent.ID, err)
	}
	for _, k := range ad.Keys {
		if err := identity.CheckAdoptableKey(k); err != nil {
			return fmt.Sprintf("agent %s: %v", ad.Agent.ID, err)
		}
	}
	return ""
}

// DescribeAgentAdoption says what ad binds, for the operator.
func DescribeAgentAdoption(ad identity.Adoption) string {
	var b strings.Builder
	switch ag := ad.Agent; {
	case ag == nil:
		fmt.Fprintf(&b, "keys of agent %s", ad.Keys[0].AgentID)
	case ad.Registered != nil:
		fmt.Fprintf(&b, "agent %s name=%q sponsor=%q risk_tier=%s status=%s, to entry %d, which registered it", ag.ID, ag.Name, ag.Sponsor, ag.RiskTier, ag.Status, *ad.Registered)
	default:
		fmt.Fprintf(&b, "agent %s name=%q sponsor=%q risk_tier=%s status=%s, to a new agent.adopted entry", ag.ID, ag.Name, ag.Sponsor, ag.RiskTier, ag.Status)
	}
	for _, k := range ad.Keys {
		// Compacted: a JWK's spaces and line breaks are the row's to
		// choose, and could hide the line on a terminal.
		var jwk bytes.Buffer
		if json.Compact(&jwk, []byte(k.PublicJWK)) != nil {
			jwk.Reset()
			jwk.WriteString(strconv.Quote(k.PublicJWK))
		}
		fmt.Fprintf(&b, "; key %s (%s) %s", k.KID, k.Status, jwk.String())
		if index, ok := ad.Introduced[k.KID]; ok {
			fmt.Fprintf(&b, ", to entry %d, which introduced it", index)
		}
	}
	return b.String()
}

// DescribeCounterpartyAdoption says what ca binds, for the operator: its
// bank details by the SHA-256 of their sealed form, as entries record them.
func DescribeCounterpartyAdoption(ca CounterpartyAdoption) string {
	cp := ca.Counterparty
	bank := bankDigest(cp.BankDetailsSealed)
	if bank == "" {
		bank = "none"
	}
	s := fmt.Sprintf("counterparty %s name=%q status=%s bank_details_sealed_sha256=%s", cp.ID, cp.Name, cp.Status, bank)
	if ca.Recorded != nil {
		return s + fmt.Sprintf(", to entry %d, which recorded it", *ca.Recorded)
	}
	return s + ", to a new counterparty.adopted entry"
}

// planAgent holds an agent that names no entry, and its keys that name
// none, to the entries read: an agent the log registered (or adopted) is
// bound to that entry, if its row says what the entry says; its keys to
// the entries that introduced them. It returns why not, or "".
func (r *RowLog) planAgent(ad *identity.Adoption) string {
	ag := ad.Agent
	l := r.agents[ag.ID]
	if l == nil {
		l = &loggedAgent{keys: map[string]*loggedAgentKey{}}
	}
	if l.registered != nil {
		if why := l.rowProblem(*ag); why != "" {
			return why
		}
		index := *l.registered
		ad.Registered = &index
	} else if why := l.statusProblem(ag.ID, ag.Status); why != "" {
		// Suspended by an entry before its adoption.
		return why
	}
	for _, k := range ad.Keys {
		if why := l.keyProblem(k, ag.ID); why != "" {
			return why
		}
		switch lk, ok := l.keys[k.KID]; {
		case ok:
			ad.Introduced[k.KID] = lk.introduced
		case l.registered != nil:
			return fmt.Sprintf("key %s of agent %s names no entry, and no entry introduced it, though entry %d registered the agent", k.KID, ag.ID, *l.registered)
		}
	}
	return ""
}
