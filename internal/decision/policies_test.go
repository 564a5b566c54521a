package decision_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
	"github.com/agentsigna/agentsigna/internal/store/teststore"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
	"github.com/agentsigna/agentsigna/policies"
)

// exampleBundle packs the acme example with revision rev and, when extra
// is set, a changed data file (same revision, other content).
func exampleBundle(t *testing.T, rev string, extra bool) []byte {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(policies.ExampleACME(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.ExampleACME(), path)
		m[path] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	m[".manifest"] = &fstest.MapFile{Data: []byte(`{"revision":"` + rev + `","roots":["tenant"],"rego_version":1}`)}
	if extra {
		m["tenant/extra/data.json"] = &fstest.MapFile{Data: []byte(`{"note":"changed"}`)}
	}
	raw, err := bundles.PackFS(m, bundles.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

type policyEnv struct {
	backend  store.Backend
	keys     *signing.Keyring
	ledger   *ledger.Ledger
	engine   *bundles.Engine
	policies *decision.Policies
	org      decision.Organization
}

func newPolicyEnv(t *testing.T, kind string) *policyEnv {
	t.Helper()
	b := teststore.Open(t, kind)
	master, _ := secrets.GenerateMasterKey()
	kr, _ := signing.NewKeyring(master)
	l, err := ledger.New(ledger.Config{Tenants: b, Platform: b, Keys: kr, Origin: "agentsigna.test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	tn := storetest.CreateTenant(t, b, "acme")
	engine := bundles.NewEngine()
	return &policyEnv{backend: b, keys: kr, ledger: l, engine: engine, policies: decision.NewPolicies(b, l, engine, decision.PoliciesOptions{}),
		org: decision.Organization{ID: tn.ID, Slug: tn.Slug}}
}

func TestPolicyLifecycle(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			e := newPolicyEnv(t, kind)
			ctx := context.Background()
			p := e.policies
			v1, v2 := exampleBundle(t, "v1", false), exampleBundle(t, "v2", false)
			if _, err := p.Upload(ctx, e.org, v1, "usr_author"); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Upload(ctx, e.org, v1, "usr_author"); err != nil {
				t.Fatalf("same bundle again: %v", err)
			}
			if _, err := p.Upload(ctx, e.org, exampleBundle(t, "v1", true), "usr_author"); !errors.Is(err, bundles.ErrRevisionConflict) {
				t.Fatalf("same revision, other content: %v", err)
			}
			if _, err := p.Upload(ctx, e.org, []byte("not a bundle"), "usr_author"); !errors.Is(err, bundles.ErrInvalidBundle) {
				t.Fatalf("garbage: %v", err)
			}
			if _, err := p.Upload(ctx, e.org, v2, "usr_author"); err != nil {
				t.Fatal(err)
			}
			for _, by := range [][2]string{{"usr_a", "usr_a"}, {"usr_a", ""}, {"", "usr_b"}} {
				if _, err := p.Activate(ctx, e.org, "v1", by[0], by[1], false); !errors.Is(err, decision.ErrFourEyes) {
					t.Fatalf("activation by %q approved by %q: %v", by[0], by[1], err)
				}
			}
			if _, err := p.Activate(ctx, e.org, "v9", "usr_a", "usr_b", false); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("unknown revision: %v", err)
			}
			if _, err := p.Activate(ctx, e.org, "v1", "usr_a", "usr_b", true); !errors.Is(err, bundles.ErrNotRollback) {
				t.Fatalf("rollback with nothing active: %v", err)
			}
			if _, err := p.Activate(ctx, e.org, "v1", "usr_a", "usr_b", false); err != nil {
				t.Fatal(err)
			}
			if rev, _ := e.engine.ActiveRevision(e.org.ID); rev != "v1" {
				t.Fatalf("engine runs %q", rev)
			}
			if _, err := p.Activate(ctx, e.org, "v2", "usr_a", "usr_b", false); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Activate(ctx, e.org, "v1", "usr_a", "usr_b", false); !errors.Is(err, bundles.ErrRollbackRequired) {
				t.Fatalf("going back without rollback: %v", err)
			}
			act, err := p.Activate(ctx, e.org, "v1", "usr_b", "usr_a", true)
			if err != nil || act.Seq != 3 || !act.Rollback {
				t.Fatalf("rollback: %+v, %v", act, err)
			}
			// A restarted process loads the active revision from the store.
			fresh := bundles.NewEngine()
			if err := decision.NewPolicies(e.backend, e.ledger, fresh, decision.PoliciesOptions{}).LoadActive(ctx, e.org); err != nil {
				t.Fatal(err)
			}
			if rev, _ := fresh.ActiveRevision(e.org.ID); rev != "v1" {
				t.Fatalf("reloaded engine runs %q", rev)
			}
			// Every change is in the ledger, in order.
			lg := e.ledger.TenantLog(e.org.ID, e.org.Slug)
			var kinds []string
			for i := range uint64(5) {
				en, err := e.ledger.Entry(ctx, lg, i)
				if err != nil {
					t.Fatal(err)
				}
				parsed, _ := verify.ParseEntry(en.Entry)
				kinds = append(kinds, parsed.Kind)
				// DESIGN §3: hashes in JSON are standard base64.
				var rec map[string]any
				_ = json.Unmarshal(en.Record, &rec)
				v1Sum, v2Sum := sha256.Sum256(v1), sha256.Sum256(v2)
				want := base64.StdEncoding.EncodeToString(v1Sum[:])
				if i == 1 || i == 3 {
					want = base64.StdEncoding.EncodeToString(v2Sum[:])
				}
				if rec["bundle_sha256"] != want {
					t.Fatalf("entry %d: bundle_sha256 %v, want %s", i, rec["bundle_sha256"], want)
				}
				if i == 4 && (rec["revision"] != "v1" || rec["previous_revision"] != "v2" || rec["by"] != "usr_b" || rec["approved_by"] != "usr_a") {
					t.Fatalf("rollback record %v", rec)
				}
			}
			if got := strings.Join(kinds, ","); got != "policy.upload,policy.upload,policy.activate,policy.activate,policy.rollback" {
				t.Fatalf("ledger kinds %s", got)
			}
			if rep, err := e.ledger.Check(ctx, lg, ""); err != nil || rep.Problem != nil {
				t.Fatalf("ledger check: %v %v", rep.Problem, err)
			}
		})
	}
}

// Once an organization registers a verification key, unsigned bundles are
// refused at upload.
func TestPolicyVerificationKeyRequiresSignedBundles(t *testing.T) {
	e := newPolicyEnv(t, "sqlite")
	ctx := context.Background()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if err := e.policies.AddVerificationKey(ctx, e.org, "ci", "", []byte("-----BEGIN "+"PRIVATE KEY-----\nAAAA\n-----END "+"PRIVATE KEY-----\n"), "usr_admin"); err == nil {
		t.Fatal("a private key was registered as a verification key")
	}
	if err := e.policies.AddVerificationKey(ctx, e.org, "ci", "", pemKey, "usr_admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.policies.Upload(ctx, e.org, exampleBundle(t, "v1", false), "usr_author"); !errors.Is(err, bundles.ErrUnsigned) {
		t.Fatalf("unsigned bundle with a key registered: %v", err)
	}
}

// A revision activated unsigned stays active once the organization
// registers a verification key, in a process started after the key as in
// one running before it; only activations from then on must be signed.
// Found by review: a process started after the key read the active
// revision under it, and denied all of the organization's decisions.
func TestPolicyUnsignedActiveRevisionOutlivesANewKey(t *testing.T) {
	e := newPolicyEnv(t, "sqlite")
	ctx := context.Background()
	if _, err := e.policies.Upload(ctx, e.org, exampleBundle(t, "v1", false), "usr_author"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.policies.Activate(ctx, e.org, "v1", "usr_author", "usr_reviewer", false); err != nil {
		t.Fatal(err)
	}
	if err := e.policies.AddVerificationKey(ctx, e.org, "ci", "", newPEMKey(t), "usr_admin"); err != nil {
		t.Fatal(err)
	}
	// A process started now.
	engine := bundles.NewEngine()
	restarted := decision.NewPolicies(e.backend, e.ledger, engine, decision.PoliciesOptions{})
	if err := restarted.LoadActive(ctx, e.org); err != nil {
		t.Fatalf("loading the active unsigned revision after a key was registered: %v", err)
	}
	if rev, _ := engine.ActiveRevision(e.org.ID); rev != "v1" {
		t.Fatalf("active revision %q, want v1", rev)
	}
	// Activating it again, or another unsigned one, is what the key stops.
	if _, err := restarted.Upload(ctx, e.org, exampleBundle(t, "v2", false), "usr_author"); !errors.Is(err, bundles.ErrUnsigned) {
		t.Fatalf("an unsigned upload after the key: %v, want ErrUnsigned", err)
	}
}

// TestPolicyActivatedByAnotherProcess: a serving process decides under the
// activation another process made after it had loaded its policy (the
// `policy activate` command, or another replica), and under a rollback
// made there too — not under the revision it happened to load first.
func TestPolicyActivatedByAnotherProcess(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e, agent, payee := payingEnv(t, kind)
			ctx := context.Background()
			revisionOf := func(resp decision.Response) string {
				t.Helper()
				claims, err := signing.VerifyReceipt(resp.Receipt, e.jwks(t), e.clock.Now())
				if err != nil {
					t.Fatalf("receipt of %+v: %v", resp, err)
				}
				return claims.Policy.TenantRevision
			}
			if rev := revisionOf(e.decide(t, agent.ID, payment("100.00", payee.ID), "")); rev != "acme-example-1" {
				t.Fatalf("first decision under %q", rev)
			}
			// Another process, with an engine of its own, activates.
			otherEngine, other, _ := e.newService(t, e.ledger, decision.Config{})
			b, err := other.Upload(ctx, e.org, permissiveBundle(t), "usr_author")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := other.Activate(ctx, e.org, b.Revision, "usr_author", "usr_reviewer", false); err != nil {
				t.Fatal(err)
			}
			if rev, _ := otherEngine.ActiveRevision(e.org.ID); rev != "permissive-1" {
				t.Fatalf("the activating process runs %q", rev)
			}
			if rev := revisionOf(e.decide(t, agent.ID, payment("100.00", payee.ID), "")); rev != "permissive-1" {
				t.Fatalf("after another process activated permissive-1, the server decided under %q", rev)
			}
			if rev, _ := e.engine.ActiveRevision(e.org.ID); rev != "permissive-1" {
				t.Fatalf("the serving engine runs %q", rev)
			}
			// And the emergency rollback, made there too.
			if _, err := other.Activate(ctx, e.org, "acme-example-1", "usr_reviewer", "usr_author", true); err != nil {
				t.Fatal(err)
			}
			if rev := revisionOf(e.decide(t, agent.ID, payment("100.00", payee.ID), "")); rev != "acme-example-1" {
				t.Fatalf("after another process rolled back, the server decided under %q", rev)
			}
		})
	}
}

// TestPolicyThatDoesNotLoad: a process that cannot load the organization's
// active policy (here a build whose limits its bundle exceeds) fails its
// decisions — never deciding under another policy — and, for
// PolicyLoadRetry, without compiling the bundle again for each, the delay
// doubling with each further failure; a newer activation is tried at once.
func TestPolicyThatDoesNotLoad(t *testing.T) {
	e, agent, payee := payingEnv(t, "sqlite")
	ctx := context.Background()
	tight := bundles.DefaultLimits()
	tight.MaxCompressedBytes = 16
	logs := &lockedBuffer{}
	_, _, svc := e.newServiceOver(t, e.ledger, e.backend, tight, decision.Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	loads := func() int { return strings.Count(logs.String(), "its decisions fail until it does") }
	decide := func() {
		t.Helper()
		if resp, err := svc.Decide(ctx, e.org, agent.ID, payment("100.00", payee.ID), ""); err == nil {
			t.Fatalf("decided without its organization's active policy: %+v", resp)
		}
	}
	for range 3 {
		decide()
	}
	if n := loads(); n != 1 {
		t.Fatalf("%d loads tried for 3 decisions within the retry delay, want 1", n)
	}
	e.clock.Advance(decision.PolicyLoadRetry)
	decide()
	if n := loads(); n != 2 {
		t.Fatalf("%d loads tried once the delay passed, want 2", n)
	}
	// Each further failure doubles the delay: 20 s now, then 40 s.
	e.clock.Advance(decision.PolicyLoadRetry)
	decide()
	if n := loads(); n != 2 {
		t.Fatalf("%d loads tried 10 s after a second failure, want still 2", n)
	}
	e.clock.Advance(decision.PolicyLoadRetry)
	decide()
	if n := loads(); n != 3 || !strings.Contains(logs.String(), "retry_in=40s") {
		t.Fatalf("%d loads tried 20 s after the second failure, want 3 (and a 40 s delay next):\n%s", n, logs.String())
	}
	// Another activation: tried at once, delay or not.
	e.activate(t, permissiveBundle(t))
	decide()
	if n := loads(); n != 4 || strings.Count(logs.String(), "retry_in=10s") != 2 {
		t.Fatalf("%d loads tried after a newer activation, want 4, its delay 10 s again:\n%s", n, logs.String())
	}
}

// lockedBuffer is a bytes.Buffer safe for a logger and a test at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A load that fails on the store (not on the bundle) is not remembered:
// the next decision loads and decides.
func TestPolicyLoadAfterAStoreError(t *testing.T) {
	e, agent, payee := payingEnv(t, "sqlite")
	ctx := context.Background()
	flaky := &failReadsOnce{Backend: e.backend}
	_, _, svc := e.newServiceOver(t, e.ledger, flaky, bundles.Limits{}, decision.Config{})
	flaky.armed.Store(true) // the policy's read fails once
	if _, err := svc.Decide(ctx, e.org, agent.ID, payment("100.00", payee.ID), ""); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("decision while the store fails: %v", err)
	}
	if resp, err := svc.Decide(ctx, e.org, agent.ID, payment("100.00", payee.ID), ""); err != nil || resp.Outcome != decision.Allow {
		t.Fatalf("the next decision, the store back: %+v, %v", resp, err)
	}
}

// failReadsOnce fails the first read transaction after it is armed.
type failReadsOnce struct {
	store.Backend
	armed atomic.Bool
}

func (f *failReadsOnce) InTenantReadTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	if f.armed.CompareAndSwap(true, false) {
		return fmt.Errorf("%w: test outage", store.ErrUnavailable)
	}
	return f.Backend.InTenantReadTx(ctx, tenantID, fn)
}

// policyEntries lists the kind and record of each entry of the
// organization's log.
func (e *policyEnv) policyEntries(t *testing.T) (kinds []string, records []map[string]string) {
	t.Helper()
	ctx := context.Background()
	lg := e.ledger.TenantLog(e.org.ID, e.org.Slug)
	cp, err := e.ledger.LatestCheckpoint(ctx, lg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range cp.Size {
		en, err := e.ledger.Entry(ctx, lg, i)
		if err != nil {
			t.Fatal(err)
		}
		parsed, _ := verify.ParseEntry(en.Entry)
		var rec map[string]string
		_ = json.Unmarshal(en.Record, &rec)
		kinds, records = append(kinds, parsed.Kind), append(records, rec)
	}
	return kinds, records
}

// Four eyes are two people, not one name spelled two ways.
func TestFourEyesNamesTwoPeople(t *testing.T) {
	e := newPolicyEnv(t, "sqlite")
	ctx := context.Background()
	if _, err := e.policies.Upload(ctx, e.org, exampleBundle(t, "v1", false), "usr_author"); err != nil {
		t.Fatal(err)
	}
	for _, by := range [][2]string{
		{"alice", "Alice"}, {"alice", "alice "}, {"alice", "\u00a0alice"}, {"alice", "ａｌｉｃｅ"}, {"ALICE", "alice"},
		{" ", "  "}, {"alice", ""}, {"alice", "bob\x00"}, {"alice", "bob\u202e"}, {strings.Repeat("a", 257), "bob"},
		// invisible code points make no second name, nor a name at all
		{"alice", "al\u200bice"}, {"alice", "al\u00adice"}, {"alice", "alice\ufe0f"}, {"alice", "\u200b"}, {"alice", "\u2800"},
		{"Ꮳ", "ꮳ"}, {"alice smith", "alice  smith"},
		// a name is one line
		{"alice", "bob\u2028carol"}, {"alice", "bob\ncarol"},
	} {
		if _, err := e.policies.Activate(ctx, e.org, "v1", by[0], by[1], false); !errors.Is(err, decision.ErrFourEyes) {
			t.Errorf("activated by %q, approved by %q: %v, want ErrFourEyes", by[0], by[1], err)
		}
	}
	for _, uploader := range []string{"", " ", "\xff", "usr\u202e", "usr\u2029x", "\u200b\u2060", "usr\u200e"} {
		if _, err := e.policies.Upload(ctx, e.org, exampleBundle(t, "v2", false), uploader); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("uploaded by %q: %v, want ErrInvalid", uploader, err)
		}
	}
	if kinds, _ := e.policyEntries(t); len(kinds) != 1 {
		t.Fatalf("ledger %v, want the upload alone", kinds)
	}
	if _, err := e.policies.Activate(ctx, e.org, "v1", "alice", "bob", false); err != nil {
		t.Fatalf("two people: %v", err)
	}
}

// A key is registered for one signature algorithm, kept with it: an RSA
// key registered for PS256 takes bundles OPA signed with PS256, and one
// registered without an algorithm (RS256, OPA's default) refuses them.
func TestPolicyVerificationKeyKeepsItsAlgorithm(t *testing.T) {
	ctx := context.Background()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	privDER, _ := x509.MarshalPKCS8PrivateKey(priv)
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	signed := signedBundle(t, exampleBundle(t, "v1", false), privPEM, "PS256", bundles.DefaultKeyID)
	for _, tc := range []struct {
		alg, stored string
		accepted    bool
	}{{"PS256", "PS256", true}, {"", "RS256", false}} {
		t.Run(tc.stored, func(t *testing.T) {
			e := newPolicyEnv(t, "sqlite")
			if err := e.policies.AddVerificationKey(ctx, e.org, bundles.DefaultKeyID, tc.alg, pubPEM, "usr_admin"); err != nil {
				t.Fatal(err)
			}
			_, err := e.policies.Upload(ctx, e.org, signed, "usr_author")
			if (err == nil) != tc.accepted {
				t.Fatalf("upload of a PS256 bundle under a key registered for %q: %v", tc.stored, err)
			}
			if err := e.backend.InTenantReadTx(ctx, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
				ks, err := tx.Policies().VerificationKeys(ctx)
				if err == nil && (len(ks) != 1 || ks[0].Algorithm != tc.stored) {
					t.Errorf("stored keys %+v, want one for %s", ks, tc.stored)
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
