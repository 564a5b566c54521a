package decision_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// receiptKeyEntry is a receipt key change's ledger record.
type receiptKeyEntry struct {
	Event     string          `json:"event"`
	KID       string          `json:"kid"`
	PublicJWK json.RawMessage `json:"public_jwk"`
	Retired   []string        `json:"retired_kids"`
}

// receiptKeyEntries reads every receipt key change in the organization's
// log, in order.
func (e *serviceEnv) receiptKeyEntries(t *testing.T) []receiptKeyEntry {
	t.Helper()
	var out []receiptKeyEntry
	for i := range e.ledgerSize(t) {
		got, rec := e.entryAt(t, i)
		if got.Kind != decision.KindReceiptKeyCreated && got.Kind != decision.KindReceiptKeyRotated {
			continue
		}
		var r receiptKeyEntry
		if err := json.Unmarshal(rec, &r); err != nil {
			t.Fatal(err)
		}
		if got.Subject != r.KID || (got.Kind == decision.KindReceiptKeyCreated) != (r.Event == "receipt_key_created") {
			t.Fatalf("entry %d: %s of %s records %+v", i, got.Kind, got.Subject, r)
		}
		out = append(out, r)
	}
	return out
}

// jwksKeys is the organization's published receipt keys, by kid.
func (e *serviceEnv) jwksKeys(t *testing.T) map[string]json.RawMessage {
	t.Helper()
	kr, err := signing.NewKeyring(e.master)
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
		raw, err = kr.JWKS(ctx, tx.Keys(), e.org.ID, store.PurposeReceipt)
		return err
	})
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	out := map[string]json.RawMessage{}
	for _, k := range set.Keys {
		var kid struct {
			KID string `json:"kid"`
		}
		if err := json.Unmarshal(k, &kid); err != nil {
			t.Fatal(err)
		}
		out[kid.KID] = k
	}
	return out
}

// Every receipt key an organization gets is in its log, with its public
// key as the JWKS publishes it, before anything is signed with it: the
// first, made by the organization's first decision, and each rotation's,
// naming the keys it retired. An auditor holding the log knows every kid
// the JWKS may show.
func TestReceiptKeysAreLogged(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e, agent, payee := payingEnv(t, kind)
			ctx := context.Background()
			if got := e.receiptKeyEntries(t); len(got) != 0 {
				t.Fatalf("receipt keys logged before any decision: %+v", got)
			}
			first := e.decide(t, agent.ID, payment("100.00", payee.ID), "")
			firstKID := receiptKID(t, first.Receipt)
			logged := e.receiptKeyEntries(t)
			if len(logged) != 1 || logged[0].Event != "receipt_key_created" || logged[0].KID != firstKID || len(logged[0].Retired) != 0 {
				t.Fatalf("after the first receipt (kid %s) the log holds %+v", firstKID, logged)
			}
			firstEntry, _ := e.entryAt(t, first.Ledger.Index)
			if keyIndex := e.indexOf(t, decision.KindReceiptKeyCreated); keyIndex >= first.Ledger.Index {
				t.Fatalf("the key's entry is at %d, after the decision signed with it (%d, %s)", keyIndex, first.Ledger.Index, firstEntry.Kind)
			}
			// A second decision uses the key: nothing more is logged.
			e.decide(t, agent.ID, payment("100.00", payee.ID), "")
			if got := e.receiptKeyEntries(t); len(got) != 1 {
				t.Fatalf("a second decision logged a key again: %+v", got)
			}

			kid, retired, err := e.receiptKeys(t, e.ledger, mustKeyring(t, e)).Rotate(ctx, e.org)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(retired, []string{firstKID}) || kid == firstKID {
				t.Fatalf("rotation: new %s, retired %v; the active key was %s", kid, retired, firstKID)
			}
			logged = e.receiptKeyEntries(t)
			if len(logged) != 2 || logged[1].Event != "receipt_key_rotated" || logged[1].KID != kid || !slices.Equal(logged[1].Retired, []string{firstKID}) {
				t.Fatalf("after the rotation the log holds %+v", logged)
			}
			// Every published key is one the log introduced, exactly as
			// published.
			published := e.jwksKeys(t)
			if len(published) != 2 {
				t.Fatalf("JWKS holds %d keys, want the retired and the new one", len(published))
			}
			for _, l := range logged {
				var a, b map[string]any
				if err := json.Unmarshal(l.PublicJWK, &a); err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(published[l.KID], &b); err != nil {
					t.Fatalf("logged key %s is not in the JWKS: %v", l.KID, err)
				}
				if len(a) != 6 || !reflect.DeepEqual(a, b) {
					t.Errorf("key %s: logged %s, published %s", l.KID, l.PublicJWK, published[l.KID])
				}
			}
			// A service started after the rotation signs with the new key.
			_, _, restarted := e.newService(t, e.ledger, decision.Config{})
			resp, err := restarted.Decide(ctx, e.org, agent.ID, payment("100.00", payee.ID), "")
			if err != nil {
				t.Fatal(err)
			}
			if got := receiptKID(t, resp.Receipt); got != kid {
				t.Fatalf("after the rotation a fresh service signs with %s, want %s", got, kid)
			}
		})
	}
}

// A rotation that meets a change of the keys since it read them (another
// rotation, through the ledger, between its read and its batch) is
// refused and logs nothing; so is one under a master key that does not
// open the organization's keys, and an install over keys other than the
// ones it names.
func TestReceiptKeyRotationRefusals(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e, agent, payee := payingEnv(t, kind)
			ctx := context.Background()
			e.decide(t, agent.ID, payment("100.00", payee.ID), "")
			kr := mustKeyring(t, e)
			rk := e.receiptKeys(t, e.ledger, kr)
			other := e.receiptKeys(t, e.newLedger(t), mustKeyring(t, e)) // another process
			var won string
			rk.SetBeforeChange(func() {
				var err error
				if won, _, err = other.Rotate(ctx, e.org); err != nil {
					t.Error(err)
				}
			})
			size := e.ledgerSize(t)
			if _, _, err := rk.Rotate(ctx, e.org); !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "run it again") {
				t.Fatalf("a rotation overtaken by another: %v, want ErrConflict", err)
			}
			rk.SetBeforeChange(nil)
			if got := e.ledgerSize(t); got != size+1 {
				t.Fatalf("the log grew by %d, want the winning rotation's entry only", got-size)
			}
			logged := e.receiptKeyEntries(t)
			if len(logged) != 2 || logged[1].KID != won {
				t.Fatalf("receipt key entries %+v, want the first and %s's", logged, won)
			}
			if keys := e.jwksKeys(t); len(keys) != 2 {
				t.Fatalf("the refused rotation left %d keys published, want 2", len(keys))
			}

			// Installed directly over a list of keys that is not the active one.
			stale, err := kr.NewReceiptKey(e.org.ID)
			if err != nil {
				t.Fatal(err)
			}
			err = e.backend.InTenantTx(ctx, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
				return kr.InstallReceiptKey(ctx, tx.Keys(), stale, nil)
			})
			if !errors.Is(err, store.ErrConflict) {
				t.Fatalf("installing over keys that changed: %v, want ErrConflict", err)
			}

			wrongKR, err := signing.NewKeyring(mustOtherMaster(t))
			if err != nil {
				t.Fatal(err)
			}
			wrong := e.receiptKeys(t, e.ledger, wrongKR)
			if _, _, err := wrong.Rotate(ctx, e.org); !errors.Is(err, signing.ErrWrongMasterKey) {
				t.Fatalf("rotation under another master key: %v, want ErrWrongMasterKey", err)
			}
			if got := e.ledgerSize(t); got != size+1 {
				t.Fatalf("refused changes grew the log by %d", got-size-1)
			}
			if keys := e.jwksKeys(t); len(keys) != 2 {
				t.Fatalf("refused changes left %d keys published, want 2", len(keys))
			}
		})
	}
}

// An organization's first decisions, racing in two processes (each its own
// ledger writer and key ring over one store), give it one receipt key,
// logged once, and every receipt is signed with it: the requests that lost
// the race take the winner's key.
func TestFirstReceiptKeyRace(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e, agent, payee := payingEnv(t, kind)
			_, _, second := e.newService(t, e.newLedger(t), decision.Config{})
			services := []*decision.Service{e.service, second}
			const n = 8
			receipts := make([]string, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					resp, err := services[i%2].Decide(context.Background(), e.org, agent.ID, payment("10.00", payee.ID), "")
					if err != nil {
						t.Error(err)
						return
					}
					receipts[i] = resp.Receipt
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			kids := make([]string, n)
			for i, r := range receipts {
				kids[i] = receiptKID(t, r)
			}
			logged := e.receiptKeyEntries(t)
			if len(logged) != 1 {
				t.Fatalf("%d receipt key entries, want 1: %+v", len(logged), logged)
			}
			for i, kid := range kids {
				if kid != logged[0].KID {
					t.Errorf("receipt %d signed with %q, want the logged key %s", i, kid, logged[0].KID)
				}
			}
			if keys := e.jwksKeys(t); len(keys) != 1 {
				t.Fatalf("%d receipt keys stored, want 1", len(keys))
			}
		})
	}
}

// receiptKID is the kid in a compact JWS's protected header.
func receiptKID(t *testing.T, jws string) string {
	t.Helper()
	h64, _, _ := strings.Cut(jws, ".")
	raw, err := base64.RawURLEncoding.DecodeString(h64)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		KID string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &h); err != nil || h.KID == "" {
		t.Fatalf("receipt header %s: %v", raw, err)
	}
	return h.KID
}

// indexOf is the index of the log's first entry of kind.
func (e *serviceEnv) indexOf(t *testing.T, kind string) uint64 {
	t.Helper()
	for i := range e.ledgerSize(t) {
		if got, _ := e.entryAt(t, i); got.Kind == kind {
			return i
		}
	}
	t.Fatalf("no %s entry", kind)
	return 0
}

// receiptKeys is the env's organizations' receipt keys, logged in l,
// made with kr.
func (e *serviceEnv) receiptKeys(t *testing.T, l *ledger.Ledger, kr *signing.Keyring) *decision.ReceiptKeys {
	t.Helper()
	rk, err := decision.NewReceiptKeys(e.backend, l, kr)
	if err != nil {
		t.Fatal(err)
	}
	return rk
}

func mustKeyring(t *testing.T, e *serviceEnv) *signing.Keyring {
	t.Helper()
	kr, err := signing.NewKeyring(e.master)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func mustOtherMaster(t *testing.T) *secrets.MasterKey {
	t.Helper()
	m, err := secrets.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// ParseReceiptKeyRecord, and so ReceiptKeyLog and audit verify, refuse a
// receipt key entry that does not name its own Ed25519 key as the JWKS
// publishes it; ReceiptKeyLog also one that introduces a kid again or
// retires a key no entry before it introduced, and ignores other kinds.
func TestReceiptKeyLogEntries(t *testing.T) {
	nk, err := mustKeyringOf(t).NewReceiptKey("00000000-0000-4000-8000-000000000001")
	if err != nil {
		t.Fatal(err)
	}
	kid := nk.KID()
	var good map[string]string
	if err := json.Unmarshal(nk.PublicJWK(), &good); err != nil {
		t.Fatal(err)
	}
	jwk := func(change func(m map[string]string)) string {
		m := maps.Clone(good)
		if change != nil {
			change(m)
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	rec := func(kid, key, retired string) []byte {
		return []byte(`{"event":"receipt_key_rotated","kid":"` + kid + `","public_jwk":` + key + `,"retired_kids":[` + retired + `]}`)
	}
	// Another key's public half, 32 bytes: the kid is not its thumbprint.
	otherX := base64.RawURLEncoding.EncodeToString(make([]byte, 32))
	for _, tc := range []struct {
		name, kind, subject string
		record              []byte
		want                string
	}{
		{"subject is not the kid", decision.KindReceiptKeyCreated, "k2", rec(kid, jwk(nil), ""), "does not name its Ed25519 key"},
		{"the key's kid differs", decision.KindReceiptKeyCreated, kid, rec(kid, jwk(func(m map[string]string) { m["kid"] = "k9" }), ""), "does not name its Ed25519 key"},
		{"not an OKP key", decision.KindReceiptKeyCreated, kid, rec(kid, jwk(func(m map[string]string) { m["kty"] = "EC" }), ""), "does not name its Ed25519 key"},
		{"not Ed25519", decision.KindReceiptKeyCreated, kid, rec(kid, jwk(func(m map[string]string) { m["crv"] = "X25519" }), ""), "does not name its Ed25519 key"},
		{"not for EdDSA", decision.KindReceiptKeyCreated, kid, rec(kid, jwk(func(m map[string]string) { m["alg"] = "ES256" }), ""), "does not name its Ed25519 key"},
		{"not for signing", decision.KindReceiptKeyCreated, kid, rec(kid, jwk(func(m map[string]string) { m["use"] = "enc" }), ""), "does not name its Ed25519 key"},
		{"no public key", decision.KindReceiptKeyRotated, kid, rec(kid, jwk(func(m map[string]string) { m["x"] = "" }), ""), "does not name its Ed25519 key"},
		{"a short public key", decision.KindReceiptKeyRotated, kid, rec(kid, jwk(func(m map[string]string) { m["x"] = "AAAA" }), ""), "does not name its Ed25519 key"},
		{"padded base64", decision.KindReceiptKeyRotated, kid, rec(kid, jwk(func(m map[string]string) { m["x"] += "=" }), ""), "does not name its Ed25519 key"},
		{"a member named in another case", decision.KindReceiptKeyRotated, kid, bytes.Replace(rec(kid, jwk(nil), ""), []byte(`"kid":"`+kid+`","public_jwk"`), []byte(`"KID":"`+kid+`","public_jwk"`), 1), "does not name its Ed25519 key"},
		{"another key under the kid", decision.KindReceiptKeyRotated, kid, rec(kid, jwk(func(m map[string]string) { m["x"] = otherX }), ""), "the kid is not its key's thumbprint"},
		{"not JSON", decision.KindReceiptKeyRotated, kid, []byte(`{"kid":`), "does not name its Ed25519 key"},
		{"retires an unknown key", decision.KindReceiptKeyRotated, kid, rec(kid, jwk(nil), `"k0"`), "retires receipt key k0, which no entry before it introduced"},
		{"another kind", "decision", "dec_1", []byte(`{"anything":1}`), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := decision.NewReceiptKeyLog().Entry(verify.Entry{Index: 7, Kind: tc.kind, Subject: tc.subject}, tc.record)
			if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Entry: %v, want %q", err, tc.want)
			}
		})
	}
	l := decision.NewReceiptKeyLog()
	if err := l.Entry(verify.Entry{Index: 3, Kind: decision.KindReceiptKeyCreated, Subject: kid}, rec(kid, string(nk.PublicJWK()), "")); err != nil {
		t.Fatalf("a well-formed first key: %v", err)
	}
	if err := l.Entry(verify.Entry{Index: 8, Kind: decision.KindReceiptKeyRotated, Subject: kid}, rec(kid, string(nk.PublicJWK()), `"`+kid+`"`)); err == nil || err.Error() != "receipt key "+kid+" introduced again (first by entry 3)" {
		t.Fatalf("a kid introduced again: %v", err)
	}
}

func mustKeyringOf(t *testing.T) *signing.Keyring {
	t.Helper()
	kr, err := signing.NewKeyring(mustOtherMaster(t))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// An organization without a receipt key that is rotated gets its first,
// logged as created; a key made by another Keyring (another master key)
// is not installed.
func TestReceiptKeyRotateFirstAndForeignKeys(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e := newServiceEnv(t, kind)
			ctx := context.Background()
			kid, retired, err := e.receiptKeys(t, e.ledger, mustKeyring(t, e)).Rotate(ctx, e.org)
			if err != nil {
				t.Fatal(err)
			}
			logged := e.receiptKeyEntries(t)
			if len(retired) != 0 || len(logged) != 1 || logged[0].Event != "receipt_key_created" || logged[0].KID != kid {
				t.Fatalf("the first rotation retired %v and logged %+v", retired, logged)
			}
			foreign, err := mustKeyringOf(t).NewReceiptKey(e.org.ID)
			if err != nil {
				t.Fatal(err)
			}
			err = e.backend.InTenantTx(ctx, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
				return mustKeyring(t, e).InstallReceiptKey(ctx, tx.Keys(), foreign, []string{kid})
			})
			if err == nil || !strings.Contains(err.Error(), "needs a key this Keyring made") {
				t.Fatalf("installing another Keyring's key: %v", err)
			}
			if keys := e.jwksKeys(t); len(keys) != 1 {
				t.Fatalf("%d keys after the refused install, want 1", len(keys))
			}
		})
	}
}
