package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentsigna/agentsigna/internal/decision"
)

// wrapperPolicy asks for both verdicts in one query: OPA's data API
// evaluates one document per request, AgentSigna evaluates the base and
// the organization's decision for every request, so the baseline does too.
const wrapperPolicy = `package loadtest

result := {"base": data.agentsigna.base.decision, "tenant": data.tenant.decision}
`

// opaPath is the data API path of wrapperPolicy's result.
const opaPath = "/v1/data/loadtest/result"

// buildOPA builds the opa command at the version go.mod pins as a tool
// (`go tool opa` would rebuild and check it on every start).
func buildOPA(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "opa")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/open-policy-agent/opa").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build opa: %v\n%s", err, out)
	}
	return bin, nil
}

// startOPA runs `opa run --server` on a free loopback port with the base
// policy, the example organization policy (its data.json under
// data.tenant, as in its bundle) and the wrapper, without their tests.
func startOPA(ctx context.Context, o Options, bin string, client *http.Client, dir string) (*process, string, error) {
	wrapper := filepath.Join(dir, "opa-wrapper")
	if err := os.MkdirAll(wrapper, 0o700); err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(filepath.Join(wrapper, "loadtest.rego"), []byte(wrapperPolicy), 0o600); err != nil {
		return nil, "", err
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, "", err
	}
	p, err := startProcess("opa run --server", bin, []string{"run", "--server", "--addr", addr,
		"--skip-version-check", "--log-level", o.ServerLogLevel, "--ignore", "*_test.rego",
		filepath.Join(o.Policies, "base"), filepath.Join(o.Policies, "examples", "acme"), wrapper}, gcEnv(o.OPAGC))
	if err != nil {
		return nil, "", err
	}
	u := "http://" + addr
	if err := p.waitHealthy(ctx, client, u+"/health", time.Minute); err != nil {
		_ = p.stop()
		return nil, "", err
	}
	return p, u, nil
}

// serviceGOGC is the collector target `agentsigna serve` sets when GOGC
// is not (cmd/agentsigna's defaultGCPercent). OPA is given the same, so
// that neither server gets a cheaper collector than the other.
const serviceGOGC = "400"

// gcEnv is OPA's environment for its collector: nothing when GOGC is set
// (both servers inherit it) or opaGC is "go", else the service's target.
func gcEnv(opaGC string) []string {
	if _, set := os.LookupEnv("GOGC"); set || opaGC == "go" {
		return nil
	}
	return []string{"GOGC=" + serviceGOGC}
}

// gcSetting says what GOGC each server runs with. A service the harness
// did not start (TargetURL) runs with what it was started with.
func gcSetting(o Options) string {
	var opa, as string
	switch v, set := os.LookupEnv("GOGC"); {
	case set:
		opa, as = v+" (from the environment)", v+" (from the environment)"
	case o.OPAGC == "go":
		opa, as = "Go's default, 100, as it ships", serviceGOGC+", its default"
	default:
		opa, as = serviceGOGC+", the service's default", serviceGOGC+", its default"
	}
	if o.TargetURL != "" {
		as = "as the running service was started"
	}
	return "opa " + opa + "; agentsigna " + as
}

// opaTarget asks OPA for both verdicts on the policy input AgentSigna
// builds for the same request.
type opaTarget struct {
	client *http.Client
	url    string
	body   []byte
}

// newOPATarget builds the request body: {"input": <policy input>}, the
// document decision.Input.Document gives Rego in the service. The fields
// the policies read are the service's own values (action, counterparty
// status, the agent's tier, status and denials); the ones they do not
// read (names, creation times, counts) only give the document its shape
// and size.
func newOPATarget(client *http.Client, opaURL string, p agentProfile, counterparty string) (*opaTarget, error) {
	now := time.Now().UTC()
	in := decision.Input{
		Action: decision.Action{
			Type: "payment.send", Resource: "invoice:INV-1", Counterparty: counterparty,
			Amount: &decision.Amount{Value: "250.00", Currency: "EUR"},
		},
		Reason: "load",
		Agent: decision.Agent{
			ID: p.AgentID, Name: "load-agent", Sponsor: p.Sponsor, RiskTier: p.RiskTier,
			Status: "active", CreatedAt: now.Add(-time.Hour),
		},
		// An allowed payment proves the counterparty verified: the base
		// policy escalates any other.
		Counterparty: &decision.Counterparty{ID: counterparty, Status: "verified", CreatedAt: now.Add(-time.Hour)},
		Tenant:       decision.Tenant{ID: p.TenantID, Slug: p.TenantSlug},
		Time:         now,
	}
	body, err := json.Marshal(map[string]any{"input": in.Document()})
	if err != nil {
		return nil, err
	}
	return &opaTarget{client: client, url: opaURL + opaPath, body: body}, nil
}

func (t *opaTarget) Name() string { return "opa POST " + opaPath }

// Do evaluates once and checks that the verdicts combine to allow as
// AgentSigna combines them: no deny, no escalation, the tenant allows.
func (t *opaTarget) Do(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(t.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	buf := bufferPool.Get().(*bytes.Buffer)
	defer bufferPool.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, maxResponse)); err != nil {
		return err
	}
	var out struct {
		Result struct {
			Base struct {
				Deny     []string `json:"deny"`
				Escalate []string `json:"escalate"`
			} `json:"base"`
			Tenant struct {
				Allow bool `json:"allow"`
			} `json:"tenant"`
		} `json:"result"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(buf.Bytes(), &out) != nil ||
		len(out.Result.Base.Deny) > 0 || len(out.Result.Base.Escalate) > 0 || !out.Result.Tenant.Allow {
		return fmt.Errorf("%w: %d %.300s", errNotAllowed, resp.StatusCode, strings.TrimSpace(buf.String()))
	}
	return nil
}
