package decision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/policies"
)

func newEvaluator(t testing.TB, opts Options) (*Evaluator, *bundles.Engine) {
	t.Helper()
	engine := bundles.NewEngine()
	ev, err := NewEvaluator(context.Background(), engine, opts)
	if err != nil {
		t.Fatal(err)
	}
	return ev, engine
}

// acmePolicy reads and compiles the example organization repository.
func acmePolicy(t testing.TB) *bundles.Policy {
	t.Helper()
	raw, err := bundles.PackFS(policies.ExampleACME(), bundles.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundles.Read(raw, bundles.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := bundles.Compile(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// acmeInWorker loads the example organization repository in a worker
// process, as the service does.
func acmeInWorker(t testing.TB) *bundles.Policy {
	t.Helper()
	ws, err := bundles.NewWorkers(bundles.WorkerOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ws.Close)
	raw, err := bundles.PackFS(policies.ExampleACME(), bundles.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := ws.Load(context.Background(), raw, bundles.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEvaluateWithExamplePolicy(t *testing.T) {
	ev, engine := newEvaluator(t, Options{})
	engine.Activate("t_1", acmePolicy(t))
	ctx := context.Background()
	pay := func(value string, mutate ...func(*Input)) Input {
		in := defaultInput()
		in.Action.Amount.Value = value
		for _, m := range mutate {
			m(&in)
		}
		return in
	}
	for _, tc := range []struct {
		name      string
		in        Input
		want      Outcome
		reasons   []string
		approvals int
	}{
		{"small payment", pay("999.99"), Allow, []string{}, 0},
		{"above the limit", pay("1000.01"), Escalate, []string{"amount_above_limit"}, 1},
		{"far above the limit", pay("30000"), Escalate, []string{"amount_above_limit"}, 2},
		{"unverified counterparty", pay("10", func(in *Input) { in.Counterparty.Status = "new" }), Escalate, []string{"unverified_counterparty"}, 1},
		{"high tier agent above the limit", pay("5000", func(in *Input) { in.Agent.RiskTier = "high" }), Escalate, []string{"high_tier_money_movement", "amount_above_limit"}, 1},
		{"report", pay("0", func(in *Input) { in.Action = Action{Type: "report.generate"} }), Allow, []string{}, 0},
		{"anything else", pay("0", func(in *Input) { in.Action = Action{Type: "invoice.approve"} }), Deny, []string{ReasonNoAuthority}, 0},
		{"bank details", pay("0", func(in *Input) { in.Action = Action{Type: "counterparty.bank_details.update"} }), Escalate, []string{"high_risk_category:counterparty.bank_details"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ev.Evaluate(ctx, tc.in)
			if got.Outcome != tc.want || strings.Join(got.Reasons, ",") != strings.Join(tc.reasons, ",") || got.ApprovalsRequired != tc.approvals {
				t.Errorf("got %s %q %d, want %s %q %d (%q)", got.Outcome, got.Reasons, got.ApprovalsRequired, tc.want, tc.reasons, tc.approvals, got.Errors)
			}
		})
	}
}

func TestEvaluateTimeoutOption(t *testing.T) {
	raw := (&decisionCase{}).withLoop(t)
	b, err := bundles.Read(raw, bundles.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := bundles.Compile(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := newEvaluator(t, Options{Timeout: 20 * time.Millisecond})
	start := time.Now()
	got := ev.EvaluateWith(context.Background(), p, defaultInput())
	if got.Outcome != Deny || strings.Join(got.Reasons, ",") != ReasonPolicyTimeout {
		t.Errorf("got %s %q", got.Outcome, got.Reasons)
	}
	if len(got.Errors) != 1 || !strings.Contains(got.Errors[0], "organization policy") {
		t.Errorf("errors = %q", got.Errors)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	// The caller's own cancellation denies too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := ev.EvaluateWith(ctx, nil, defaultInput()); got.Outcome != Deny || got.Reasons[0] != ReasonPolicyTimeout {
		t.Errorf("cancelled: %s %q", got.Outcome, got.Reasons)
	}
}

// One organization's evaluations run at most Options.OrganizationEvaluations
// at once: with its places held (by calls past their deadline, which run
// on), its next request waits within its own timeout and denies
// (policy_timeout), while another organization's evaluates as usual.
func TestOrganizationEvaluationsBounded(t *testing.T) {
	// A timeout long enough for a slow evaluation under -race: only the
	// request that waits for a place waits it out.
	ev, engine := newEvaluator(t, Options{Timeout: time.Second, OrganizationEvaluations: 2})
	engine.Activate("t_1", acmePolicy(t))
	engine.Activate("t_2", acmePolicy(t))
	ctx := context.Background()
	of := func(org string) Input {
		in := defaultInput()
		in.Tenant.ID = org
		return in
	}
	places := ev.placesOf("t_1")
	places <- struct{}{}
	if got := ev.Evaluate(ctx, of("t_1")); got.Outcome != Allow {
		t.Fatalf("with a place left: %s %q %q", got.Outcome, got.Reasons, got.Errors)
	}
	places <- struct{}{}
	got := ev.Evaluate(ctx, of("t_1"))
	if got.Outcome != Deny || strings.Join(got.Reasons, ",") != ReasonPolicyTimeout ||
		len(got.Errors) != 1 || !strings.Contains(got.Errors[0], "waiting for the organization's other evaluations") {
		t.Fatalf("with every place held: %s %q %q", got.Outcome, got.Reasons, got.Errors)
	}
	if got := ev.Evaluate(ctx, of("t_2")); got.Outcome != Allow {
		t.Errorf("another organization: %s %q %q", got.Outcome, got.Reasons, got.Errors)
	}
	<-places
	if got := ev.Evaluate(ctx, of("t_1")); got.Outcome != Allow {
		t.Errorf("a place freed: %s %q %q", got.Outcome, got.Reasons, got.Errors)
	}
	if n := len(places); n != 1 {
		t.Errorf("%d places held after the evaluations ended, want 1 (the test's)", n)
	}

	// A policy in a worker takes no place: it holds its worker's
	// processor, not this process's, and its requests queue there.
	engine.Activate("t_1", acmeInWorker(t))
	places <- struct{}{}
	if got := ev.Evaluate(ctx, of("t_1")); got.Outcome != Allow {
		t.Errorf("in a worker, with every place held: %s %q %q", got.Outcome, got.Reasons, got.Errors)
	}
}

func (c *decisionCase) withLoop(t testing.TB) []byte {
	c.Tenant = &struct {
		Files map[string]json.RawMessage `json:"files"`
	}{Files: map[string]json.RawMessage{"tenant/p.rego": json.RawMessage(`["package tenant", "decision := {\"allow\": true} if {", "some a in numbers.range(1, 100000)", "some b in numbers.range(1, 100000)", "a + b < 0", "}"]`)}}
	return c.bundle(t)
}

func TestEvaluateBadInputDenies(t *testing.T) {
	ev, _ := newEvaluator(t, Options{})
	in := defaultInput()
	in.Action.Params = map[string]any{"ch": make(chan int)} // not JSON
	got := ev.Evaluate(context.Background(), in)
	if got.Outcome != Deny || got.Reasons[0] != ReasonPolicyError || len(got.Errors) == 0 {
		t.Errorf("got %s %q %q", got.Outcome, got.Reasons, got.Errors)
	}
}

func TestNewEvaluatorOptions(t *testing.T) {
	if _, err := NewEvaluator(context.Background(), nil, Options{}); err == nil {
		t.Error("nil engine accepted")
	}
	if _, err := NewEvaluator(context.Background(), bundles.NewEngine(), Options{Timeout: -1}); err == nil {
		t.Error("negative timeout accepted")
	}
	if _, err := NewEvaluator(context.Background(), bundles.NewEngine(), Options{OrganizationEvaluations: -1}); err == nil {
		t.Error("negative OrganizationEvaluations accepted")
	}
	ev, _ := newEvaluator(t, Options{})
	// The base revision covers the Rego and the rule in Go: a change to
	// either changes it.
	sum := sha256.Sum256([]byte(policies.BaseRevision() + "\x00" + bankRuleRevision))
	if ev.timeout != DefaultTimeout || ev.BaseRevision() != hex.EncodeToString(sum[:]) || ev.BaseRevision() == policies.BaseRevision() ||
		!strings.Contains(bankRuleRevision, "iban") {
		t.Errorf("timeout %v base %q", ev.timeout, ev.BaseRevision())
	}
	if want := max(1, runtime.GOMAXPROCS(0)/2); ev.perOrganization != want {
		t.Errorf("evaluations per organization %d, want %d", ev.perOrganization, want)
	}
}

// The document Rego sees: shape and formats of DESIGN §3 "Policy input".
func TestInputDocument(t *testing.T) {
	in := defaultInput()
	got, err := json.Marshal(in.Document())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"action":{"amount":{"currency":"EUR","value":"120.00"},"counterparty":"cp_1","params":{"po":"PO-77"},"resource":"invoice:INV-2291","type":"payment.send"},` +
		`"agent":{"created_at":"2024-12-01T10:00:00Z","id":"agt_1","name":"ap-bot","risk_tier":"low","sponsor":"usr_1","stats":{"decisions_1h":2,"decisions_24h":9,"denials_1h":0},"status":"active"},` +
		`"counterparty":{"created_at":"2024-03-01T10:00:00Z","id":"cp_1","payments_count":7,"status":"verified"},` +
		`"reason":"Pay approved invoice INV-2291","tenant":{"id":"t_1","slug":"acme"},"time":"2025-03-01T10:00:00Z"}`
	if string(got) != want {
		t.Errorf("document\n got %s\nwant %s", got, want)
	}
	// The struct's own JSON is the same document (simulate reads it).
	again, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	_ = json.Unmarshal(got, &a)
	_ = json.Unmarshal(again, &b)
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Errorf("struct JSON differs from the document:\n%s\n%s", ja, jb)
	}
	in.Counterparty = nil
	in.Action.Amount = nil
	doc := in.Document()
	if _, ok := doc["counterparty"]; ok {
		t.Error("counterparty present without one")
	}
	if _, ok := doc["action"].(map[string]any)["amount"]; ok {
		t.Error("amount present without one")
	}
}
