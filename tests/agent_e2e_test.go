package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"net"
	"net/http/httputil"
	"strconv"

	"github.com/go-jose/go-jose/v4"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

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
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/postgres/pgtest"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/ledger/verify"
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
	post := func(token, ctype, body string, hdr map[string]string) (int, string, []byte) {
		req, _ := http.NewRequest(http.MethodPost, p.tenantURL+"/v1/decisions", strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Authorization", "Bearer "+token)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		if len(body) > 64<<10 {
			// The server refuses an oversized body from its headers and
			// closes while a client may still be sending: an HTTP client
			// then reports a broken pipe, so read the answer off the wire.
			return rawPost(t, strings.TrimPrefix(p.tenantURL, "http://"), req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		checkBoundary(t, resp)
		return resp.StatusCode, resp.Header.Get("Content-Type"), b
	}
	decide := func(action string) map[string]any {
		status, _, b := post(tok.AccessToken, "application/json", `{"action":`+action+`,"reason":"e2e"}`, nil)
		var out map[string]any
		if status != 200 || json.Unmarshal(b, &out) != nil {
			t.Fatalf("decision %s: %d %s", action, status, b)
		}
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
	// ... and with a second JOSE implementation, from the JWKS alone.
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("JWKS for go-jose: %v", err)
	}
	sig, err := jose.ParseSigned(allow["receipt"].(string), []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sig.Verify(set.Key(sig.Signatures[0].Header.KeyID)[0]); err != nil {
		t.Fatalf("receipt does not verify with go-jose: %v", err)
	}
	// The decision's own ledger entry: the inclusion proof in the response,
	// checked with transparency-dev/merkle against the checkpoint opened
	// with x/mod/sumdb/note and the published log key.
	resp, err = http.Get(p.tenantURL + "/t/acme/.well-known/log-key")
	if err != nil {
		t.Fatal(err)
	}
	vkey, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	verifier, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		t.Fatal(err)
	}
	lg := allow["ledger"].(map[string]any)
	n, err := note.Open([]byte(lg["checkpoint"].(string)), note.VerifierList(verifier))
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	size, _ := strconv.ParseUint(lines[1], 10, 64)
	root, _ := base64.StdEncoding.DecodeString(lines[2])
	leaf, _ := base64.StdEncoding.DecodeString(lg["leaf_hash"].(string))
	var hashes [][]byte
	for _, h := range lg["inclusion_proof"].([]any) {
		b, _ := base64.StdEncoding.DecodeString(h.(string))
		hashes = append(hashes, b)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(lg["index"].(float64)), size, leaf, hashes, root); err != nil {
		t.Fatalf("inclusion proof: %v", err)
	}
	// The receipt is in the log: its entry's tlog-proof, from the
	// service, verified offline with the receipt, the JWKS and the log key.
	agentGet := func(path string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, p.tenantURL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	getProof := func(decisionID, entry string) (int, []byte) {
		return agentGet("/v1/decisions/" + decisionID + "/tlog-proof?entry=" + entry)
	}
	status, receiptProof := getProof(allow["decision_id"].(string), "receipt")
	if status != 200 {
		t.Fatalf("the receipt's tlog-proof: %d %s", status, receiptProof)
	}
	_ = os.WriteFile(filepath.Join(dir, "receipt.tlog-proof"), receiptProof, 0o600)
	_ = os.WriteFile(filepath.Join(dir, "log-key"), vkey, 0o600)
	code, stderr = runBinary(t, nil, "verify", "receipt", filepath.Join(dir, "receipt"), "--jwks", filepath.Join(dir, "jwks.json"),
		"--tlog-proof", filepath.Join(dir, "receipt.tlog-proof"), "--log-key", filepath.Join(dir, "log-key"))
	if code != 0 {
		t.Fatalf("verify receipt --tlog-proof: %d %s", code, stderr)
	}
	// The decision's own proof is no proof of the receipt.
	_, decisionProof := getProof(allow["decision_id"].(string), "decision")
	_ = os.WriteFile(filepath.Join(dir, "decision.tlog-proof"), decisionProof, 0o600)
	code, stderr = runBinary(t, nil, "verify", "receipt", filepath.Join(dir, "receipt"), "--jwks", filepath.Join(dir, "jwks.json"),
		"--tlog-proof", filepath.Join(dir, "decision.tlog-proof"), "--log-key", filepath.Join(dir, "log-key"))
	if code == 0 {
		t.Fatalf("verify receipt accepted the decision entry's proof: %s", stderr)
	}
	// It proves the decision's own entry, which it carries: verify
	// inclusion needs nothing else to name the decision.
	stdout, code, stderr := runBinaryOut(t, nil, "verify", "inclusion", filepath.Join(dir, "decision.tlog-proof"), "--log-key", filepath.Join(dir, "log-key"))
	if code != 0 || !strings.Contains(stdout, `(decision "`+allow["decision_id"].(string)+`", `) {
		t.Fatalf("verify inclusion of the decision's proof: %d %s %s", code, stdout, stderr)
	}
	if status, b := getProof(allow["decision_id"].(string), "everything"); status != 400 {
		t.Fatalf("tlog-proof?entry=everything: %d %s", status, b)
	}
	// The agent holds the checkpoint its decision came with to the log's
	// newest: a consistency proof it reads with its token, checked offline.
	status, head := agentGet("/v1/ledger/checkpoint")
	newest, err := note.Open(head, note.VerifierList(verifier))
	if status != 200 || err != nil {
		t.Fatalf("the log's checkpoint: %d %s: %v", status, head, err)
	}
	newSize, _ := strconv.ParseUint(strings.Split(newest.Text, "\n")[1], 10, 64)
	status, cons := agentGet(fmt.Sprintf("/v1/ledger/proofs/consistency?first=%d&second=%d", size, newSize))
	if status != 200 {
		t.Fatalf("consistency proof: %d %s", status, cons)
	}
	_ = os.WriteFile(filepath.Join(dir, "consistency.json"), cons, 0o600)
	_ = os.WriteFile(filepath.Join(dir, "decision.checkpoint"), []byte(lg["checkpoint"].(string)), 0o600)
	stdout, code, stderr = runBinaryOut(t, nil, "verify", "consistency", filepath.Join(dir, "consistency.json"),
		"--log-key", filepath.Join(dir, "log-key"), "--old", filepath.Join(dir, "decision.checkpoint"))
	if code != 0 || !strings.HasPrefix(stdout, "OK: log ") {
		t.Fatalf("verify consistency from the decision's checkpoint: %d %s %s", code, stdout, stderr)
	}
	// It reads its own entries, and no other: entry 0 is the
	// organization's.
	if status, b := agentGet("/v1/ledger/entries/0"); status != 403 {
		t.Fatalf("an agent reads an entry not its own: %d %s", status, b)
	}
	index := uint64(lg["index"].(float64))
	status, b := agentGet(fmt.Sprintf("/v1/ledger/entries/%d", index))
	var own struct {
		Entry    []byte `json:"entry"`
		LeafHash []byte `json:"leaf_hash"`
		Record   struct {
			DecisionID string `json:"decision_id"`
		} `json:"record"`
	}
	if status != 200 || json.Unmarshal(b, &own) != nil || !bytes.Equal(own.LeafHash, leaf) ||
		!bytes.Equal(verify.LeafHash(own.Entry), leaf) || own.Record.DecisionID != allow["decision_id"] {
		t.Fatalf("the agent reads its decision's entry %d: %d %s", index, status, b)
	}
	status, incl := agentGet(fmt.Sprintf("/v1/ledger/proofs/inclusion?index=%d", index))
	_ = os.WriteFile(filepath.Join(dir, "inclusion.json"), incl, 0o600)
	stdout, code, stderr = runBinaryOut(t, nil, "verify", "inclusion", filepath.Join(dir, "inclusion.json"), "--log-key", filepath.Join(dir, "log-key"),
		"--leaf-hash", base64.StdEncoding.EncodeToString(leaf))
	if status != 200 || code != 0 || !strings.HasPrefix(stdout, "OK") {
		t.Fatalf("verify inclusion of the agent's own entry: %d %s; %d %s %s", status, incl, code, stdout, stderr)
	}

	// Idempotent replay: same key and body, same answer, no new entry.
	pay42 := fmt.Sprintf(`{"action":{"type":"payment.send","counterparty":%q,"amount":{"value":"42.00","currency":"EUR"}}}`, verified)
	s1, _, first := post(tok.AccessToken, "application/json", pay42, map[string]string{"Idempotency-Key": "e2e-1"})
	s2, _, second := post(tok.AccessToken, "application/json", pay42, map[string]string{"Idempotency-Key": "e2e-1"})
	if s1 != 200 || s2 != 200 || !bytes.Equal(first, second) {
		t.Fatalf("idempotent replay: %d %d, same %v", s1, s2, bytes.Equal(first, second))
	}
	if s, _, _ := post(tok.AccessToken, "application/json", strings.Replace(pay42, "42.00", "43.00", 1), map[string]string{"Idempotency-Key": "e2e-1"}); s != 422 {
		t.Fatalf("key reused with another body: %d", s)
	}
	// The boundary refuses, as problem+json.
	for _, tc := range []struct {
		token, ctype, body string
		status             int
	}{
		{tok.AccessToken, "application/json", `{"action":{"type":"report.generate","oops":1}}`, 400},
		{tok.AccessToken, "application/json", `{"action":{"type":"report.generate","params":{"a":{"b":{"c":{"d":{"e":{}}}}}}}}`, 400},
		{tok.AccessToken, "application/json", `{"action":{"type":"report.generate","params":{"x":"` + strings.Repeat("a", 70<<10) + `"}}}`, 413},
		{tok.AccessToken, "text/plain", `{"action":{"type":"report.generate"}}`, 415},
		{assertion(), "application/json", `{"action":{"type":"report.generate"}}`, 401}, // the agent's own signature is no access token
	} {
		status, ctype, b := post(tc.token, tc.ctype, tc.body, nil)
		if status != tc.status || ctype != "application/problem+json" {
			t.Errorf("%.50s: %d %s %.100s; want %d problem+json", tc.body, status, ctype, b, tc.status)
		}
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

// A credentials file that is not the store's stops --demo before it seeds
// anything (the agent key it would generate would be lost), and a demo
// directory others may enter is made 0700.
func TestDemoRefusesAForeignCredentialsFile(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	demoDir := filepath.Join(dataDir, "demo")
	if err := os.MkdirAll(demoDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(demoDir, 0o777); err != nil {
		t.Fatal(err)
	}
	credsFile := filepath.Join(demoDir, "credentials.json")
	if err := os.WriteFile(credsFile, []byte(`{"planted":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stderr := runBinary(t, nil, "serve", "--data-dir", dataDir, "--demo", "--tenant-addr", freeAddr(t), "--platform-addr", freeAddr(t))
	if code == 0 || !strings.Contains(stderr, "is not this store's credentials") {
		t.Fatalf("serve --demo beside a foreign credentials file: exit %d\n%s", code, stderr)
	}
	if b, _ := os.ReadFile(credsFile); string(b) != `{"planted":true}` {
		t.Fatalf("the foreign file was changed: %s", b)
	}
	// Nothing was seeded: with the file moved away, --demo seeds acme.
	if err := os.Remove(credsFile); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, nil, "--data-dir", dataDir, "--demo")
	p.stop(t)
	if strings.Contains(p.Logs(), "not seeding again") {
		t.Fatalf("the refused run seeded acme:\n%s", p.Logs())
	}
	fi, err := os.Stat(demoDir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("demo directory: %v %v, want mode 0700", fi, err)
	}
	if fi, err := os.Stat(credsFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", fi, err)
	}
}

// rawPost writes req on its own connection while reading the answer, so an
// early refusal (413) is read even if the server stops reading the body.
func rawPost(t *testing.T, addr string, req *http.Request) (int, string, []byte) {
	t.Helper()
	req.Header.Set("Content-Length", strconv.FormatInt(req.ContentLength, 10))
	dump, err := httputil.DumpRequest(req, true)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() { _, _ = conn.Write(dump) }() // may fail once the server has answered
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

// cli runs agentsigna subcommands with env, failing the test on error.
func cli(t *testing.T, env []string) func(args ...string) string {
	return func(args ...string) string {
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
}

// cliOrg sets up an organization with the local CLI: its policy (a
// directory, activated by two people), an agent of tier with a generated
// key, a verified and a new counterparty; it returns a credentials file in
// the demo's shape.
func cliOrg(t *testing.T, env []string, slug, policyDir, revision, tier string) string {
	t.Helper()
	run := cli(t, env)
	dir := t.TempDir()
	run("org", "create", "--slug", slug, "--name", "Org "+slug)
	run("policy", "push", "--tenant", slug, "--by", "usr_author", policyDir)
	run("policy", "activate", "--tenant", slug, "--revision", revision, "--by", "usr_author", "--approved-by", "usr_admin")
	keyFile := filepath.Join(dir, "agent.jwk")
	reg := run("agent", "register", "--tenant", slug, "--name", "payer", "--sponsor", "usr_sponsor", "--risk-tier", tier, "--generate-key", keyFile)
	agentID := strings.Fields(reg)[0]
	var cps []string
	for _, status := range []string{"verified", "new"} {
		out := run("counterparty", "add", "--tenant", slug, "--name", "Vendor "+status, "--status", status)
		cps = append(cps, strings.Fields(out)[0])
	}
	privateJWK, _ := os.ReadFile(keyFile)
	creds, _ := json.Marshal(map[string]any{"tenant_url": "http://x", "tenant": slug,
		"agent":          map[string]any{"id": agentID, "private_jwk": json.RawMessage(privateJWK)},
		"counterparties": []map[string]string{{"id": cps[0], "status": "verified"}, {"id": cps[1], "status": "new"}}})
	credsFile := filepath.Join(dir, "creds.json")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return credsFile
}

// agentClient gets a token for the credentials' agent and posts decisions.
type agentClient struct {
	t     *testing.T
	p     *proc
	token string
	creds struct {
		Agent struct {
			ID string `json:"id"`
		} `json:"agent"`
		Counterparties []struct {
			ID string `json:"id"`
		} `json:"counterparties"`
	}
}

func newAgentClient(t *testing.T, p *proc, credsFile string, env []string) *agentClient {
	t.Helper()
	c := &agentClient{t: t, p: p}
	raw, _ := os.ReadFile(credsFile)
	if err := json.Unmarshal(raw, &c.creds); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(agentsigna(t), "agent", "assertion", "--credentials", credsFile, "--audience", p.tenantURL+"/v1/oauth/token")
	cmd.Env = append(os.Environ(), env...)
	a, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.PostForm(p.tenantURL+"/v1/oauth/token", url.Values{"grant_type": {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {strings.TrimSpace(string(a))}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if json.NewDecoder(resp.Body).Decode(&tok) != nil || tok.AccessToken == "" {
		t.Fatalf("token: %d", resp.StatusCode)
	}
	c.token = tok.AccessToken
	return c
}

func (c *agentClient) do(method, path, body string) (int, map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.p.tenantURL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// Every base rule of DESIGN §3 forces escalation even when the
// organization's policy allows everything; an organization's token never
// reaches another's data. Through the real binary, on both stores.
func TestBaseRulesOverrideAPermissivePolicy(t *testing.T) {
	permissive := writePolicy(t, "allow-all-1", "package tenant\n\ndecision := {\"allow\": true}\n")
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			env := []string{"AGENTSIGNA_MASTER_KEY=MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}
			if kind == "sqlite" {
				env = append(env, "AGENTSIGNA_DATA_DIR="+filepath.Join(t.TempDir(), "data"))
			} else {
				db := pgtest.NewWithMasterKey(t, "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=")
				env = append(env, "AGENTSIGNA_DATABASE_URL="+db.TenantURL, "AGENTSIGNA_PLATFORM_DATABASE_URL="+db.PlatformURL,
					"AGENTSIGNA_ROLE_PREFIX="+strings.TrimSuffix(db.Roles.Owner, "_owner"))
			}
			lax := cliOrg(t, env, "lax", permissive, "allow-all-1", "low")
			laxHigh := cliOrg(t, env, "laxhigh", permissive, "allow-all-1", "high")
			other := cliOrg(t, env, "other", "../policies/examples/acme", "acme-example-1", "low")
			ta := freeAddr(t)
			p := startServeAt(t, env, ta, "--public-url", "http://"+ta)
			c := newAgentClient(t, p, lax, env)
			verified, fresh := c.creds.Counterparties[0].ID, c.creds.Counterparties[1].ID
			if status, out := c.do("POST", "/v1/decisions", `{"action":{"type":"report.generate"}}`); status != 200 || out["outcome"] != "allow" {
				t.Fatalf("the permissive policy allows a plain action: %d %v", status, out)
			}
			for _, tc := range []struct {
				action    string
				approvals float64
			}{
				{`{"type":"counterparty.bank_details.update","counterparty":"` + verified + `"}`, 2},
				{`{"type":"counterparty.create"}`, 1},
				{`{"type":"agent.credential.rotate"}`, 1},
				{`{"type":"policy.activate"}`, 2},
				{`{"type":"access.grant","resource":"role:admin"}`, 2},
				{`{"type":"data.export_all"}`, 1},
				{`{"type":"data.delete_records"}`, 1},
				{`{"type":"payment.send","counterparty":"` + fresh + `","amount":{"value":"10.00","currency":"EUR"}}`, 1},
				{`{"type":"payment.send","amount":{"value":"10.00","currency":"EUR"}}`, 1},
				{`{"type":"funds.transfer","counterparty":"` + fresh + `","amount":{"value":"10.00","currency":"EUR"}}`, 1},
			} {
				status, out := c.do("POST", "/v1/decisions", `{"action":`+tc.action+`}`)
				cs, _ := out["case"].(map[string]any)
				if status != 200 || out["outcome"] != "escalate" || cs == nil || cs["approvals_required"] != tc.approvals {
					t.Errorf("%s: %d %v; want escalate with %v approvals", tc.action, status, out, tc.approvals)
				}
			}
			hc := newAgentClient(t, p, laxHigh, env)
			hv := hc.creds.Counterparties[0].ID
			if _, out := hc.do("POST", "/v1/decisions", `{"action":{"type":"payment.send","counterparty":"`+hv+`","amount":{"value":"1.00","currency":"EUR"}}}`); out["outcome"] != "escalate" {
				t.Errorf("a high-tier agent's payment: %v", out)
			}
			// Cross-organization: other's token cannot read lax's decision,
			// and lax's counterparty does not exist for other.
			_, allowed := c.do("POST", "/v1/decisions", `{"action":{"type":"report.generate"}}`)
			oc := newAgentClient(t, p, other, env)
			if status, _ := oc.do("GET", "/v1/decisions/"+allowed["decision_id"].(string), ""); status != 404 {
				t.Errorf("another organization reads the decision: %d", status)
			}
			if status, _ := oc.do("POST", "/v1/decisions", `{"action":{"type":"payment.send","counterparty":"`+verified+`","amount":{"value":"1.00","currency":"EUR"}}}`); status != 400 {
				t.Errorf("another organization's counterparty: %d", status)
			}
			p.stop(t)
		})
	}
}

// The same agent path on PostgreSQL, set up with the local CLI.
func TestPostgresAgentDecision(t *testing.T) {
	db := pgtest.NewWithMasterKey(t, "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=")
	env := []string{"AGENTSIGNA_MASTER_KEY=MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=", "AGENTSIGNA_DATABASE_URL=" + db.TenantURL,
		"AGENTSIGNA_PLATFORM_DATABASE_URL=" + db.PlatformURL, "AGENTSIGNA_ROLE_PREFIX=" + strings.TrimSuffix(db.Roles.Owner, "_owner")}
	credsFile := cliOrg(t, env, "acme", "../policies/examples/acme", "acme-example-1", "low")
	ta := freeAddr(t)
	p := startServeAt(t, env, ta, "--public-url", "http://"+ta)
	agentFlow(t, p, credsFile, env)
	p.stop(t)
	// A rotation through the CLI: its entry and the key commit together,
	// and the store still matches the log.
	code, out := runBinary(t, env, "keys", "rotate", "--tenant", "acme")
	if code != 0 {
		t.Fatalf("keys rotate: %d %s", code, out)
	}
	code, out = runBinary(t, env, "ledger", "verify", "--tenant", "acme")
	if code != 0 {
		t.Fatalf("ledger verify after the flow and a rotation: %d %s", code, out)
	}
}

// Refusals past a log's budget are counted, and a server stopped before
// their window ends still records their summary in the platform's log.
func TestStopRecordsSuppressedRefusals(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	p := startServe(t, nil, "--data-dir", dataDir)
	const sent = 70 // the budget is 60 at once
	enc := base64.RawURLEncoding.EncodeToString
	for i := range sent {
		claims := fmt.Sprintf(`{"iss":"agt_nobody%d","sub":"agt_nobody%d","aud":"x","exp":1,"jti":"j"}`, i, i)
		resp, err := http.PostForm(p.tenantURL+"/v1/oauth/token", url.Values{"grant_type": {"client_credentials"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(claims)) + "."}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("refusal %d: %d", i, resp.StatusCode)
		}
	}
	p.stop(t)

	ctx := context.Background()
	s, err := sqlite.Open(ctx, sqlite.Config{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var entries []store.LedgerEntry
	err = s.InPlatformReadTx(ctx, func(ctx context.Context, tx store.PlatformTx) error {
		cp, err := tx.Log().LatestCheckpoint(ctx)
		if err != nil {
			return err
		}
		entries, err = tx.Log().Entries(ctx, 0, cp.Size)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	var summary struct {
		Suppressed int
	}
	for _, e := range entries {
		var entry struct{ Kind string }
		if err := json.Unmarshal(e.Entry, &entry); err != nil {
			t.Fatal(err)
		}
		kinds[entry.Kind]++
		if entry.Kind == "auth.token_refusals_suppressed" {
			if err := json.Unmarshal(e.Record, &summary); err != nil {
				t.Fatal(err)
			}
		}
	}
	if kinds["auth.token_refused"] != 60 || kinds["auth.token_refusals_suppressed"] != 1 || summary.Suppressed != sent-60 {
		t.Fatalf("the platform's log holds %v; summary %+v", kinds, summary)
	}
}

// serve's per-agent bounds are set by --agent-decisions-per-second,
// --agent-decision-burst, --agent-tokens-per-minute, --agent-token-burst,
// --agent-reads-per-second and --agent-read-burst (or their environment
// twins): past one the agent gets 429 with the wait its rate gives, and
// the service's log says so once.
func TestAgentBoundFlags(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	ta := freeAddr(t)
	p := startServeAt(t, []string{"AGENTSIGNA_AGENT_DECISION_BURST=2", "AGENTSIGNA_AGENT_TOKEN_BURST=1", "AGENTSIGNA_AGENT_READ_BURST=1"}, ta,
		"--data-dir", dataDir, "--demo", "--public-url", "http://"+ta,
		"--agent-decisions-per-second", "0.001", "--agent-tokens-per-minute", "0.01", "--agent-reads-per-second", "0.002")
	credsFile := filepath.Join(dataDir, "demo", "credentials.json")
	c := newAgentClient(t, p, credsFile, nil)
	body := fmt.Sprintf(`{"action":{"type":"payment.send","resource":"invoice:INV-9","counterparty":%q,"amount":{"value":"1.00","currency":"EUR"}},"reason":"pay"}`, c.creds.Counterparties[0].ID)
	var decisionID string
	for i := range 2 {
		status, out := c.do(http.MethodPost, "/v1/decisions", body)
		if status != 200 {
			t.Fatalf("decision %d of a burst of 2: %d %v", i+1, status, out)
		}
		decisionID, _ = out["decision_id"].(string)
	}
	if status, out := c.do(http.MethodGet, "/v1/decisions/"+decisionID, ""); status != 200 {
		t.Fatalf("a read within a burst of 1: %d %v", status, out)
	}
	req, _ := http.NewRequest(http.MethodGet, p.tenantURL+"/v1/decisions/"+decisionID, nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// 0.002 a second: the next read is 500 s away.
	if wait, _ := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != 429 || wait < 490 || wait > 500 {
		t.Fatalf("a second read past a burst of 1: %d, Retry-After %q (want about 500)", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	req, _ = http.NewRequest(http.MethodPost, p.tenantURL+"/v1/decisions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// 0.001 a second: the next decision is 1,000 s away.
	if wait, _ := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != 429 || wait < 990 || wait > 1000 {
		t.Fatalf("past the decision burst: %d, Retry-After %q (want about 1000)", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	assertion, err := exec.Command(agentsigna(t), "agent", "assertion", "--credentials", credsFile, "--audience", p.tenantURL+"/v1/oauth/token").Output()
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.PostForm(p.tenantURL+"/v1/oauth/token", url.Values{"grant_type": {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {strings.TrimSpace(string(assertion))}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// 0.01 a minute: the next token is 6,000 s away.
	if wait, _ := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != 429 || wait < 5990 || wait > 6000 {
		t.Fatalf("a second token past a burst of 1: %d, Retry-After %q (want about 6000)", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	p.stop(t)
	for _, what := range []string{"decisions", "token requests", "reads"} {
		msg := "agent " + what + " refused: over the agent's rate"
		if n := strings.Count(p.Logs(), msg); n != 1 {
			t.Errorf("%d log lines %q, want 1:\n%s", n, msg, p.Logs())
		}
	}
	if !strings.Contains(p.Logs(), c.creds.Agent.ID) {
		t.Errorf("the log does not name the agent:\n%s", p.Logs())
	}
}

// `agent rotate-key`, run beside a serving process, ends the access
// tokens issued under the key it retires: the server rereads the key's
// status at most a second after it last did. The new key's token works.
func TestRotateKeyEndsItsTokens(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	ta := freeAddr(t)
	p := startServeAt(t, nil, ta, "--data-dir", dataDir, "--demo", "--public-url", "http://"+ta)
	credsFile := filepath.Join(dataDir, "demo", "credentials.json")
	c := newAgentClient(t, p, credsFile, nil)
	body := fmt.Sprintf(`{"action":{"type":"payment.send","resource":"invoice:INV-7","counterparty":%q,"amount":{"value":"1.00","currency":"EUR"}},"reason":"pay"}`, c.creds.Counterparties[0].ID)
	if status, out := c.do(http.MethodPost, "/v1/decisions", body); status != 200 {
		t.Fatalf("before the rotation: %d %v", status, out)
	}
	newKey := filepath.Join(t.TempDir(), "new.jwk")
	cli(t, nil)("agent", "rotate-key", "--data-dir", dataDir, "--tenant", "acme", c.creds.Agent.ID, "--generate-key", newKey)
	time.Sleep(1500 * time.Millisecond) // past the second the server trusts what it read
	if status, out := c.do(http.MethodPost, "/v1/decisions", body); status != 401 {
		t.Fatalf("the retired key's token after the rotation: %d %v", status, out)
	}
	// The credentials file, with the new private key, gets a token that works.
	raw, err := os.ReadFile(credsFile)
	if err != nil {
		t.Fatal(err)
	}
	var creds map[string]any
	if err := json.Unmarshal(raw, &creds); err != nil {
		t.Fatal(err)
	}
	jwkRaw, err := os.ReadFile(newKey)
	if err != nil {
		t.Fatal(err)
	}
	creds["agent"].(map[string]any)["private_jwk"] = json.RawMessage(jwkRaw)
	rotated, _ := json.Marshal(creds)
	rotatedFile := filepath.Join(t.TempDir(), "credentials.json")
	if err := os.WriteFile(rotatedFile, rotated, 0o600); err != nil {
		t.Fatal(err)
	}
	if status, out := newAgentClient(t, p, rotatedFile, nil).do(http.MethodPost, "/v1/decisions", body); status != 200 {
		t.Fatalf("the new key's token: %d %v", status, out)
	}
}
