package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// loggedReceipts is an organization's data dir holding receipts logged as
// the service logs them: each decision's entry, then its receipt's, in one
// append.
type loggedReceipts struct {
	dir      string // with the master key the CLI loads
	tenantID string
	jwks     []byte
	vkey     string
	receipts []string // compact JWS, for decisions dec_1, dec_2, …
	// entries holds each decision's [decision, receipt] entries, with
	// their proofs against the log's newest checkpoint.
	entries [][2]ledger.EntryInclusionProof
}

func logReceipts(t *testing.T, n int) loggedReceipts {
	t.Helper()
	ctx := context.Background()
	out := loggedReceipts{dir: t.TempDir()}
	s, err := sqlite.Open(ctx, sqlite.Config{DataDir: out.dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	acme := storetest.CreateTenant(t, s, "acme")
	out.tenantID = acme.ID
	master, _, err := secrets.LoadMasterKey(secrets.LoadOptions{DataDir: out.dir})
	if err != nil {
		t.Fatal(err)
	}
	kr, _ := signing.NewKeyring(master)
	l, _ := ledger.New(ledger.Config{Tenants: s, Platform: s, Keys: kr, Origin: "agentsigna.test"})
	defer l.Close()
	lg := l.TenantLog(acme.ID, "acme")
	// The receipt key as the service makes it: logged (entry 0).
	rk, err := decision.NewReceiptKeys(s, l, kr)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rk.Signer(ctx, decision.Organization{ID: acme.ID, Slug: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	var indexes [][2]uint64
	for i := range n {
		id := fmt.Sprintf("dec_%d", i+1)
		jws, err := rs.Sign(signing.ReceiptClaims{Issuer: "http://127.0.0.1:8080/t/acme", Subject: "agt_x", ID: "rct_" + id, DecisionID: id,
			Outcome: signing.OutcomeAllow, Action: json.RawMessage(`{"type":"report.generate"}`), Agent: signing.ReceiptAgent{ID: "agt_x", Sponsor: "s", RiskTier: "low"}})
		if err != nil {
			t.Fatal(err)
		}
		a, err := l.AppendAll(ctx, lg, []ledger.Entry{
			{Kind: "decision", Subject: id, Record: []byte(`{"decision_id":"` + id + `"}`)},
			{Kind: "receipt", Subject: id, Record: []byte(jws)},
		})
		if err != nil {
			t.Fatal(err)
		}
		out.receipts = append(out.receipts, jws)
		indexes = append(indexes, [2]uint64{a[0].Index, a[1].Index})
	}
	for _, pair := range indexes {
		var proofs [2]ledger.EntryInclusionProof
		for i, index := range pair {
			if proofs[i], err = l.EntryInclusionProof(ctx, lg, index, 0); err != nil {
				t.Fatal(err)
			}
		}
		out.entries = append(out.entries, proofs)
	}
	if out.vkey, err = l.VerifierKey(ctx, lg); err != nil {
		t.Fatal(err)
	}
	err = s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		out.jwks, err = kr.JWKS(ctx, tx.Keys(), acme.ID, store.PurposeReceipt)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tlogProof is p as a c2sp.org/tlog-proof@v1 file, carrying extra.
func tlogProof(p ledger.EntryInclusionProof, extra []byte) []byte {
	return verify.Proof{Extra: extra, Index: p.Index, Hashes: p.Hashes, Checkpoint: p.Checkpoint.Note}.Marshal()
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runVerifyReceiptArgs(args ...string) (string, error) {
	var out, errOut bytes.Buffer
	err := runVerify(context.Background(), append([]string{"receipt"}, args...), &out, &errOut, envOf(nil))
	return out.String(), err
}

func TestVerifyReceiptAndRotate(t *testing.T) {
	ctx := context.Background()
	rl := logReceipts(t, 1)
	jws, receipt := rl.receipts[0], rl.entries[0][1]
	jwksFile, entryFile := writeTemp(t, "jwks.json", rl.jwks), writeTemp(t, "entry", receipt.Entry)
	proofFile := writeTemp(t, "p.tlog-proof", tlogProof(receipt, nil))
	run := runVerifyReceiptArgs
	if out, err := run(jws, "--jwks", jwksFile, "--tlog-proof", proofFile, "--entry", entryFile, "--log-key", rl.vkey); err != nil || !strings.Contains(out, "logged as entry 2") {
		t.Fatalf("receipt with proof: %q, %v", out, err)
	}
	// A proof whose checkpoint carries large cosignatures, past 64 KiB.
	cosigned := writeTemp(t, "cosigned.tlog-proof", verify.Proof{Index: receipt.Index, Hashes: receipt.Hashes,
		Checkpoint: withCosignatures(receipt.Checkpoint.Note)}.Marshal())
	if out, err := run(jws, "--jwks", jwksFile, "--tlog-proof", cosigned, "--entry", entryFile, "--log-key", rl.vkey); err != nil || !strings.Contains(out, "logged as entry 2") {
		t.Fatalf("receipt with a cosigned checkpoint's proof: %q, %v", out, err)
	}
	if _, err := run(jws, "--jwks", jwksFile, "--at", time.Now().Add(time.Hour).Format(time.RFC3339)); err == nil {
		t.Fatal("expired receipt accepted")
	}
	// RECEIPT is the JWS or a file holding it; a file that cannot be read
	// is named as such, not parsed as a JWS.
	if out, err := run(writeTemp(t, "receipt.jws", []byte(jws+"\n")), "--jwks", jwksFile); err != nil || !strings.HasPrefix(out, "OK: receipt") {
		t.Fatalf("receipt from a file: %q, %v", out, err)
	}
	for _, missing := range []string{filepath.Join(t.TempDir(), "missing.jws"), "receipt.2026-11.jws"} {
		if _, err := run(missing, "--jwks", jwksFile); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "no such file") {
			t.Fatalf("a receipt file that does not exist, %s: %v", missing, err)
		}
	}
	tampered := jws[:len(jws)-4] + "AAAA"
	if _, err := run(tampered, "--jwks", jwksFile); err == nil {
		t.Fatal("tampered receipt accepted")
	}
	other := writeTemp(t, "other-entry", []byte(strings.Replace(string(receipt.Entry), `"kind":"receipt"`, `"kind":"decision"`, 1)))
	if _, err := run(jws, "--jwks", jwksFile, "--tlog-proof", proofFile, "--entry", other, "--log-key", rl.vkey); err == nil {
		t.Fatal("a proof for another entry accepted")
	}

	// Rotation: a new key, the old one stays published, old receipts verify.
	var header struct {
		KID string `json:"kid"`
	}
	if raw, err := base64.RawURLEncoding.DecodeString(strings.Split(jws, ".")[0]); err != nil || json.Unmarshal(raw, &header) != nil || header.KID == "" {
		t.Fatalf("the receipt's header: %v", err)
	}
	var out, errOut bytes.Buffer
	if err := runKeys(ctx, []string{"rotate", "--tenant", "acme", "--data-dir", rl.dir}, &out, &errOut, envOf(nil)); err != nil || !strings.Contains(out.String(), "new receipt key") ||
		!strings.Contains(out.String(), "; retired "+header.KID+" (still published") {
		t.Fatalf("rotate: %q %q, %v", out.String(), errOut.String(), err)
	}
	s, _ := sqlite.Open(ctx, sqlite.Config{DataDir: rl.dir})
	defer s.Close()
	master, _, err := secrets.LoadMasterKey(secrets.LoadOptions{DataDir: rl.dir})
	if err != nil {
		t.Fatal(err)
	}
	kr, err := signing.NewKeyring(master)
	if err != nil {
		t.Fatal(err)
	}
	var jwks []byte
	_ = s.InTenantTx(ctx, rl.tenantID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		jwks, err = kr.JWKS(ctx, tx.Keys(), rl.tenantID, store.PurposeReceipt)
		return err
	})
	var set struct{ Keys []map[string]any }
	if json.Unmarshal(jwks, &set); len(set.Keys) != 2 {
		t.Fatalf("after rotation the JWKS has %d keys", len(set.Keys))
	}
	if _, err := run(jws, "--jwks", writeTemp(t, "jwks2.json", jwks)); err != nil {
		t.Fatalf("old receipt after rotation: %v", err)
	}
}

// A tlog-proof that carries the receipt's entry in its extra line, as
// GET /v1/decisions/{id}/tlog-proof?entry=receipt serves it, verifies the
// receipt without --entry. The extra line is unauthenticated: an entry
// there that is not this receipt's is refused, whatever its proof.
func TestVerifyReceiptEntryFromProof(t *testing.T) {
	rl := logReceipts(t, 2)
	jws := rl.receipts[0]
	decision, receipt, otherReceipt := rl.entries[0][0], rl.entries[0][1], rl.entries[1][1]
	jwksFile := writeTemp(t, "jwks.json", rl.jwks)
	proofWith := func(p ledger.EntryInclusionProof, extra []byte) string {
		return writeTemp(t, "p.tlog-proof", tlogProof(p, extra))
	}
	carrying := proofWith(receipt, receipt.Entry)
	// This receipt's entry — right kind, digest and index — with another
	// time or prev: it passes every check on the entry itself, so only the
	// inclusion proof can refuse it, its leaf hash not being in the tree.
	mine, err := verify.ParseEntry(receipt.Entry)
	if err != nil {
		t.Fatal(err)
	}
	retimed, rechained, moved := mine, mine, mine
	retimed.Time = mine.Time.Add(time.Second)
	moved.Index = mine.Index + 5
	rechained.Prev = verify.LeafHash(otherReceipt.Entry)
	marshal := func(e verify.Entry) []byte {
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Another log's key under this log's name: only the signature tells
	// the logs apart.
	_, foreignKey, err := note.GenerateKey(rand.Reader, "agentsigna.test/t/acme")
	if err != nil {
		t.Fatal(err)
	}

	if out, err := runVerifyReceiptArgs(jws, "--jwks", jwksFile, "--tlog-proof", carrying, "--log-key", rl.vkey); err != nil || !strings.Contains(out, "logged as entry 2 of agentsigna.test/t/acme") {
		t.Fatalf("proof carrying the entry: %q, %v", out, err)
	}
	// --entry agreeing with the extra line is fine.
	if _, err := runVerifyReceiptArgs(jws, "--jwks", jwksFile, "--tlog-proof", carrying, "--entry", writeTemp(t, "entry", receipt.Entry), "--log-key", rl.vkey); err != nil {
		t.Fatalf("--entry equal to the proof's: %v", err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		usage  bool // a usage error, not a failed check
		want   string
		logKey string // default rl.vkey, this log's; "-": none given
	}{
		{"no extra line, no --entry", []string{"--tlog-proof", proofWith(receipt, nil)}, true, "give --entry", ""},
		{"the decision's entry and proof", []string{"--tlog-proof", proofWith(decision, decision.Entry)}, false, `"decision" entry`, ""},
		{"the decision's entry, the receipt's proof", []string{"--tlog-proof", proofWith(receipt, decision.Entry)}, false, `"decision" entry`, ""},
		{"another receipt's entry and proof", []string{"--tlog-proof", proofWith(otherReceipt, otherReceipt.Entry)}, false, "digest differs", ""},
		{"another receipt's entry, this receipt's proof", []string{"--tlog-proof", proofWith(receipt, otherReceipt.Entry)}, false, "digest differs", ""},
		{"--entry differing from the extra line", []string{"--tlog-proof", carrying, "--entry", writeTemp(t, "other", otherReceipt.Entry)}, false, "differs from the entry the proof carries", ""},
		{"not an entry", []string{"--tlog-proof", proofWith(receipt, []byte("not json"))}, false, "invalid ledger entry", ""},
		{"this receipt's entry with another time", []string{"--tlog-proof", proofWith(receipt, marshal(retimed))}, false, "entry 2 is not in", ""},
		{"this receipt's entry with another prev", []string{"--tlog-proof", proofWith(receipt, marshal(rechained))}, false, "entry 2 is not in", ""},
		{"another log's key", []string{"--tlog-proof", carrying}, false, "no signature by key", foreignKey},
		{"this receipt's entry claiming another index", []string{"--tlog-proof", proofWith(receipt, marshal(moved))}, false, "the proof is for entry 2, the entry says 7", ""},
		{"a proof without a log key to check it", []string{"--tlog-proof", carrying}, true, "--tlog-proof needs --log-key", "-"},
		{"a log key without a proof", nil, true, "needs --tlog-proof", ""},
		{"an entry without a proof", []string{"--entry", writeTemp(t, "entry", receipt.Entry)}, true, "needs --tlog-proof", "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logKey := rl.vkey
			if tc.logKey != "" {
				logKey = tc.logKey
			}
			args := append([]string{jws, "--jwks", jwksFile}, tc.args...)
			if logKey != "-" {
				args = append(args, "--log-key", logKey)
			}
			out, err := runVerifyReceiptArgs(args...)
			if err == nil {
				t.Fatalf("accepted: %q", out)
			}
			if errors.Is(err, errUsage) != tc.usage || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q (usage %v); want one line with %q (usage %v)", err, errors.Is(err, errUsage), tc.want, tc.usage)
			}
		})
	}
}

// verify receipt says OK only for a check made as its command line asks:
// help, or an untrusted "-h" passed as RECEIPT, exits 2; an AGENTSIGNA_AT
// in the environment does not move the time checked; --at is said in
// the OK line; an operand shaped as a JWS is the JWS, not a file's name.
func TestVerifyReceiptTrustsItsCommandLineOnly(t *testing.T) {
	rl := logReceipts(t, 1)
	jws := rl.receipts[0]
	jwksFile := writeTemp(t, "jwks.json", rl.jwks)
	ctx := context.Background()
	for _, args := range [][]string{
		{"verify", "receipt", "-h", "--jwks", jwksFile},
		{"verify", "receipt", "--help"},
		{"verify", "-h"},
		{"audit", "verify", "-h"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(ctx, args, &stdout, &stderr, envOf(nil)); code != 2 || stdout.Len() != 0 || !strings.Contains(stderr.String(), "nothing was verified") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and nothing verified", args, code, stdout.String(), stderr.String())
		}
	}
	later := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	var stdout bytes.Buffer
	err := runVerify(ctx, []string{"receipt", jws, "--jwks", jwksFile}, &stdout, &bytes.Buffer{},
		envOf(map[string]string{"AGENTSIGNA_AT": later, "AGENTSIGNA_LOG_KEY": rl.vkey}))
	if err != nil || !strings.HasPrefix(stdout.String(), "OK: receipt") || strings.Contains(stdout.String(), "checked at") {
		t.Fatalf("with AGENTSIGNA_AT and AGENTSIGNA_LOG_KEY set: %v, %q", err, stdout.String())
	}
	earlier := time.Now().Add(time.Minute).UTC().Format(time.RFC3339)
	if out, err := runVerifyReceiptArgs(jws, "--jwks", jwksFile, "--at", earlier); err != nil || !strings.Contains(out, "; checked at "+earlier+", not now") {
		t.Fatalf("--at: %q, %v", out, err)
	}
	// A file named like a JWS, holding a good receipt, is not read.
	t.Chdir(t.TempDir())
	if err := os.WriteFile("eyJhbGc.e30.c2ln", []byte(jws), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runVerifyReceiptArgs("eyJhbGc.e30.c2ln", "--jwks", jwksFile); err == nil {
		t.Fatalf("an operand shaped as a JWS was read as a file: %q", out)
	}
}

// Signed claims print as they are when they are printable ASCII without
// spaces, as the service's are, and quoted otherwise: no claim prints an
// escape, a line of its own or reversed text after OK.
func TestShownClaims(t *testing.T) {
	for in, want := range map[string]string{
		"rct_23ockdf4scjhmm6ysosmncfmst":  "rct_23ockdf4scjhmm6ysosmncfmst",
		"https://agentsigna.test/t/acme":  "https://agentsigna.test/t/acme",
		"":                                `""`,
		"agt_1\x1b[2K\rOK: receipt rct_9": `"agt_1\x1b[2K\rOK: receipt rct_9"`,
		"agt_\u202e1":                     `"agt_\u202e1"`,
		"a b":                             `"a b"`,
		`a"b`:                             `"a\"b"`,
		"line\nbreak":                     `"line\nbreak"`,
	} {
		if got := shown(in); got != want {
			t.Errorf("shown(%q) = %s, want %s", in, got, want)
		}
	}
}
