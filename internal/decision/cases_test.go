package decision

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/agentsigna/agentsigna/bundles"
)

// A decision case (testdata/cases/*.json) is one request evaluated end to
// end: an organization bundle built from files, read and compiled as an
// upload would be, then a policy input evaluated against it and the base.
// The same files seed bundles' FuzzRead.
type decisionCase struct {
	Note string `json:"note"`
	// Input is a JSON merge patch (RFC 7396: null removes) over
	// defaultInput: each case says only what differs from an ordinary payment.
	Input json.RawMessage `json:"input"`
	// Tenant is the organization's bundle; absent means none is active.
	Tenant *struct {
		// Files by path: a string, an array of lines, or (for JSON files)
		// a JSON value. A .manifest {"revision":"case","roots":["tenant"]}
		// is added when absent.
		Files map[string]json.RawMessage `json:"files"`
	} `json:"tenant"`
	Want *struct {
		Outcome           Outcome  `json:"outcome"`
		Reasons           []string `json:"reasons"`
		ApprovalsRequired int      `json:"approvals_required"`
	} `json:"want"`
	// WantRejected names the bundles error the upload fails with.
	WantRejected string `json:"want_rejected"`
}

// rejections maps want_rejected names to bundles' sentinels.
func rejections() map[string]error {
	return map[string]error{
		"forbidden_package": bundles.ErrForbiddenPackage,
		"forbidden_root":    bundles.ErrForbiddenRoot,
		"forbidden_data":    bundles.ErrForbiddenData,
		"forbidden_builtin": bundles.ErrForbiddenBuiltin,
		"compile":           bundles.ErrCompile,
		"parse":             bundles.ErrParse,
	}
}

// defaultInput is an ordinary request: an active low-tier agent with a
// clean record pays a verified counterparty 120 EUR.
func defaultInput() Input {
	t0 := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	return Input{
		Action: Action{
			Type:         "payment.send",
			Resource:     "invoice:INV-2291",
			Counterparty: "cp_1",
			Amount:       &Amount{Value: "120.00", Currency: "EUR"},
			Params:       map[string]any{"po": "PO-77"},
		},
		Reason: "Pay approved invoice INV-2291",
		Agent: Agent{
			ID: "agt_1", Name: "ap-bot", Sponsor: "usr_1", RiskTier: "low", Status: "active",
			CreatedAt: t0.AddDate(0, -3, 0),
			Stats:     AgentStats{Decisions1h: 2, Denials1h: 0, Decisions24h: 9},
		},
		Counterparty: &Counterparty{ID: "cp_1", Status: "verified", CreatedAt: t0.AddDate(-1, 0, 0), PaymentsCount: 7},
		Tenant:       Tenant{ID: "t_1", Slug: "acme"},
		Time:         t0,
	}
}

// mergePatch applies an RFC 7396 JSON merge patch.
func mergePatch(target any, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}

// caseInput is defaultInput with the case's patch applied, decoded strictly.
func (c *decisionCase) input(t testing.TB) Input {
	t.Helper()
	in := defaultInput()
	if len(c.Input) == 0 {
		return in
	}
	base, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var doc, patch any
	if err := json.Unmarshal(base, &doc); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(c.Input, &patch); err != nil {
		t.Fatal(err)
	}
	merged, err := json.Marshal(mergePatch(doc, patch))
	if err != nil {
		t.Fatal(err)
	}
	var out Input
	dec := json.NewDecoder(strings.NewReader(string(merged)))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("input patch: %v", err)
	}
	return out
}

// bundle packs the case's tenant files as a bundle tar.gz.
func (c *decisionCase) bundle(t testing.TB) []byte {
	t.Helper()
	fsys := fstest.MapFS{}
	for name, raw := range c.Tenant.Files {
		var content string
		var lines []string
		switch {
		case json.Unmarshal(raw, &content) == nil:
		case json.Unmarshal(raw, &lines) == nil && !strings.HasSuffix(name, ".json") && name != ".manifest":
			content = strings.Join(lines, "\n") + "\n"
		default:
			content = string(raw)
		}
		fsys[name] = &fstest.MapFile{Data: []byte(content)}
	}
	if _, ok := fsys[".manifest"]; !ok {
		fsys[".manifest"] = &fstest.MapFile{Data: []byte(`{"revision":"case","roots":["tenant"]}`)}
	}
	raw, err := bundles.PackFS(fsys, bundles.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func loadCases(t *testing.T) map[string]*decisionCase {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "cases", "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	out := map[string]*decisionCase{}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var c decisionCase
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if (c.Want == nil) == (c.WantRejected == "") {
			t.Fatalf("%s: give exactly one of want and want_rejected", p)
		}
		out[strings.TrimSuffix(filepath.Base(p), ".json")] = &c
	}
	return out
}

func TestDecisionCases(t *testing.T) {
	ctx := context.Background()
	engine := bundles.NewEngine()
	ev, err := NewEvaluator(ctx, engine, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range loadCases(t) {
		t.Run(name, func(t *testing.T) {
			var policy *bundles.Policy
			if c.Tenant != nil {
				b, err := bundles.Read(c.bundle(t), bundles.ReadOptions{})
				if err == nil {
					policy, err = bundles.Compile(ctx, b)
				}
				if c.WantRejected != "" {
					want, ok := rejections()[c.WantRejected]
					if !ok {
						t.Fatalf("unknown want_rejected %q", c.WantRejected)
					}
					if !errors.Is(err, want) {
						t.Fatalf("upload: err = %v, want %v", err, want)
					}
					return
				}
				if err != nil {
					t.Fatalf("upload: %v", err)
				}
			}
			// Through the engine, as the server evaluates.
			in := c.input(t)
			engine.Activate(in.Tenant.ID, policy)
			got := ev.Evaluate(ctx, in)
			if got.Outcome != c.Want.Outcome || !slices.Equal(got.Reasons, c.Want.Reasons) || got.ApprovalsRequired != c.Want.ApprovalsRequired {
				t.Errorf("got %s %q approvals %d, want %s %q approvals %d (errors: %q)",
					got.Outcome, got.Reasons, got.ApprovalsRequired,
					c.Want.Outcome, c.Want.Reasons, c.Want.ApprovalsRequired, got.Errors)
			}
			if got.Policy.BaseRevision != ev.BaseRevision() {
				t.Errorf("base revision %q", got.Policy.BaseRevision)
			}
			if policy != nil && (got.Policy.TenantRevision != "case" || got.Policy.TenantBundleSHA256 != policy.DigestBase64() || got.Policy.TenantBundleSHA256 == "") {
				t.Errorf("tenant revision %q digest %q", got.Policy.TenantRevision, got.Policy.TenantBundleSHA256)
			}
		})
	}
}
