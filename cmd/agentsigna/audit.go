package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/agentsigna/agentsigna/internal/osfile"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// runAudit: `agentsigna audit verify EXPORT --log-key KEY [--jwks JWKS]`
// checks a ledger export offline: the checkpoint against the pinned key,
// every leaf, the hash chain, the root, and every receipt against the
// pinned JWKS or, without one, the export's own.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	if len(args) == 0 || args[0] != "verify" {
		return fmt.Errorf("%w: agentsigna audit verify EXPORT --log-key KEY [--jwks JWKS]", errUsage)
	}
	fs := newFlagSet("audit verify", stderr)
	logKey := fs.String("log-key", "", "the log's note verifier key, or a file holding it (pin it: the export's own copy proves nothing)")
	jwksFile := fs.String("jwks", "", "the organization's published JWKS (/t/<slug>/.well-known/jwks.json), a file: receipts are checked against it rather than the export's own copy, which the log does not sign")
	operands, err := parseOne(fs, args[1:], env, "EXPORT file")
	if err != nil {
		return err
	}
	key, err := readLogKey(*logKey)
	if err != nil {
		return err
	}
	receipts := &receiptChecker{}
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
	if rep.LogKey != key {
		fmt.Fprintln(stderr, "note: the log key shipped in the export differs from the pinned one; the pinned key was used")
	}
	if rep.Kinds["receipt"] > 0 {
		fmt.Fprintf(stderr, "note: receipts were checked against %s\n", against)
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
// once, not for every receipt, while it stays the same.
type receiptChecker struct {
	jwks     []byte
	verifier *signing.ReceiptVerifier
	err      error
}

func (r *receiptChecker) check(e verify.Entry, record, jwks []byte) error {
	if e.Kind != "receipt" {
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
	return nil
}
