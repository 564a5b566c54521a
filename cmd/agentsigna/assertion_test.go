package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// agent assertion signs for the key `agent register --generate-key` wrote
// (--key, --agent, --audience), as for a credentials file; the flags that
// go together are asked for together.
func TestAgentAssertionFromKeyFile(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := jwk.Import(priv)
	raw, _ := json.Marshal(key)
	dir := t.TempDir()
	keyFile := writePolicyTestFile(t, dir, "payer.jwk", raw)
	pubKey, _ := jwk.Import(pub)
	pubRaw, _ := json.Marshal(pubKey)
	pubFile := writePolicyTestFile(t, dir, "payer.pub.jwk", pubRaw)
	const aud = "http://127.0.0.1:8080/v1/oauth/token"
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := runAgentAssertion(args, &out, &errOut, envOf(nil))
		return out.String(), err
	}
	out, err := run("--key", keyFile, "--agent", "agt_payer", "--audience", aud)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Parse([]byte(strings.TrimSpace(out)), jwt.WithKey(jwa.EdDSA(), pub))
	if err != nil {
		t.Fatalf("the assertion does not verify under the agent's key: %v", err)
	}
	iss, _ := tok.Issuer()
	sub, _ := tok.Subject()
	auds, _ := tok.Audience()
	if iss != "agt_payer" || sub != "agt_payer" || len(auds) != 1 || auds[0] != aud {
		t.Errorf("claims iss %q sub %q aud %v", iss, sub, auds)
	}
	for _, tc := range []struct {
		args  []string
		usage bool
		says  string
	}{
		{[]string{"--key", keyFile, "--audience", aud}, true, "--key needs --agent and --audience"},
		{[]string{"--key", keyFile, "--agent", "agt_payer"}, true, "--key needs --agent and --audience"},
		{[]string{"--agent", "agt_payer", "--credentials", keyFile}, true, "--agent goes with --key"},
		{[]string{"--key", keyFile, "--agent", "agt_payer", "--audience", aud, "--credentials", keyFile}, true, "--key and --credentials name two keys"},
		{[]string{"--credentials", keyFile}, false, "not a credentials file with an agent id and private_jwk (for a key file, --key)"},
		{[]string{"--key", filepath.Join(dir, "missing.jwk"), "--agent", "agt_payer", "--audience", aud}, false, "no such file"},
		{[]string{"--key", pubFile, "--agent", "agt_payer", "--audience", aud}, false, "sign the assertion"},
	} {
		out, err := run(tc.args...)
		if err == nil || errors.Is(err, errUsage) != tc.usage || !strings.Contains(err.Error(), tc.says) || out != "" {
			t.Errorf("%v: %q, %v; want %q", tc.args, out, err, tc.says)
		}
	}
}
