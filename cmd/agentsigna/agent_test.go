package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

type subcommand func(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error

// testOrg is a data dir holding organization acme.
type testOrg struct {
	dir, tenantID string
}

func newTestOrg(t *testing.T) testOrg {
	t.Helper()
	dir := t.TempDir()
	s, err := sqlite.Open(context.Background(), sqlite.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	o := testOrg{dir: dir, tenantID: storetest.CreateTenant(t, s, "acme").ID}
	// The key org create (or serve) made with the organization.
	if _, _, err := secrets.LoadMasterKey(secrets.LoadOptions{DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	return o
}

// run runs a subcommand against the org's data dir (given by environment,
// as an operator would).
func (o testOrg) run(fn subcommand, args ...string) (stdout, stderr string, err error) {
	var out, errb bytes.Buffer
	err = fn(context.Background(), args, &out, &errb, envOf(map[string]string{"AGENTSIGNA_DATA_DIR": o.dir}))
	return out.String(), errb.String(), err
}

// must runs a subcommand that must succeed and print exactly one line.
func (o testOrg) must(t *testing.T, fn subcommand, args ...string) []string {
	t.Helper()
	out, errOut, err := o.run(fn, args...)
	if err != nil {
		t.Fatalf("%v: %v (stderr %q)", args, err, errOut)
	}
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("%v printed %q, want one line", args, out)
	}
	return strings.Split(strings.TrimSuffix(out, "\n"), "\t")
}

// in runs fn in a transaction on the org, with the CLI's store closed.
func (o testOrg) in(t *testing.T, fn func(ctx context.Context, tx store.TenantTx) error) {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{DataDir: o.dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.InTenantTx(context.Background(), o.tenantID, fn); err != nil {
		t.Fatal(err)
	}
}

func (o testOrg) agents(t *testing.T) (agents []store.Agent, keys map[string][]store.AgentKey) {
	t.Helper()
	keys = map[string][]store.AgentKey{}
	o.in(t, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if agents, err = tx.Agents().List(ctx); err != nil {
			return err
		}
		for _, a := range agents {
			if keys[a.ID], err = tx.Agents().Keys(ctx, a.ID); err != nil {
				return err
			}
		}
		return nil
	})
	return agents, keys
}

func jwkJSON(t *testing.T, raw any, kid string) []byte {
	t.Helper()
	k, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	if kid != "" {
		if err := k.Set(jwk.KeyIDKey, kid); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func register(o testOrg, keyFlag, keyArg string) (string, string, error) {
	return o.run(runAgent, "register", "--tenant", "acme", "--name", "Payments bot", "--sponsor", "usr_alice",
		"--risk-tier", "low", keyFlag, keyArg)
}

func TestAgentRegisterGeneratesKey(t *testing.T) {
	o := newTestOrg(t)
	keyFile := filepath.Join(t.TempDir(), "agent.jwk")
	out, errOut, err := register(o, "--generate-key", keyFile)
	if err != nil {
		t.Fatalf("register: %v (stderr %q)", err, errOut)
	}
	fi, err := os.Stat(keyFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key file: %v, %v; want mode 0600", fi, err)
	}
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := jwk.ParseKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	if isPriv, _ := jwk.IsPrivateKey(priv); !isPriv {
		t.Fatal("the key file does not hold the private key")
	}
	var members map[string]string
	if err := json.Unmarshal(raw, &members); err != nil || len(members["d"]) < 40 {
		t.Fatalf("private JWK %v, %v", members, err)
	}
	if strings.Contains(out, members["d"]) || strings.Contains(errOut, members["d"]) {
		t.Fatal("the private key was printed")
	}
	kid, _ := priv.KeyID()
	fields := strings.Split(strings.TrimSpace(out), "\t")
	if len(fields) < 3 || store.CheckID(store.PrefixAgent, fields[0]) != nil || fields[2] != "kid="+kid || strings.Count(out, "\n") != 1 {
		t.Fatalf("output %q, want one line with the agent id and kid %s", out, kid)
	}

	agents, keys := o.agents(t)
	if len(agents) != 1 || agents[0].ID != fields[0] || agents[0].Name != "Payments bot" || agents[0].Sponsor != "usr_alice" ||
		agents[0].RiskTier != store.RiskLow || agents[0].Status != store.AgentActive {
		t.Fatalf("stored agents %+v", agents)
	}
	ks := keys[agents[0].ID]
	if len(ks) != 1 || ks[0].KID != kid || ks[0].Status != store.KeyActive {
		t.Fatalf("stored keys %+v", ks)
	}
	if strings.Contains(ks[0].PublicJWK, members["d"]) || strings.Contains(ks[0].PublicJWK, `"d"`) {
		t.Fatalf("the store holds private key material: %s", ks[0].PublicJWK)
	}
	stored, err := identity.ParseAgentJWK([]byte(ks[0].PublicJWK))
	if err != nil {
		t.Fatalf("stored JWK: %v", err)
	}
	// The stored public key is the generated key's, and its kid its thumbprint.
	pub, _ := jwk.PublicKeyOf(priv)
	want, _ := pub.Thumbprint(crypto.SHA256)
	got, _ := stored.Thumbprint(crypto.SHA256)
	if !bytes.Equal(got, want) || kid != base64.RawURLEncoding.EncodeToString(want) {
		t.Fatalf("stored key %s does not match the generated one (kid %s)", ks[0].PublicJWK, kid)
	}

	// The key file is never overwritten, and nothing is registered then.
	if _, _, err := register(o, "--generate-key", keyFile); err == nil {
		t.Fatal("a second registration overwrote the key file")
	}
	if again, _ := os.ReadFile(keyFile); !bytes.Equal(again, raw) {
		t.Fatal("the key file changed")
	}
	if agents, _ := o.agents(t); len(agents) != 1 {
		t.Fatalf("%d agents after a refused registration", len(agents))
	}
}

func TestAgentRegisterPublicJWK(t *testing.T) {
	o := newTestOrg(t)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)

	// A public key without a kid gets its thumbprint; a kid given is kept.
	fields := o.must(t, runAgent, "register", "--tenant", "acme", "--name", "Ed", "--sponsor", "usr_a", "--risk-tier", "medium",
		"--public-jwk", writeFile(t, t.TempDir(), "ed.jwk", jwkJSON(t, edPub, "")))
	edJWK, _ := jwk.Import(edPub)
	tp, _ := edJWK.Thumbprint(crypto.SHA256)
	if fields[2] != "kid="+base64.RawURLEncoding.EncodeToString(tp) {
		t.Fatalf("kid of a kid-less key: %v, want its thumbprint", fields)
	}
	fields = o.must(t, runAgent, "register", "--tenant", "acme", "--name", "EC", "--sponsor", "usr_a", "--risk-tier", "high",
		"--public-jwk", writeFile(t, t.TempDir(), "ec.jwk", jwkJSON(t, &ec.PublicKey, "ec-2026")))
	if fields[2] != "kid=ec-2026" {
		t.Fatalf("kid given: %v", fields)
	}

	privateEd := jwkJSON(t, edPriv, "")
	var secret struct{ D string }
	_ = json.Unmarshal(privateEd, &secret)
	for _, tc := range []struct {
		name string
		jwk  []byte
	}{
		{"private Ed25519 key", privateEd},
		{"private P-256 key", jwkJSON(t, ec, "ec")},
		{"RSA key", jwkJSON(t, &rsaKey.PublicKey, "rsa")},
		{"symmetric key", []byte(`{"kty":"oct","k":"c2VjcmV0IGtleSBtYXRlcmlhbA","kid":"hs"}`)},
		{"not JSON", []byte("-----BEGIN PUBLIC KEY-----")},
		{"a JWK set", []byte(`{"keys":[]}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := register(o, "--public-jwk", writeFile(t, t.TempDir(), "k.jwk", tc.jwk))
			if !errors.Is(err, identity.ErrInvalidAgentKey) {
				t.Fatalf("got %v, want ErrInvalidAgentKey", err)
			}
			if out != "" || strings.Contains(err.Error(), secret.D) || strings.Contains(errOut, secret.D) {
				t.Fatalf("output %q / error %q", out, err)
			}
		})
	}
	if agents, _ := o.agents(t); len(agents) != 2 {
		t.Fatalf("%d agents stored, want the two valid ones", len(agents))
	}
}

func TestAgentSuspendRotateList(t *testing.T) {
	o := newTestOrg(t)
	dir := t.TempDir()
	id := register1(t, o, filepath.Join(dir, "k1.jwk"))
	other := register1(t, o, filepath.Join(dir, "other.jwk"))
	_, keys := o.agents(t)
	oldKID := keys[id][0].KID

	fields := o.must(t, runAgent, "rotate-key", "--tenant", "acme", id, "--generate-key", filepath.Join(dir, "k2.jwk"))
	if fields[0] != id || fields[1] != "key rotated" || fields[3] != "retired=1" {
		t.Fatalf("rotate-key printed %v", fields)
	}
	newKID := strings.TrimPrefix(fields[2], "kid=")
	_, keys = o.agents(t)
	if ks := keys[id]; len(ks) != 2 || statusOf(ks, oldKID) != store.KeyRetired || statusOf(ks, newKID) != store.KeyActive {
		t.Fatalf("keys after rotation %+v", ks)
	}
	if ks := keys[other]; len(ks) != 1 || ks[0].Status != store.KeyActive {
		t.Fatalf("another agent's keys changed: %+v", ks)
	}
	// Registering the same public key again is refused, and changes nothing.
	priv, _ := os.ReadFile(filepath.Join(dir, "k2.jwk"))
	pk, _ := jwk.ParseKey(priv)
	pub, _ := jwk.PublicKeyOf(pk)
	pubJSON, _ := json.Marshal(pub)
	if _, _, err := o.run(runAgent, "rotate-key", "--tenant", "acme", "--public-jwk", writeFile(t, t.TempDir(), "same.jwk", pubJSON), id); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("rotating to the active key: %v, want ErrConflict", err)
	}

	o.must(t, runAgent, "suspend", "--tenant", "acme", id)
	// Again: nothing changes, and nothing more is logged (below).
	if again := o.must(t, runAgent, "suspend", "--tenant", "acme", id); again[1] != "already suspended" {
		t.Fatalf("second suspend printed %v", again)
	}
	out, _, err := o.run(runAgent, "list", "--tenant", "acme")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("list printed %q", out)
	}
	for _, l := range lines {
		f := strings.Split(l, "\t")
		switch f[0] {
		case id:
			if f[1] != "suspended" || f[2] != "low" || f[3] != "keys="+newKID || f[5] != `name="Payments bot"` {
				t.Errorf("list line %q", l)
			}
		case other:
			if f[1] != "active" {
				t.Errorf("list line %q", l)
			}
		default:
			t.Errorf("list line %q", l)
		}
	}
	// A revoked agent (revoked in the store: there is no command yet)
	// gets neither a key nor a suspension, and nothing is logged (below).
	o.in(t, func(ctx context.Context, tx store.TenantTx) error {
		return tx.Agents().SetStatus(ctx, other, store.AgentRevoked)
	})
	if _, _, err := o.run(runAgent, "rotate-key", "--tenant", "acme", other, "--generate-key", filepath.Join(dir, "revoked.jwk")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("rotate the key of a revoked agent: %v, want ErrConflict", err)
	}
	if _, _, err := o.run(runAgent, "suspend", "--tenant", "acme", other); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("suspend a revoked agent: %v, want ErrConflict", err)
	}
	if _, _, err := o.run(runAgent, "suspend", "--tenant", "acme", store.NewID(store.PrefixAgent)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("suspend unknown agent: %v", err)
	}
	// A failed rotation leaves no private key file behind.
	orphan := filepath.Join(dir, "orphan.jwk")
	if _, _, err := o.run(runAgent, "rotate-key", "--tenant", "acme", store.NewID(store.PrefixAgent), "--generate-key", orphan); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rotate unknown agent: %v", err)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("key file of a failed rotation: %v", err)
	}

	// Each change is in the organization's log, and no refused one: not
	// the rotation to the active key, nor those of an unknown agent.
	type logged struct {
		kind, subject string
		record        map[string]any
	}
	var got []logged
	o.in(t, func(ctx context.Context, tx store.TenantTx) error {
		entries, err := tx.Log().Entries(ctx, 0, 1<<20)
		for _, e := range entries {
			var head struct{ Kind, Subject string }
			var record map[string]any
			if err := json.Unmarshal(e.Entry, &head); err != nil {
				return err
			}
			if err := json.Unmarshal(e.Record, &record); err != nil {
				return err
			}
			got = append(got, logged{head.Kind, head.Subject, record})
		}
		return err
	})
	want := []struct{ kind, subject, event, kid string }{
		{"agent.registered", id, "agent_registered", oldKID},
		{"agent.registered", other, "agent_registered", ""},
		{"agent.key_rotated", id, "agent_key_rotated", newKID},
		{"agent.suspended", id, "agent_suspended", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("logged %+v, want %d entries", got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.kind != w.kind || g.subject != w.subject || g.record["event"] != w.event || g.record["agent_id"] != w.subject {
			t.Errorf("entry %d: %s %s %v, want %s %s", i, g.kind, g.subject, g.record, w.kind, w.subject)
		}
		if w.kid == "" {
			continue
		}
		jwkOf, _ := g.record["public_jwk"].(map[string]any)
		if g.record["key_id"] != w.kid || jwkOf["kid"] != w.kid || jwkOf["d"] != nil {
			t.Errorf("entry %d: key %v, public JWK %v; want %s, public members only", i, g.record["key_id"], jwkOf, w.kid)
		}
	}
	if r := got[0].record; r["sponsor"] != "usr_alice" || r["risk_tier"] != "low" || r["name"] != "Payments bot" {
		t.Errorf("registration logged %v", r)
	}
	if r := got[2].record; fmt.Sprint(r["retired_key_ids"]) != "["+oldKID+"]" {
		t.Errorf("rotation logged %v, want the key it retired, %s", r["retired_key_ids"], oldKID)
	}
}

func TestAgentUsageErrors(t *testing.T) {
	o := newTestOrg(t)
	key := filepath.Join(t.TempDir(), "k.jwk")
	base := []string{"register", "--tenant", "acme", "--name", "N", "--sponsor", "S", "--risk-tier", "low"}
	for _, tc := range []struct {
		name string
		args []string
		want error
	}{
		{"no subcommand", nil, errUsage},
		{"unknown subcommand", []string{"delete"}, errUsage},
		{"no key", base, errUsage},
		{"two keys", append(base, "--generate-key", key, "--public-jwk", key), errUsage},
		{"bad tier", []string{"register", "--tenant", "acme", "--name", "N", "--sponsor", "S", "--risk-tier", "extreme", "--generate-key", key}, errUsage},
		{"no name", []string{"register", "--tenant", "acme", "--sponsor", "S", "--risk-tier", "low", "--generate-key", key}, errUsage},
		{"no tenant", []string{"list"}, errUsage},
		{"bad tenant", []string{"list", "--tenant", "../acme"}, errUsage},
		{"no agent id", []string{"suspend", "--tenant", "acme"}, errUsage},
		{"malformed agent id", []string{"suspend", "--tenant", "acme", "agt_1"}, errUsage},
		{"two agent ids", []string{"suspend", "--tenant", "acme", store.NewID(store.PrefixAgent), store.NewID(store.PrefixAgent)}, errUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := o.run(runAgent, tc.args...); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, _, err := o.run(runAgent, "list", "--tenant", "nobody"); err == nil || !strings.Contains(err.Error(), `no organization "nobody"`) {
		t.Fatalf("unknown organization: %v", err)
	}
	if _, err := os.Stat(key); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused command wrote a key: %v", err)
	}
}

func register1(t *testing.T, o testOrg, keyFile string) string {
	t.Helper()
	out, errOut, err := register(o, "--generate-key", keyFile)
	if err != nil {
		t.Fatalf("register: %v (%s)", err, errOut)
	}
	return strings.SplitN(out, "\t", 2)[0]
}

func statusOf(keys []store.AgentKey, kid string) store.KeyStatus {
	for _, k := range keys {
		if k.KID == kid {
			return k.Status
		}
	}
	return ""
}
