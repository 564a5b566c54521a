package server

import (
	"context"
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// MountDecisions adds the agent routes of DESIGN §3 to the tenant plane:
// POST /v1/decisions, GET /v1/decisions/{id}, GET /v1/cases/{id}[?wait=].
// Every one requires an agent access token; an agent sees only its own
// decisions and cases (another agent's are 404, even in its organization).
// Each agent's POST /v1/decisions is bounded by Config.AgentDecisionRate,
// its reads by AgentAuthConfig.ReadRate.
func MountDecisions(p *Plane, auth *AgentAuth, svc *decision.Service, l *ledger.Ledger) {
	h := &decisionHandlers{svc: svc, ledger: l, auth: auth}
	if p.agents != nil {
		p.app.Post("/v1/decisions", auth.Require, p.agents.middleware(decisionsRefused), h.decide)
	} else {
		p.app.Post("/v1/decisions", auth.Require, h.decide)
	}
	p.app.Get("/v1/decisions/:id", auth.readRoute(h.getDecision)...)
	p.app.Get("/v1/decisions/:id/tlog-proof", auth.readRoute(h.tlogProof)...)
	p.app.Get("/v1/cases/:id", auth.readRoute(h.getCase)...)
}

type decisionHandlers struct {
	svc    *decision.Service
	ledger *ledger.Ledger
	auth   *AgentAuth
}

// tlogProof serves the c2sp.org/tlog-proof@v1 bundle of the calling
// agent's decision entry, against the log's newest checkpoint: what
// `agentsigna verify inclusion` (or any tlog-proof verifier) checks offline.
// The bundle's extra line holds the entry's exact leaf bytes, so a holder
// sees what the log says (kind, subject, time, record digest), not only a
// leaf hash. With ?entry=receipt it proves the entry of the decision's
// receipt instead: what `agentsigna verify receipt --tlog-proof` needs
// besides the receipt (404 when the decision has no receipt).
func (h *decisionHandlers) tlogProof(c *fiber.Ctx) error {
	agent, _ := AgentFrom(c)
	entry := c.Query("entry")
	indexOf := h.svc.DecisionIndex
	switch entry {
	case "", "decision":
	case "receipt":
		indexOf = h.svc.ReceiptIndex
	default:
		return Problem(ErrBadRequest, "entry must be decision or receipt.")
	}
	index, err := indexOf(c.UserContext(), orgOf(agent), agent.ID, c.Params("id"))
	if err != nil {
		return decisionError(err)
	}
	p, err := h.ledger.EntryInclusionProof(c.UserContext(), h.ledger.TenantLog(agent.Tenant.ID, agent.Tenant.Slug), index, 0)
	if err != nil {
		return ledgerError(err)
	}
	out := verify.Proof{Extra: p.Entry, Index: p.Index, Hashes: p.Hashes, Checkpoint: p.Checkpoint.Note}
	c.Set(fiber.HeaderContentType, "text/plain; charset=utf-8")
	return c.Send(out.Marshal())
}

func orgOf(a Agent) decision.Organization {
	return decision.Organization{ID: a.Tenant.ID, Slug: a.Tenant.Slug}
}

// decisionError maps the service's refusals to problems.
func decisionError(err error) error {
	switch {
	case errors.Is(err, decision.ErrInvalidRequest):
		// The service's messages name the field, never the value.
		return Problem(ErrBadRequest, err.Error())
	case errors.Is(err, decision.ErrIdempotencyMismatch):
		return Problem(ErrUnprocessable, "This Idempotency-Key was already used with another request.")
	case errors.Is(err, decision.ErrUnknownAgent):
		return Problem(ErrUnauthorized, "The access token is invalid or expired.")
	case errors.Is(err, decision.ErrTooManyWaits):
		return Problem(ErrTooManyRequests, "This agent has too many long polls open at once; wait for one to end.")
	case errors.Is(err, store.ErrNotFound):
		return Problem(ErrNotFound, "No such decision or case.")
	}
	return err
}

func (h *decisionHandlers) decide(c *fiber.Ctx) error {
	agent, _ := AgentFrom(c)
	var req decision.DecisionRequest
	if err := DecodeJSON(c, &req); err != nil {
		return err
	}
	resp, err := h.svc.Decide(c.UserContext(), orgOf(agent), agent.ID, req, c.Get("Idempotency-Key"))
	if err != nil {
		return decisionError(err)
	}
	return c.JSON(resp)
}

func (h *decisionHandlers) getDecision(c *fiber.Ctx) error {
	agent, _ := AgentFrom(c)
	resp, err := h.svc.GetDecision(c.UserContext(), orgOf(agent), agent.ID, c.Params("id"))
	if err != nil {
		return decisionError(err)
	}
	return c.JSON(resp)
}

// untilStoppingOrGone is c's user context, also ended when the server
// begins to stop, and once the client has closed its connection, as a
// check every clientCheckInterval finds (see peerGone): fasthttp does not
// tell a handler that its client left. It is not derived from fasthttp's
// RequestCtx, whose Done is the stop signal: such a context watches it
// from a goroutine of its own that may call its Value after the handler
// has returned and fasthttp has reset it for another request (a data
// race). Only the Done channel, the server's, and the connection are
// taken here, while the handler runs. The returned cancel waits for the
// watch to end: call it before the handler returns, after which fasthttp
// may read the connection again.
func untilStoppingOrGone(c *fiber.Ctx) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(c.UserContext())
	stopping, conn := c.Context().Done(), c.Context().Conn()
	if stopping == nil && conn == nil {
		return ctx, cancel
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		var tick <-chan time.Time
		if conn != nil {
			t := time.NewTicker(clientCheckInterval)
			defer t.Stop()
			tick = t.C
		}
		for {
			select {
			case <-stopping:
				cancel()
				return
			case <-tick:
				if peerGone(conn) {
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return ctx, func() { cancel(); <-ended }
}

// clientCheckInterval is how often a long poll checks that its client is
// still connected.
const clientCheckInterval = 500 * time.Millisecond

// getCase answers at once, or with ?wait=30s long-polls until the case
// leaves pending (at most decision.MaxCaseWait).
func (h *decisionHandlers) getCase(c *fiber.Ctx) error {
	agent, _ := AgentFrom(c)
	var view decision.CaseView
	var err error
	if w := c.Query("wait"); w != "" {
		d, perr := time.ParseDuration(w)
		if perr != nil || d < 0 || d > decision.MaxCaseWait {
			return Problem(ErrBadRequest, "wait must be a duration between 0s and 30s, e.g. wait=30s.")
		}
		// The poll's context ends when the server begins to stop: the
		// poll then answers with the case as it stands, so that stopping
		// waits for no poll (the agent polls again, elsewhere). It ends
		// too when the client has left, so that the agent's place among
		// its bounded polls (decision.Config.MaxCaseWaits) is free again.
		ctx, cancel := untilStoppingOrGone(c)
		defer cancel()
		// A token that ends, or whose key is retired, during the poll
		// ends it: 401, as the same request made afresh.
		view, err = h.svc.WaitCase(ctx, orgOf(agent), agent.ID, c.Params("id"), d, h.auth.still(agent))
		if errors.Is(err, context.Canceled) && ctx.Err() != nil && view.ID != "" {
			err = nil
		}
	} else {
		view, err = h.svc.GetCase(c.UserContext(), orgOf(agent), agent.ID, c.Params("id"))
	}
	if err != nil {
		return decisionError(err)
	}
	return c.JSON(view)
}
