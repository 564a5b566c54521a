package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/osfile"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// runAudit: `agentsigna audit verify EXPORT --log-key KEY [--jwks JWKS]`
// checks a ledger export offline: the checkpoint against the pinned key,
// every leaf, the hash chain, the root, and every receipt against the
// pinned JWKS or, without one, the export's own.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer, _ env) error {
	if len(args) == 0 || args[0] != "verify" {
		return fmt.Errorf("%w: agentsigna audit verify EXPORT --log-key KEY [--jwks JWKS]", errUsage)
	}
	// As verify's: its trust comes from its command line alone, and help
	// verifies nothing (see runVerify).
	return nothingVerified(runAuditVerify(ctx, args[1:], stdout, stderr))
}

func runAuditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("audit verify", stderr)
	logKey := fs.String("log-key", "", "the log's note verifier key, or a file holding it (pin it: the export's own copy proves nothing)")
	jwksFile := fs.String("jwks", "", "the organization's published JWKS (/t/<slug>/.well-known/jwks.json), a file: receipts are checked against it rather than the export's own copy, which the log does not sign")
	operands, err := parseOne(fs, args, noEnv, "EXPORT file")
	if err != nil {
		return err
	}
	key, err := readLogKey(*logKey)
	if err != nil {
		return err
	}
	receipts := newReceiptChecker()
	check, against := receipts.check, "the export's own JWKS (pin the published one with --jwks)"
	if *jwksFile != "" {
		pinned, err := osfile.ReadAtMost(*jwksFile, maxLargeFile)
		if err != nil {
			return err
		}
		check = func(e verify.Entry, record, _ []byte) error { return receipts.check(e, record, pinned) }
		against = "the pinned JWKS"
	}
	f, err := os.Open(operands)
	if err != nil {
		return err
	}
	defer f.Close()
	rep, err := verify.VerifyExport(f, key, verify.ExportOptions{CheckRecord: check})
	if err != nil {
		return err
	}
	if rep.Kinds["receipt"] > 0 {
		fmt.Fprintf(stderr, "note: receipts were checked against %s, and against the keys the log introduced\n", against)
	}
	if !rep.FirstLinkChecked && rep.From > 0 && rep.From < rep.To {
		fmt.Fprintf(stderr, "note: the chain link from entry %d into entry %d was not checked: an export from an even index holds no leaf hash of the entry before it (the signed root still binds entry %d; export from %d or from 0 to check the link)\n",
			rep.From-1, rep.From, rep.From, rep.From-1)
	}
	if receipts.beforeExport > 0 {
		fmt.Fprintf(stderr, "note: %d receipts are signed with keys this export does not introduce (it starts at entry %d): those were checked against the JWKS only\n", receipts.beforeExport, rep.From)
	}
	kinds := make([]string, 0, len(rep.Kinds))
	for k, n := range rep.Kinds {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(kinds)
	fmt.Fprintf(stdout, "OK: entries %d..%d of %s verify against its checkpoint (root %s); %s\n",
		rep.From, rep.To, rep.Checkpoint.Origin(), b64(rep.Checkpoint.Hash()), strings.Join(kinds, " "))
	return nil
}

// receiptChecker verifies receipt entries: the record is the compact JWS,
// checked against a JWKS as of the time it was logged. The JWKS is read
// once, not for every receipt, while it stays the same. The key that
// verifies a receipt must also be the one the log itself introduced under
// its kid (decision.KindReceiptKeyCreated or …Rotated, earlier in the
// log): a key the JWKS publishes that the log never recorded signs nothing
// an audit accepts. An export that starts after entry 0 may lack the entry
// that introduced a key; such receipts are counted (beforeExport), not
// failed.
type receiptChecker struct {
	jwks     []byte
	verifier *signing.ReceiptVerifier
	err      error

	first  int64                        // the first entry's index; -1 before any
	logged map[string]ed25519.PublicKey // kid → its key as the log introduced it
	// unintroduced: kid → the first receipt of an export starting after
	// entry 0 signed with a key the export had not introduced: one it
	// introduces later was not introduced before that receipt.
	unintroduced map[string]uint64
	beforeExport int
}

func newReceiptChecker() *receiptChecker {
	return &receiptChecker{first: -1, logged: map[string]ed25519.PublicKey{}, unintroduced: map[string]uint64{}}
}

func (r *receiptChecker) check(e verify.Entry, record, jwks []byte) error {
	if r.first < 0 {
		r.first = int64(e.Index)
	}
	switch e.Kind {
	case decision.KindReceiptKeyCreated, decision.KindReceiptKeyRotated:
		return r.introduce(e, record)
	case "receipt":
	default:
		return nil
	}
	if r.jwks == nil || !bytes.Equal(r.jwks, jwks) {
		r.jwks = bytes.Clone(jwks)
		r.verifier, r.err = signing.NewReceiptVerifier(jwks)
	}
	if r.err != nil {
		return r.err
	}
	claims, err := r.verifier.Verify(string(record), e.Time)
	if err != nil {
		return err
	}
	if claims.ID != e.Subject && claims.DecisionID != e.Subject {
		return errors.New("receipt does not name the entry's subject")
	}
	kid, err := signing.ReceiptKID(string(record))
	if err != nil {
		return err
	}
	logged, ok := r.logged[kid]
	switch {
	case !ok && r.first == 0:
		return fmt.Errorf("receipt signed with key %q, which no receipt key entry before it introduced", kid)
	case !ok:
		r.beforeExport++
		if _, seen := r.unintroduced[kid]; !seen {
			r.unintroduced[kid] = e.Index
		}
		return nil
	}
	if published, err := r.verifier.PublicKey(kid); err != nil || !bytes.Equal(published, logged) {
		return fmt.Errorf("receipt is signed with another key than the log introduced as %q", kid)
	}
	return nil
}

// introduce reads a receipt key entry: the key it names.
func (r *receiptChecker) introduce(e verify.Entry, record []byte) error {
	rec, pub, err := decision.ParseReceiptKeyRecord(e.Subject, record)
	if err != nil {
		return err
	}
	if at, signed := r.unintroduced[rec.KID]; signed {
		return fmt.Errorf("receipt key %q is introduced after the receipt of entry %d it signed", rec.KID, at)
	}
	if _, dup := r.logged[rec.KID]; dup {
		return fmt.Errorf("receipt key %q introduced twice", rec.KID)
	}
	r.logged[rec.KID] = pub
	return nil
}
