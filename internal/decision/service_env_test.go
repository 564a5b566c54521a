package decision_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
	"github.com/agentsigna/agentsigna/internal/store/teststore"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/policies"
)

const (
	publicURL = "https://agentsigna.test"
	logOrigin = "agentsigna.test"
)

var storeKinds = []string{"sqlite", "postgres"}

// serviceEnv is one backend with an organization "acme" and a decision
// Service over it, as the tenant plane wires them.
type serviceEnv struct {
	backend  store.Backend
	plant    teststore.Planter // writes the store behind the service's back
	master   *secrets.MasterKey
	ledger   *ledger.Ledger
	engine   *bundles.Engine
	policies *decision.Policies
	service  *decision.Service
	org      decision.Organization
	clock    *testClock
	// workers, when set, is what services built from now on compile and
	// evaluate organization policies in (as the service does).
	workers *bundles.Workers
	// evalTimeout is the evaluation deadline of services built from now
	// on; 0 means 10 s.
	evalTimeout time.Duration
}

// testClock is the Service's clock; it runs with real time from an offset
// that tests move forward.
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

func newServiceEnv(t testing.TB, kind string) *serviceEnv {
	t.Helper()
	b, plant := teststore.OpenPlantable(t, kind)
	master, err := secrets.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	e := &serviceEnv{backend: b, plant: plant, master: master, clock: &testClock{}}
	tn := storetest.CreateTenant(t, b, "acme")
	e.org = decision.Organization{ID: tn.ID, Slug: tn.Slug}
	e.ledger = e.newLedger(t)
	e.engine, e.policies, e.service = e.newService(t, e.ledger, decision.Config{})
	return e
}

func (e *serviceEnv) newLedger(t testing.TB) *ledger.Ledger {
	t.Helper()
	return e.newLedgerOver(t, e.backend)
}

// newLedgerOver is a ledger (another process's) whose batches go through
// tenants.
func (e *serviceEnv) newLedgerOver(t testing.TB, tenants store.TenantStore) *ledger.Ledger {
	t.Helper()
	kr, err := signing.NewKeyring(e.master)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.New(ledger.Config{Tenants: tenants, Platform: e.backend, Keys: kr, Origin: logOrigin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// newService builds what a (re)started process builds: a fresh engine,
// evaluator, policies and service over the env's store and l. cfg's zero
// fields are filled.
func (e *serviceEnv) newService(t testing.TB, l *ledger.Ledger, cfg decision.Config) (*bundles.Engine, *decision.Policies, *decision.Service) {
	t.Helper()
	return e.newServiceOver(t, l, e.backend, bundles.Limits{}, cfg)
}

// newServiceOver is newService over tenants, with the bundle limits of its
// build (zero: the defaults).
func (e *serviceEnv) newServiceOver(t testing.TB, l *ledger.Ledger, tenants store.Backend, limits bundles.Limits, cfg decision.Config) (*bundles.Engine, *decision.Policies, *decision.Service) {
	t.Helper()
	kr, err := signing.NewKeyring(e.master)
	if err != nil {
		t.Fatal(err)
	}
	engine := bundles.NewEngine()
	timeout := e.evalTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ev, err := decision.NewEvaluator(context.Background(), engine, decision.Options{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	pols := decision.NewPolicies(tenants, l, engine, decision.PoliciesOptions{Limits: limits, Workers: e.workers})
	cfg.Tenants, cfg.Ledger, cfg.Keyring, cfg.Evaluator, cfg.Policies = tenants, l, kr, ev, pols
	cfg.PublicURL = publicURL
	if cfg.Now == nil {
		cfg.Now = e.clock.Now
	}
	s, err := decision.NewService(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return engine, pols, s
}

func (e *serviceEnv) inTenant(t testing.TB, tenantID string, fn func(ctx context.Context, tx store.TenantTx) error) {
	t.Helper()
	if err := e.backend.InTenantTx(context.Background(), tenantID, fn); err != nil {
		t.Fatal(err)
	}
}

// activate uploads and activates a bundle as the organization's policy.
func (e *serviceEnv) activate(t testing.TB, raw []byte) {
	t.Helper()
	ctx := context.Background()
	b, err := e.policies.Upload(ctx, e.org, raw, "usr_author")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.policies.Activate(ctx, e.org, b.Revision, "usr_author", "usr_reviewer", false); err != nil {
		t.Fatal(err)
	}
}

// acmeBundle is the example policy of policies/examples/acme.
func acmeBundle(t testing.TB) []byte {
	t.Helper()
	raw, err := bundles.PackFS(policies.ExampleACME(), bundles.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// permissiveBundle allows everything: what the base policy still escalates
// or denies is then the base's doing alone.
func permissiveBundle(t testing.TB) []byte {
	return regoBundle(t, "permissive-1", "package tenant\n\ndecision := {\"allow\": true}\n")
}

// regoBundle packs an organization bundle of revision holding one policy
// file, rego.
func regoBundle(t testing.TB, revision, rego string) []byte {
	t.Helper()
	raw, err := bundles.PackFS(fstest.MapFS{
		".manifest":            {Data: []byte(`{"revision":"` + revision + `","roots":["tenant"],"rego_version":1}`)},
		"tenant/decision.rego": {Data: []byte(rego)},
	}, bundles.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (e *serviceEnv) agent(t testing.TB, tier store.RiskTier) store.Agent {
	t.Helper()
	return e.agentIn(t, e.org, tier)
}

// agentIn registers an agent of org, logged, as the CLI does.
func (e *serviceEnv) agentIn(t testing.TB, org decision.Organization, tier store.RiskTier) store.Agent {
	t.Helper()
	agents, err := identity.NewAgents(e.ledger, e.backend)
	if err != nil {
		t.Fatal(err)
	}
	kid, public, _, err := identity.GenerateAgentKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := agents.Register(context.Background(), store.TenantRef{ID: org.ID, Slug: org.Slug},
		store.Agent{Name: "ap-bot", Sponsor: "usr_sponsor", RiskTier: tier}, store.AgentKey{KID: kid, PublicJWK: public})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// loggingEnv is a service over kind's store with the acme example policy
// active, whose log the test reads.
func loggingEnv(t testing.TB, kind string) (*serviceEnv, *lockedBuffer) {
	t.Helper()
	e := newServiceEnv(t, kind)
	logs := &lockedBuffer{}
	_, _, e.service = e.newService(t, e.ledger, decision.Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	e.activate(t, acmeBundle(t))
	return e, logs
}

// payingEnv is a service over kind's store with the acme example policy
// active, a low-risk agent, and a verified counterparty it may pay.
func payingEnv(t testing.TB, kind string) (e *serviceEnv, agent store.Agent, payee store.Counterparty) {
	t.Helper()
	e = newServiceEnv(t, kind)
	e.activate(t, acmeBundle(t))
	return e, e.agent(t, store.RiskLow), e.counterparty(t, e.org, store.CounterpartyVerified)
}

// counterparty adds a counterparty to org, logged, as the CLI does.
func (e *serviceEnv) counterparty(t testing.TB, org decision.Organization, status store.CounterpartyStatus) store.Counterparty {
	t.Helper()
	cps, err := decision.NewCounterparties(e.ledger)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cps.Add(context.Background(), org, store.Counterparty{Name: "Payee", Status: status, BankDetailsSealed: []byte("sealed")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *serviceEnv) log() ledger.Log { return e.ledger.TenantLog(e.org.ID, e.org.Slug) }

// ledgerSize is the organization's log size (0 when empty).
func (e *serviceEnv) ledgerSize(t testing.TB) uint64 {
	t.Helper()
	cp, err := e.ledger.LatestCheckpoint(context.Background(), e.log())
	if err != nil {
		return 0
	}
	return cp.Size
}

// payment is a payment.send request of value EUR to counterparty.
func payment(value, counterparty string) decision.DecisionRequest {
	return decision.DecisionRequest{
		Action: decision.RequestAction{
			Type: "payment.send", Resource: "invoice:INV-2291", Counterparty: counterparty,
			Amount: &decision.Amount{Value: value, Currency: "EUR"},
			Params: json.RawMessage(`{"po":"PO-77"}`),
		},
		Reason: "Pay approved invoice INV-2291",
	}
}

func action(typ string) decision.DecisionRequest {
	return decision.DecisionRequest{Action: decision.RequestAction{Type: typ}, Reason: "test"}
}

// entry is the JSON of a ledger leaf (DESIGN §4).
type entry struct {
	V       int    `json:"v"`
	Index   uint64 `json:"index"`
	Kind    string `json:"kind"`
	Subject string `json:"subject"`
	Digest  string `json:"digest"`
}

// entryAt reads the leaf at index and its record, and checks the leaf's
// digest covers the record.
func (e *serviceEnv) entryAt(t testing.TB, index uint64) (entry, []byte) {
	t.Helper()
	le, err := e.ledger.Entry(context.Background(), e.log(), index)
	if err != nil {
		t.Fatal(err)
	}
	var got entry
	if err := json.Unmarshal(le.Entry, &got); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(le.Record)
	if got.Digest != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Fatalf("entry %d: digest does not cover its record", index)
	}
	return got, le.Record
}

// verifyLedger checks a response's ledger part the way an auditor does,
// with public code only: the checkpoint with x/mod/sumdb/note against the
// log's published key, the inclusion proof with transparency-dev/merkle,
// and the entry being the decision's.
func (e *serviceEnv) verifyLedger(t testing.TB, resp decision.Response) {
	t.Helper()
	vkey, err := e.ledger.VerifierKey(context.Background(), e.log())
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open([]byte(resp.Ledger.Checkpoint), note.VerifierList(verifier))
	if err != nil {
		t.Fatalf("checkpoint does not verify with x/mod/sumdb/note: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) != 4 || lines[0] != logOrigin+"/t/acme" || lines[3] != "" {
		t.Fatalf("checkpoint text %q", n.Text)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil {
		t.Fatal(err)
	}
	le, err := e.ledger.Entry(context.Background(), e.log(), resp.Ledger.Index)
	if err != nil {
		t.Fatal(err)
	}
	if leaf := rfc6962.DefaultHasher.HashLeaf(le.Entry); !bytes.Equal(leaf, resp.Ledger.LeafHash) {
		t.Fatal("leaf_hash is not the RFC 6962 hash of the entry")
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, resp.Ledger.Index, size, resp.Ledger.LeafHash, resp.Ledger.InclusionProof, root); err != nil {
		t.Fatalf("inclusion proof does not verify against the checkpoint: %v", err)
	}
	got, rec := e.entryAt(t, resp.Ledger.Index)
	if got.Kind != decision.KindDecision || got.Subject != resp.DecisionID {
		t.Fatalf("the response's entry is %+v, not decision %s", got, resp.DecisionID)
	}
	var dr struct {
		DecisionID string   `json:"decision_id"`
		Outcome    string   `json:"outcome"`
		Reasons    []string `json:"reasons"`
	}
	if err := json.Unmarshal(rec, &dr); err != nil || dr.DecisionID != resp.DecisionID || dr.Outcome != string(resp.Outcome) || strings.Join(dr.Reasons, ",") != strings.Join(resp.Reasons, ",") {
		t.Fatalf("decision record %s does not match the response (%v)", rec, err)
	}
}

// jwks is the organization's receipt JWKS, as served publicly.
func (e *serviceEnv) jwks(t testing.TB) []byte {
	t.Helper()
	kr, err := signing.NewKeyring(e.master)
	if err != nil {
		t.Fatal(err)
	}
	var set []byte
	e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		set, err = kr.JWKS(ctx, tx.Keys(), e.org.ID, store.PurposeReceipt)
		return err
	})
	return set
}

// decide calls Decide and fails the test on error.
func (e *serviceEnv) decide(t testing.TB, agentID string, req decision.DecisionRequest, key string) decision.Response {
	t.Helper()
	resp, err := e.service.Decide(context.Background(), e.org, agentID, req, key)
	if err != nil {
		t.Fatalf("Decide(%s): %v", req.Action.Type, err)
	}
	return resp
}

// activeBundleSHA256 is the SHA-256 of the organization's active bundle's
// stored bytes in standard base64: what receipts cite (DESIGN §3).
func (e *serviceEnv) activeBundleSHA256(t testing.TB) string {
	t.Helper()
	var raw []byte
	e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
		_, b, err := tx.Policies().ActiveBundle(ctx)
		raw = b.Bundle
		return err
	})
	sum := sha256.Sum256(raw)
	return base64.StdEncoding.EncodeToString(sum[:])
}
