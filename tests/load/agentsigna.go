package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxResponse bounds what the harness reads of one answer.
const maxResponse = 1 << 20

// errNotAllowed marks an answer that is not the allow the harness asked
// for (another status or outcome).
var errNotAllowed = errors.New("not an allow")

// credentials is the part of a credentials file (DESIGN §5) the harness
// reads; the private key stays in the file, for `agentsigna agent assertion`.
type credentials struct {
	Agent struct {
		ID string `json:"id"`
	} `json:"agent"`
	Counterparties []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"counterparties"`
}

func readCredentials(path string) (credentials, error) {
	var c credentials
	raw, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(raw, &c); err != nil || c.Agent.ID == "" {
		return c, fmt.Errorf("%s: not a credentials file with an agent id", path)
	}
	return c, nil
}

// verifiedCounterparty is the first verified counterparty of the file.
func (c credentials) verifiedCounterparty() (string, error) {
	for _, cp := range c.Counterparties {
		if cp.Status == "verified" {
			return cp.ID, nil
		}
	}
	return "", errors.New("the credentials list no verified counterparty (give --counterparty)")
}

// unboundedAgent is the --agent-decisions-per-second the harness serves with. Its
// one agent stands for the many a real organization has, so it must not
// meet serve's per-agent bound; a rate it never reaches (rather than 0, no
// bound) keeps the limiter's work in what is measured.
const unboundedAgent = "1e9"

// startDemo runs `agentsigna serve --demo` on a fresh embedded store under
// dir, on free loopback ports, and returns it with its tenant URL, the
// credentials file it wrote and its pprof URL (its CPU profile and stage
// histograms).
func startDemo(ctx context.Context, o Options, client *http.Client, dir string) (p *process, tenantURL, credsFile, pprofURL string, err error) {
	ta, err := freeLoopbackAddr()
	if err != nil {
		return nil, "", "", "", err
	}
	pa, err := freeLoopbackAddr()
	if err != nil {
		return nil, "", "", "", err
	}
	dataDir := filepath.Join(dir, "agentsigna-data")
	tenantURL = "http://" + ta
	args := []string{"serve", "--demo",
		"--data-dir", dataDir, "--tenant-addr", ta, "--platform-addr", pa, "--public-url", tenantURL,
		"--log-level", o.ServerLogLevel, "--agent-decisions-per-second", unboundedAgent}
	da, err := freeLoopbackAddr()
	if err != nil {
		return nil, "", "", "", err
	}
	args = append(args, "--pprof-addr", da)
	pprofURL = "http://" + da
	p, err = startProcess("agentsigna serve --demo", o.AgentSigna, args, nil)
	if err != nil {
		return nil, "", "", "", err
	}
	if err := p.waitHealthy(ctx, client, tenantURL+"/healthz", time.Minute); err != nil {
		_ = p.stop()
		return nil, "", "", "", err
	}
	return p, tenantURL, filepath.Join(dataDir, "demo", "credentials.json"), pprofURL, nil
}

// captureCPUProfile waits out the warm-up, then asks the server for a CPU
// profile of the measured window and writes it to file.
func captureCPUProfile(ctx context.Context, pprofURL, file string, warmup, window time.Duration) error {
	select {
	case <-time.After(warmup):
	case <-ctx.Done():
		return ctx.Err()
	}
	secs := max(int(window/time.Second), 1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", pprofURL, secs), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: window + time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cpu profile: %s", resp.Status)
	}
	out, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		out.Close()
		return fmt.Errorf("cpu profile: %w", err)
	}
	return out.Close()
}

// tokenSource holds the agent's current access token and renews it before
// it expires (tokens live 5 minutes; a run may be longer).
type tokenSource struct {
	bin, credsFile, endpoint string
	client                   *http.Client
	current                  atomic.Pointer[string]
	lifetime                 time.Duration
}

// newTokenSource gets the first token: a client assertion from
// `agentsigna agent assertion`, exchanged at POST /v1/oauth/token.
func newTokenSource(ctx context.Context, bin, credsFile, tenantURL string, client *http.Client) (*tokenSource, error) {
	ts := &tokenSource{bin: bin, credsFile: credsFile, endpoint: tenantURL + "/v1/oauth/token", client: client}
	if err := ts.refresh(ctx); err != nil {
		return nil, err
	}
	return ts, nil
}

func (ts *tokenSource) token() string { return *ts.current.Load() }

func (ts *tokenSource) refresh(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, ts.bin, "agent", "assertion", "--credentials", ts.credsFile, "--audience", ts.endpoint).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("agentsigna agent assertion: %s", strings.TrimSpace(string(ee.Stderr)))
		}
		return fmt.Errorf("agentsigna agent assertion: %w", err)
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {strings.TrimSpace(string(out))},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := ts.client.Do(req)
	if err != nil {
		return fmt.Errorf("token endpoint: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tok) != nil || tok.AccessToken == "" {
		return fmt.Errorf("token endpoint: %d %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	ts.current.Store(&tok.AccessToken)
	ts.lifetime = time.Duration(tok.ExpiresIn) * time.Second
	return nil
}

// renew refreshes the token at half its lifetime until ctx ends, reporting
// failures to progress; the old token keeps being used meanwhile (when it
// expires, requests fail and count as errors).
func (ts *tokenSource) renew(ctx context.Context, progress io.Writer) {
	every := ts.lifetime / 2
	if every < 10*time.Second {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := ts.refresh(ctx); err != nil && ctx.Err() == nil {
				fmt.Fprintf(progress, "load: renewing the access token: %v\n", err)
			}
		}
	}
}

// agentSignaTarget asks POST /v1/decisions for an allowed payment.
type agentSignaTarget struct {
	client *http.Client
	url    string
	tokens *tokenSource
	body   []byte
}

func newAgentSignaTarget(client *http.Client, tenantURL string, tokens *tokenSource, counterparty string) (*agentSignaTarget, error) {
	body, err := json.Marshal(map[string]any{
		"action": map[string]any{
			"type": "payment.send", "resource": "invoice:INV-1", "counterparty": counterparty,
			"amount": map[string]string{"value": "250.00", "currency": "EUR"},
		},
		"reason": "load",
	})
	if err != nil {
		return nil, err
	}
	return &agentSignaTarget{client: client, url: tenantURL + "/v1/decisions", tokens: tokens, body: body}, nil
}

func (t *agentSignaTarget) Name() string { return "agentsigna POST /v1/decisions" }

func (t *agentSignaTarget) Do(ctx context.Context) error {
	_, err := t.decide(ctx)
	return err
}

// decide makes one decision and checks it is an allow with a receipt.
func (t *agentSignaTarget) decide(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(t.body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+t.tokens.token())
	resp, err := t.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	buf := bufferPool.Get().(*bytes.Buffer)
	defer bufferPool.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, maxResponse)); err != nil {
		return "", err
	}
	var out struct {
		Outcome string `json:"outcome"`
		Receipt string `json:"receipt"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(buf.Bytes(), &out) != nil || out.Outcome != "allow" || out.Receipt == "" {
		return "", fmt.Errorf("%w: %d %.300s", errNotAllowed, resp.StatusCode, bytes.TrimSpace(buf.Bytes()))
	}
	return out.Receipt, nil
}

var bufferPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// agentProfile is what the policy input says about the agent and its
// organization, as the service knows it: read from the claims of a
// receipt (DESIGN §3 "Receipt").
type agentProfile struct {
	TenantID, TenantSlug string
	AgentID, Sponsor     string
	RiskTier             string
}

// probe makes one decision and reads the agent's profile from its receipt.
func (t *agentSignaTarget) probe(ctx context.Context) (agentProfile, error) {
	receipt, err := t.decide(ctx)
	if err != nil {
		return agentProfile{}, fmt.Errorf("the first decision: %w", err)
	}
	parts := strings.Split(receipt, ".")
	if len(parts) != 3 {
		return agentProfile{}, errors.New("the receipt is not a compact JWS")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return agentProfile{}, errors.New("the receipt's payload is not base64url")
	}
	var claims struct {
		Issuer string `json:"iss"`
		Tenant string `json:"tenant"`
		Agent  struct {
			ID       string `json:"id"`
			Sponsor  string `json:"sponsor"`
			RiskTier string `json:"risk_tier"`
		} `json:"agent"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return agentProfile{}, fmt.Errorf("the receipt's claims: %w", err)
	}
	_, slug, ok := strings.Cut(claims.Issuer, "/t/")
	if !ok || slug == "" || claims.Tenant == "" || claims.Agent.ID == "" {
		return agentProfile{}, errors.New("the receipt lacks iss …/t/<slug>, tenant or agent")
	}
	return agentProfile{TenantID: claims.Tenant, TenantSlug: slug, AgentID: claims.Agent.ID,
		Sponsor: claims.Agent.Sponsor, RiskTier: claims.Agent.RiskTier}, nil
}

// healthzTarget is GET /healthz on the same listener: no store, no policy,
// no signature. At the open loop's rate it measures the floor that the
// harness, the HTTP stack and the machine put under any answer.
type healthzTarget struct {
	client *http.Client
	url    string
}

func newHealthzTarget(client *http.Client, tenantURL string) *healthzTarget {
	return &healthzTarget{client: client, url: tenantURL + "/healthz"}
}

func (t *healthzTarget) Name() string { return "agentsigna GET /healthz" }

func (t *healthzTarget) Do(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return err
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse)); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: %d", resp.StatusCode)
	}
	return nil
}
