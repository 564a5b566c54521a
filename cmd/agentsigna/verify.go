package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/agentsigna/agentsigna/internal/osfile"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

const verifyUsage = `usage:
  agentsigna verify inclusion PROOF --log-key KEY [--entry FILE | --leaf-hash B64]
  agentsigna verify consistency PROOF --log-key KEY --old OLD_CHECKPOINT_FILE
  agentsigna verify receipt RECEIPT --jwks JWKS_FILE [--at RFC3339] [--tlog-proof P --log-key KEY [--entry LEAF]]

PROOF is a c2sp.org/tlog-proof@v1 file or the JSON of GET /v1/ledger/proofs/inclusion
(inclusion), or the JSON of GET /v1/ledger/proofs/consistency (consistency).
KEY is the log's note verifier key (GET /t/<slug>/.well-known/log-key) or a file holding it.
RECEIPT is the compact JWS, or a file holding it; put -- before an operand that may begin
with "-". Every flag comes from the command line (none from AGENTSIGNA_* variables), and
exit status 0 means verified: help exits 2.`

// runVerify checks ledger proofs offline, trusting only the log's public key.
//
// What it trusts comes from its command line alone: no flag is filled from
// the environment (a stray AGENTSIGNA_AT or AGENTSIGNA_LOG_KEY would
// otherwise change what an OK means), and help, which checks nothing,
// exits non-zero (a script passing an untrusted "-h" as RECEIPT must not
// read success).
func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer, _ env) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: verify needs a subcommand: inclusion, consistency or receipt", errUsage)
	}
	var err error
	switch args[0] {
	case "inclusion":
		err = runVerifyInclusion(args[1:], stdout, stderr)
	case "consistency":
		err = runVerifyConsistency(args[1:], stdout, stderr)
	case "receipt":
		err = runVerifyReceipt(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stderr, verifyUsage)
		err = flag.ErrHelp
	default:
		return fmt.Errorf("%w: unknown verify subcommand %q (inclusion, consistency or receipt)", errUsage, args[0])
	}
	return nothingVerified(err)
}

// noEnv is the environment of the offline verifiers: empty.
func noEnv(string) (string, bool) { return "", false }

// nothingVerified turns help into a usage error: a verifier that printed
// its usage verified nothing, and says so with a status that is not 0.
func nothingVerified(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return fmt.Errorf("%w: help printed; nothing was verified", errUsage)
	}
	return err
}

func runVerifyInclusion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify inclusion", stderr)
	logKey := fs.String("log-key", "", "the log's note verifier key, or a file holding it")
	entryFile := fs.String("entry", "", "file holding the entry's exact leaf bytes")
	leafHashB64 := fs.String("leaf-hash", "", "the entry's base64 RFC 6962 leaf hash")
	proofFile, err := parseOne(fs, args, noEnv, "PROOF file")
	if err != nil {
		return err
	}
	if *entryFile != "" && *leafHashB64 != "" {
		return fmt.Errorf("%w: give one of --entry and --leaf-hash", errUsage)
	}
	vkey, err := readLogKey(*logKey)
	if err != nil {
		return err
	}
	raw, err := osfile.ReadAtMost(proofFile, verify.MaxProofSize)
	if err != nil {
		return err
	}

	// The proof, read once; a tlog-proof bundle may carry its entry.
	var proof interface {
		Verify(verifierKey string, leafHash []byte) (*verify.Checkpoint, error)
	}
	var index uint64
	var carried []byte
	switch proofFormat(raw) {
	case "tlog-proof":
		p, err := verify.ParseProof(raw)
		if err != nil {
			return err
		}
		proof, index, carried = p, p.Index, p.Extra
	case "json":
		p, err := verify.ParseInclusionJSON(raw)
		if err != nil {
			return err
		}
		proof, index = p, p.Index
	default:
		return fmt.Errorf("%s: neither a c2sp.org/tlog-proof@v1 file nor inclusion-proof JSON", proofFile)
	}

	// The leaf proven: the entry given, its hash given, or else the entry
	// the bundle carries on its extra line (the proof then authenticates
	// those bytes).
	var leaf, leafHash []byte
	var entry *verify.Entry
	switch {
	case *entryFile != "":
		if leaf, err = osfile.ReadAtMost(*entryFile, maxSmallFile); err != nil {
			return err
		}
	case *leafHashB64 != "":
		if leafHash, err = base64.StdEncoding.Strict().DecodeString(*leafHashB64); err != nil || len(leafHash) != verify.HashSize {
			return fmt.Errorf("%w: --leaf-hash is not the base64 of 32 bytes", errUsage)
		}
	case len(carried) == 0:
		return fmt.Errorf("%w: %s carries no entry: give --entry or --leaf-hash", errUsage, proofFile)
	default:
		leaf = carried
	}
	if leaf != nil {
		e, err := verify.ParseEntry(leaf)
		if err != nil {
			source := *entryFile
			if source == "" {
				source = proofFile + "'s entry"
			}
			return fmt.Errorf("%s: %w", source, err)
		}
		leafHash, entry = verify.LeafHash(leaf), &e
	}
	cp, err := proof.Verify(vkey, leafHash)
	if err != nil {
		return err
	}
	// The entry names its own position; a proof for another position would
	// prove that identical bytes sit elsewhere, which the chain forbids.
	if entry != nil && entry.Index != index {
		return fmt.Errorf("the entry says it is entry %d but the proof is for entry %d", entry.Index, index)
	}
	what := ""
	if entry != nil {
		what = fmt.Sprintf(" (%s %s, %s, record sha256 %s)", entry.Kind, strconv.Quote(entry.Subject), entry.Time.UTC().Format(time.RFC3339Nano), b64(entry.Digest))
	}
	fmt.Fprintf(stdout, "OK: entry %d%s is in log %s at size %d (root %s)\n", index, what, cp.Origin(), cp.Size(), b64(cp.Hash()))
	return nil
}

func runVerifyConsistency(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify consistency", stderr)
	logKey := fs.String("log-key", "", "the log's note verifier key, or a file holding it")
	oldFile := fs.String("old", "", "file holding an earlier signed checkpoint of the log")
	proofFile, err := parseOne(fs, args, noEnv, "PROOF file")
	if err != nil {
		return err
	}
	if *oldFile == "" {
		return fmt.Errorf("%w: --old is required", errUsage)
	}
	vkey, err := readLogKey(*logKey)
	if err != nil {
		return err
	}
	raw, err := osfile.ReadAtMost(proofFile, verify.MaxProofSize)
	if err != nil {
		return err
	}
	oldNote, err := osfile.ReadAtMost(*oldFile, verify.MaxCheckpointSize)
	if err != nil {
		return err
	}
	older, err := verify.VerifyCheckpoint(oldNote, vkey)
	if err != nil {
		return fmt.Errorf("old checkpoint %s: %w", *oldFile, err)
	}
	if proofFormat(raw) != "json" {
		return fmt.Errorf("%s: not consistency-proof JSON", proofFile)
	}
	p, err := verify.ParseConsistencyJSON(raw)
	if err != nil {
		return err
	}
	newer, err := p.Verify(vkey, older)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "OK: log %s at size %d (root %s) extends size %d (root %s)\n",
		newer.Origin(), newer.Size(), b64(newer.Hash()), older.Size(), b64(older.Hash()))
	return nil
}

// readLogKey accepts the verifier key itself or a file holding it.
func readLogKey(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("%w: --log-key is required", errUsage)
	}
	if _, err := note.NewVerifier(s); err == nil {
		// The key itself, not a file's name: it must also be usable.
		if _, err := verify.NewVerifier(s); err != nil {
			return "", err
		}
		return s, nil
	}
	b, err := osfile.ReadAtMost(s, maxSmallFile)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w: --log-key is neither a note verifier key nor a file", errUsage)
	}
	if err != nil {
		return "", err
	}
	key := strings.TrimSpace(string(b))
	if _, err := verify.NewVerifier(key); err != nil {
		return "", fmt.Errorf("%s: %w", s, err)
	}
	return key, nil
}

// proofFormat tells a c2sp.org/tlog-proof from JSON by the first bytes.
func proofFormat(raw []byte) string {
	switch {
	case bytes.HasPrefix(raw, []byte("c2sp.org/tlog-proof@")):
		return "tlog-proof"
	case bytes.HasPrefix(bytes.TrimLeft(raw, " \t\r\n"), []byte("{")):
		return "json"
	}
	return ""
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
