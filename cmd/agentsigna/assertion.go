package main

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/agentsigna/agentsigna/internal/osfile"
)

// runAgentAssertion prints a fresh RFC 7523 client assertion for an
// agent: the one in a credentials file (DATA_DIR/demo/credentials.json,
// or any file with {"tenant_url", "agent": {"id", "private_jwk"}}), or,
// with --key and --agent, the private JWK `agent register --generate-key`
// wrote and the id it printed. It is what an agent sends as
// client_assertion to POST /v1/oauth/token. For trying the service from a
// shell; a real agent signs its own.
func runAgentAssertion(args []string, stdout, stderr io.Writer, env env) error {
	fs := newFlagSet("agent assertion", stderr)
	credsFile := fs.String("credentials", "agentsigna-data/demo/credentials.json", "credentials file with the agent's id, private JWK and tenant_url")
	keyFile := fs.String("key", "", "the agent's private JWK file instead (with --agent and --audience)")
	agentID := fs.String("agent", "", "the agent's id (with --key)")
	audience := fs.String("audience", "", "token endpoint URL (default: <tenant_url>/v1/oauth/token)")
	lifetime := fs.Duration("lifetime", 2*time.Minute, "assertion lifetime (at most 5m)")
	if err := parse(fs, args, env); err != nil {
		return err
	}
	var creds demoCredentials
	if *keyFile != "" {
		if *agentID == "" || *audience == "" {
			return fmt.Errorf("%w: --key needs --agent and --audience", errUsage)
		}
		credsSet := false
		fs.Visit(func(f *flag.Flag) { credsSet = credsSet || f.Name == "credentials" })
		if credsSet {
			return fmt.Errorf("%w: --key and --credentials name two keys; give one", errUsage)
		}
		raw, err := osfile.ReadAtMost(*keyFile, 1<<20)
		if err != nil {
			return err
		}
		creds.Agent.ID, creds.Agent.PrivateJWK = *agentID, raw
	} else {
		if *agentID != "" {
			return fmt.Errorf("%w: --agent goes with --key (a credentials file names its agent)", errUsage)
		}
		raw, err := osfile.ReadAtMost(*credsFile, 1<<20)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &creds); err != nil || creds.Agent.ID == "" || len(creds.Agent.PrivateJWK) == 0 {
			return fmt.Errorf("%s: not a credentials file with an agent id and private_jwk (for a key file, --key)", *credsFile)
		}
	}
	key, err := jwk.ParseKey(creds.Agent.PrivateJWK)
	if err != nil {
		return fmt.Errorf("%s: the agent's private JWK does not parse", cmp.Or(*keyFile, *credsFile))
	}
	aud := *audience
	if aud == "" {
		aud = strings.TrimSuffix(creds.TenantURL, "/") + "/v1/oauth/token"
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return err
	}
	now := time.Now()
	tok, err := jwt.NewBuilder().Issuer(creds.Agent.ID).Subject(creds.Agent.ID).Audience([]string{aud}).
		IssuedAt(now).Expiration(now.Add(*lifetime)).JwtID(hex.EncodeToString(jti)).Build()
	if err != nil {
		return err
	}
	alg := jwa.EdDSA()
	if kt := key.KeyType(); kt == jwa.EC() {
		alg = jwa.ES256()
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(alg, key))
	if err != nil {
		return fmt.Errorf("sign the assertion: %w", err)
	}
	fmt.Fprintln(stdout, string(signed))
	return nil
}
