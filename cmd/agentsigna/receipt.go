package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/osfile"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// compactJWS is the shape of a compact JWS: three base64url parts, the
// first a JSON object's ({" is eyJ), so that a file name such as
// receipt.2026.jws is not taken for one.
var compactJWS = regexp.MustCompile(`^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$`)

// runVerifyReceipt: `agentsigna verify receipt RECEIPT --jwks JWKS
// [--tlog-proof P --log-key K [--entry LEAF]] [--at RFC3339]`. RECEIPT is
// the compact JWS or a file holding it. It checks the signature, kid, typ,
// expiry (at --at, default now) and action_sha256; with a tlog-proof, that
// the receipt's SHA-256 is the record digest of an entry included in the
// log.
//
// The entry's exact leaf bytes come from --entry or, without it, from the
// proof's extra line, where GET /v1/decisions/{id}/tlog-proof?entry=receipt
// puts them. Either way they are unauthenticated until checked: they must
// parse as a receipt entry for this receipt, at the proof's index, and
// hash to a leaf the proof includes under a checkpoint signed by --log-key.
// Given both, --entry must equal the extra line: a proof that carries one
// entry while the caller vouches for another is refused, not resolved.
func runVerifyReceipt(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify receipt", stderr)
	jwksFile := fs.String("jwks", "", "the organization's JWKS (/t/<slug>/.well-known/jwks.json), a file")
	proofFile := fs.String("tlog-proof", "", "a c2sp.org/tlog-proof@v1 file for the receipt's ledger entry (GET /v1/decisions/{id}/tlog-proof?entry=receipt)")
	entryFile := fs.String("entry", "", "the receipt's ledger entry (exact leaf bytes), a file; with --tlog-proof, needed only if the proof has no extra line carrying it")
	logKey := fs.String("log-key", "", "the log's note verifier key (or a file), needed with --tlog-proof")
	at := fs.String("at", "", "check expiry at this RFC 3339 time instead of now")
	operand, err := parseOne(fs, args, noEnv, "RECEIPT")
	if err != nil {
		return err
	}
	if *jwksFile == "" {
		return fmt.Errorf("%w: --jwks is required", errUsage)
	}
	// Ignored, they would let an OK read as a check of the log.
	if *proofFile == "" && (*logKey != "" || *entryFile != "") {
		return fmt.Errorf("%w: --log-key and --entry check the receipt's ledger entry, which needs --tlog-proof", errUsage)
	}
	// A compact JWS is taken as it is, never for the name of a file: what
	// is checked is the receipt given, whatever files the host holds.
	compact := operand
	if !compactJWS.MatchString(operand) {
		b, err := osfile.ReadAtMost(operand, maxLargeFile)
		if err != nil {
			return fmt.Errorf("%w: RECEIPT is neither a compact JWS nor a file that can be read: %v", errUsage, err)
		}
		compact = strings.TrimSpace(string(b))
	}
	jwks, err := osfile.ReadAtMost(*jwksFile, maxLargeFile)
	if err != nil {
		return err
	}
	now := time.Now()
	if *at != "" {
		if now, err = time.Parse(time.RFC3339, *at); err != nil {
			return fmt.Errorf("%w: --at must be an RFC 3339 time", errUsage)
		}
	}
	claims, err := signing.VerifyReceipt(compact, jwks, now)
	if err != nil {
		return err
	}
	suffix := ""
	if *proofFile != "" {
		if *logKey == "" {
			return fmt.Errorf("%w: --tlog-proof needs --log-key", errUsage)
		}
		key, err := readLogKey(*logKey)
		if err != nil {
			return err
		}
		raw, err := osfile.ReadAtMost(*proofFile, verify.MaxProofSize)
		if err != nil {
			return err
		}
		// The extra line and index are not trusted until p.Verify below.
		p, err := verify.ParseProof(raw)
		if err != nil {
			return err
		}
		leaf := p.Extra
		if *entryFile != "" {
			given, err := osfile.ReadAtMost(*entryFile, maxSmallFile)
			if err != nil {
				return err
			}
			if leaf != nil && !bytes.Equal(given, leaf) {
				return errors.New("--entry differs from the entry the proof carries")
			}
			leaf = given
		}
		if leaf == nil {
			return fmt.Errorf("%w: the proof carries no entry (no extra line): give --entry", errUsage)
		}
		entry, err := verify.ParseEntry(leaf)
		if err != nil {
			return err
		}
		digest := sha256.Sum256([]byte(compact))
		switch {
		case entry.Kind != "receipt":
			return fmt.Errorf("the ledger entry is a %q entry, not this receipt's", entry.Kind)
		case !bytes.Equal(entry.Digest, digest[:]):
			return errors.New("the ledger entry is not this receipt's: its digest differs")
		case entry.Index != p.Index:
			return fmt.Errorf("the proof is for entry %d, the entry says %d", p.Index, entry.Index)
		}
		// Its checkpoint signed by key, the leaf included at its index.
		cp, err := p.Verify(key, verify.LeafHash(leaf))
		if err != nil {
			return err
		}
		suffix = fmt.Sprintf("; logged as entry %d of %s (size %d)", p.Index, cp.Origin(), cp.Size())
	}
	if *at != "" {
		suffix += "; checked at " + now.UTC().Format(time.RFC3339) + ", not now"
	}
	fmt.Fprintf(stdout, "OK: receipt %s for decision %s (%s) by agent %s, issued by %s, valid until %s%s\n",
		shown(claims.ID), shown(claims.DecisionID), claims.Outcome, shown(claims.Subject), shown(claims.Issuer),
		claims.Expiry.UTC().Format(time.RFC3339), suffix)
	return nil
}

// shown is a signed claim as printed after OK: as it is when it is
// printable ASCII without spaces, as the service's ids and URLs are, else
// quoted, so that no claim can print terminal escapes, a line of its own
// or text that reads backwards.
func shown(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' || s[i] == '"' {
			return strconv.Quote(s)
		}
	}
	if s == "" {
		return `""`
	}
	return s
}

// runKeys: `agentsigna keys rotate --tenant SLUG --purpose receipt`. The
// old key is retired, not deleted: it stays in the JWKS, so receipts it
// signed keep verifying.
func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	const keysUsage = "agentsigna keys rotate --tenant SLUG --purpose receipt"
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprintln(stderr, "usage: "+keysUsage)
		return flag.ErrHelp
	}
	if len(args) == 0 || args[0] != "rotate" {
		return fmt.Errorf("%w: %s", errUsage, keysUsage)
	}
	fs := newFlagSet("keys rotate", stderr)
	var tf tenantFlags
	var lf ledgerFlags
	tf.register(fs)
	lf.register(fs)
	purpose := fs.String("purpose", "receipt", "which key: receipt (log keys never rotate: a new key would be a new log)")
	if err := parse(fs, args[1:], env); err != nil {
		return err
	}
	if *purpose != string(store.PurposeReceipt) {
		return fmt.Errorf("%w: only receipt keys rotate", errUsage)
	}
	log := cliLogger(stderr)
	backend, ref, err := tf.open(ctx, env, log)
	if err != nil {
		return err
	}
	defer backend.Close()
	l, kr, err := openLedgerAndKeys(ctx, &tf.sf, &lf, backend, env, log)
	if err != nil {
		return err
	}
	defer l.Close()
	rk, err := decision.NewReceiptKeys(backend, l, kr)
	if err != nil {
		return err
	}
	// The new key and the ledger entry naming it commit together.
	kid, retired, err := rk.Rotate(ctx, decision.Organization{ID: ref.ID, Slug: ref.Slug})
	if err != nil {
		return err
	}
	if len(retired) == 0 {
		fmt.Fprintf(stdout, "%s: first receipt key %s; a running server signs with it within a minute\n", ref.Slug, kid)
		return nil
	}
	fmt.Fprintf(stdout, "%s: new receipt key %s; retired %s (still published for verification); a running server signs with the new key within a minute\n",
		ref.Slug, kid, strings.Join(retired, ", "))
	return nil
}
