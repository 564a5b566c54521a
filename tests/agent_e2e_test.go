package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/store/postgres/pgtest"
)

// agentFlow runs what an agent does against a running service: a client
// assertion (from the credentials file), a token, then decisions; and
// verifies the allow receipt with `agentsigna verify receipt` and the JWKS.
func agentFlow(t *testing.T, p *proc, credsFile string, env []string) {
	t.Helper()
	var creds struct {
		Agent struct {
			ID string `json:"id"`
		} `json:"agent"`
		Counterparties []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"counterparties"`
	}
	raw, err := os.ReadFile(credsFile)
	if err != nil || json.Unmarshal(raw, &creds) != nil {
		t.Fatalf("credentials: %v", err)
	}
	assertion := func() string {
		cmd := exec.Command(agentsigna(t), "agent", "assertion", "--credentials", credsFile, "--audience", p.tenantURL+"/v1/oauth/token")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("agent assertion: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	tokenResp, err := http.PostForm(p.tenantURL+"/v1/oauth/token", url.Values{
		"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion": {assertion()},
	})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	body, _ := io.ReadAll(tokenResp.Body)
	tokenResp.Body.Close()
	if tokenResp.StatusCode != 200 || json.Unmarshal(body, &tok) != nil || tok.AccessToken == "" {
		t.Fatalf("token: %d %s", tokenResp.StatusCode, body)
	}
	decide := func(action string) map[string]any {
		req, _ := http.NewRequest(http.MethodPost, p.tenantURL+"/v1/decisions", strings.NewReader(`{"action":`+action+`,"reason":"e2e"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if resp.StatusCode != 200 || json.Unmarshal(b, &out) != nil {
			t.Fatalf("decision %s: %d %s", action, resp.StatusCode, b)
		}
		checkBoundary(t, resp)
		return out
	}
	verified, fresh := creds.Counterparties[0].ID, creds.Counterparties[1].ID
	allow := decide(fmt.Sprintf(`{"type":"payment.send","counterparty":%q,"amount":{"value":"250.00","currency":"EUR"}}`, verified))
	if allow["outcome"] != "allow" || allow["receipt"] == nil {
		t.Fatalf("allow: %v", allow)
	}
	for action, want := range map[string]string{
		fmt.Sprintf(`{"type":"payment.send","counterparty":%q,"amount":{"value":"5000.00","currency":"EUR"}}`, verified): "escalate",
		fmt.Sprintf(`{"type":"payment.send","counterparty":%q,"amount":{"value":"10.00","currency":"EUR"}}`, fresh):      "escalate",
		`{"type":"report.archive"}`: "deny",
	} {
		if got := decide(action); got["outcome"] != want {
			t.Errorf("%s: %v, want %s", action, got["outcome"], want)
		}
	}
	// The receipt verifies offline with the published JWKS.
	resp, err := http.Get(p.tenantURL + "/t/acme/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "jwks.json"), jwks, 0o600)
	_ = os.WriteFile(filepath.Join(dir, "receipt"), []byte(allow["receipt"].(string)), 0o600)
	code, stderr := runBinary(t, nil, "verify", "receipt", filepath.Join(dir, "receipt"), "--jwks", filepath.Join(dir, "jwks.json"))
	if code != 0 {
		t.Fatalf("verify receipt: %d %s", code, stderr)
	}
}

func TestDemoAgentDecision(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	ta := freeAddr(t)
	p := startServeAt(t, nil, ta, "--data-dir", dataDir, "--demo", "--public-url", "http://"+ta)
	credsFile := filepath.Join(dataDir, "demo", "credentials.json")
	fi, err := os.Stat(credsFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", fi, err)
	}
	raw, _ := os.ReadFile(credsFile)
	var private struct {
		Agent struct {
			PrivateJWK struct {
				D string `json:"d"`
			} `json:"private_jwk"`
		} `json:"agent"`
	}
	if json.Unmarshal(raw, &private) != nil || private.Agent.PrivateJWK.D == "" {
		t.Fatal("credentials carry no private key")
	}
	agentFlow(t, p, credsFile, nil)
	p.stop(t)
	if strings.Contains(p.Logs(), private.Agent.PrivateJWK.D) {
		t.Fatal("the agent's private key reached the log")
	}
	// A second --demo run on the same data dir does not seed twice.
	p = startServe(t, nil, "--data-dir", dataDir, "--demo")
	p.stop(t)
	if !strings.Contains(p.Logs(), "not seeding again") {
		t.Fatalf("second demo run:\n%s", p.Logs())
	}
}

// The same agent path on PostgreSQL, set up with the local CLI.
func TestPostgresAgentDecision(t *testing.T) {
	db := pgtest.New(t)
	prefix := strings.TrimSuffix(db.Roles.Owner, "_owner")
	key := "AGENTSIGNA_MASTER_KEY=MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="
	env := []string{key, "AGENTSIGNA_DATABASE_URL=" + db.TenantURL, "AGENTSIGNA_PLATFORM_DATABASE_URL=" + db.PlatformURL, "AGENTSIGNA_ROLE_PREFIX=" + prefix}
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(agentsigna(t), args...)
		cmd.Env = append(os.Environ(), env...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut.String())
		}
		return out.String()
	}
	run("org", "create", "--slug", "acme", "--name", "Acme")
	run("policy", "push", "--tenant", "acme", "--by", "usr_author", "../policies/examples/acme")
	run("policy", "activate", "--tenant", "acme", "--revision", "acme-example-1", "--by", "usr_author", "--approved-by", "usr_admin")
	keyFile := filepath.Join(dir, "agent.jwk")
	reg := run("agent", "register", "--tenant", "acme", "--name", "payer", "--sponsor", "usr_sponsor", "--risk-tier", "low", "--generate-key", keyFile)
	agentID := strings.Fields(reg)[0]
	var cps []string
	for _, status := range []string{"verified", "new"} {
		out := run("counterparty", "add", "--tenant", "acme", "--name", "Vendor "+status, "--status", status)
		cps = append(cps, strings.Fields(out)[0])
	}
	privateJWK, _ := os.ReadFile(keyFile)
	creds, _ := json.Marshal(map[string]any{"tenant_url": "http://x", "tenant": "acme",
		"agent":          map[string]any{"id": agentID, "private_jwk": json.RawMessage(privateJWK)},
		"counterparties": []map[string]string{{"id": cps[0], "status": "verified"}, {"id": cps[1], "status": "new"}}})
	credsFile := filepath.Join(dir, "creds.json")
	_ = os.WriteFile(credsFile, creds, 0o600)

	ta := freeAddr(t)
	p := startServeAt(t, env, ta, "--public-url", "http://"+ta)
	agentFlow(t, p, credsFile, env)
	p.stop(t)
	code, out := runBinary(t, env, "ledger", "verify", "--tenant", "acme")
	if code != 0 {
		t.Fatalf("ledger verify after the flow: %d %s", code, out)
	}
}
