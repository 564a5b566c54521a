package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/ledger/verify"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// testLedger is a log of real chained entries, built with compact.Range.
type testLedger struct {
	origin string
	vkey   string
	signer note.Signer
	leaves [][]byte
	nodes  map[compact.NodeID][]byte
}

func newTestLedger(t *testing.T, origin string, n int) *testLedger {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	var leaves [][]byte
	prev := make([]byte, 32)
	for i := 0; i < n; i++ {
		digest := sha256.Sum256([]byte(fmt.Sprintf("record %d", i)))
		leaf, err := verify.Entry{
			V: 1, Index: uint64(i), Time: time.Date(2026, 3, 1, 12, 0, i, 0, time.UTC),
			Kind: "decision", Subject: "agent:bot", Digest: digest[:], Prev: prev,
		}.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, leaf)
		prev = verify.LeafHash(leaf)
	}
	return testLedgerOf(t, origin, vkey, signer, leaves)
}

// testLedgerOf is a log of the leaves given, whatever they say, signed by
// signer.
func testLedgerOf(t *testing.T, origin, vkey string, signer note.Signer, leaves [][]byte) *testLedger {
	t.Helper()
	l := &testLedger{origin: origin, vkey: vkey, signer: signer, nodes: map[compact.NodeID][]byte{}, leaves: leaves}
	rf := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r := rf.NewEmptyRange(0)
	for i, leaf := range leaves {
		h := verify.LeafHash(leaf)
		l.nodes[compact.NewNodeID(0, uint64(i))] = h
		if err := r.Append(h, func(id compact.NodeID, h []byte) { l.nodes[id] = h }); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func (l *testLedger) hashes(t *testing.T, nodes proof.Nodes, err error) [][]byte {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	hs := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		hs[i] = bytes.Clone(l.nodes[id]) // callers tamper with them
	}
	hs, err = nodes.Rehash(hs, rfc6962.DefaultHasher.HashChildren)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

func (l *testLedger) checkpoint(t *testing.T, size uint64) []byte {
	t.Helper()
	rf := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	var hs [][]byte
	for _, id := range compact.RangeNodes(0, size, nil) {
		hs = append(hs, l.nodes[id])
	}
	r, err := rf.NewRange(0, size, hs)
	if err != nil {
		t.Fatal(err)
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", l.origin, size, base64.StdEncoding.EncodeToString(root))}, l.signer)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func (l *testLedger) inclusionJSON(t *testing.T, index, size uint64) verify.InclusionProofJSON {
	t.Helper()
	nodes, err := proof.Inclusion(index, size)
	return verify.InclusionProofJSON{
		Index: index, TreeSize: size, LeafHash: verify.LeafHash(l.leaves[index]),
		Hashes: l.hashes(t, nodes, err), Checkpoint: string(l.checkpoint(t, size)),
	}
}

func (l *testLedger) consistencyJSON(t *testing.T, first, second uint64) verify.ConsistencyProofJSON {
	t.Helper()
	nodes, err := proof.Consistency(first, second)
	return verify.ConsistencyProofJSON{First: first, Second: second, Hashes: l.hashes(t, nodes, err), Checkpoint: string(l.checkpoint(t, second))}
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	acme := newTestLedger(t, "agentsigna.test/t/acme", 42)
	other := newTestLedger(t, "agentsigna.test/t/other", 42)

	incl := acme.inclusionJSON(t, 41, 42)
	tampered := acme.inclusionJSON(t, 41, 42)
	tampered.Hashes[0][0] ^= 1
	wrongIndex := acme.inclusionJSON(t, 41, 42)
	wrongIndex.Index, wrongIndex.LeafHash = 40, nil
	tlogProof := verify.Proof{Index: 41, Hashes: incl.Hashes, Checkpoint: []byte(incl.Checkpoint)}.Marshal()
	// Bundles carrying an entry on their extra line, as the service's do.
	carrying := func(index uint64, hashes [][]byte, cp string, extra []byte) []byte {
		return verify.Proof{Extra: extra, Index: index, Hashes: hashes, Checkpoint: []byte(cp)}.Marshal()
	}
	// A dishonest log (its own key signs) holding entry 41's bytes at 40
	// too: a true proof for position 40, which the entry's own index
	// contradicts.
	twice := testLedgerOf(t, acme.origin, acme.vkey, acme.signer,
		append(slices.Clone(acme.leaves[:40]), acme.leaves[41], acme.leaves[41]))
	twiceIncl := twice.inclusionJSON(t, 40, 42)
	twiceProof := verify.Proof{Index: 40, Hashes: twiceIncl.Hashes, Checkpoint: []byte(twiceIncl.Checkpoint)}.Marshal()
	cons := acme.consistencyJSON(t, 10, 42)
	consTampered := acme.consistencyJSON(t, 10, 42)
	consTampered.Hashes[1][5] ^= 0x40

	files := map[string]string{
		"incl.json":     writeFile(t, dir, "incl.json", mustJSON(t, incl)),
		"tampered.json": writeFile(t, dir, "tampered.json", mustJSON(t, tampered)),
		"wrongidx.json": writeFile(t, dir, "wrongidx.json", mustJSON(t, wrongIndex)),
		"proof":         writeFile(t, dir, "41.tlog-proof", tlogProof),
		"entry41":       writeFile(t, dir, "entry41.json", acme.leaves[41]),
		"entry40":       writeFile(t, dir, "entry40.json", acme.leaves[40]),
		"key":           writeFile(t, dir, "log-key", []byte(acme.vkey+"\n")),
		"cons.json":     writeFile(t, dir, "cons.json", mustJSON(t, cons)),
		"constamp.json": writeFile(t, dir, "constamp.json", mustJSON(t, consTampered)),
		"old10":         writeFile(t, dir, "old10", acme.checkpoint(t, 10)),
		"old11":         writeFile(t, dir, "old11", acme.checkpoint(t, 11)),
		"otherold10":    writeFile(t, dir, "otherold10", other.checkpoint(t, 10)),
		"garbage":       writeFile(t, dir, "garbage", []byte("hello")),
		"twice":         writeFile(t, dir, "twice.tlog-proof", twiceProof),
		"carrying":      writeFile(t, dir, "carrying.tlog-proof", carrying(41, incl.Hashes, incl.Checkpoint, acme.leaves[41])),
		"carrying40":    writeFile(t, dir, "carrying40.tlog-proof", carrying(41, incl.Hashes, incl.Checkpoint, acme.leaves[40])),
		"carryingtwice": writeFile(t, dir, "carryingtwice.tlog-proof", carrying(40, twiceIncl.Hashes, twiceIncl.Checkpoint, acme.leaves[41])),
		"carryingjunk":  writeFile(t, dir, "carryingjunk.tlog-proof", carrying(41, incl.Hashes, incl.Checkpoint, []byte("hello"))),
	}
	leafHash := base64.StdEncoding.EncodeToString(verify.LeafHash(acme.leaves[41]))
	// The identity point as the log's key: R = identity, S = 0 signs
	// anything under it (found by review). A forged checkpoint over
	// acme's true root, and its proof of entry 41.
	identity := append([]byte{1}, make([]byte, 31)...)
	rawKey := append([]byte{1}, identity...)
	id := sha256.Sum256(append([]byte(acme.origin+"\n"), rawKey...))
	smallKey := fmt.Sprintf("%s+%08x+%s", acme.origin, binary.BigEndian.Uint32(id[:4]), base64.StdEncoding.EncodeToString(rawKey))
	forgedSig := append(slices.Clone(id[:4]), identity...)
	forgedSig = append(forgedSig, make([]byte, 32)...)
	signed42 := acme.checkpoint(t, 42)
	forgedCp := string(signed42[:bytes.Index(signed42, []byte("\n\n"))+1]) + "\n\u2014 " + acme.origin + " " + base64.StdEncoding.EncodeToString(forgedSig) + "\n"
	files["forged"] = writeFile(t, dir, "forged.tlog-proof", verify.Proof{Index: 41, Hashes: incl.Hashes, Checkpoint: []byte(forgedCp)}.Marshal())
	files["smallkey"] = writeFile(t, dir, "small-key", []byte(smallKey+"\n"))

	for _, tc := range []struct {
		name    string
		args    []string
		wantOut string // prefix of stdout on success
		usage   bool   // a usage error
	}{
		{"tlog-proof with entry", []string{"inclusion", files["proof"], "--log-key", acme.vkey, "--entry", files["entry41"]},
			"OK: entry 41 (decision \"agent:bot\", ", false},
		{"tlog-proof carrying its entry", []string{"inclusion", files["carrying"], "--log-key", acme.vkey},
			"OK: entry 41 (decision \"agent:bot\", ", false},
		{"JSON with leaf hash", []string{"inclusion", files["incl.json"], "--log-key", acme.vkey, "--leaf-hash", leafHash},
			"OK: entry 41 is in log agentsigna.test/t/acme at size 42", false},
		{"flags first, key file", []string{"inclusion", "--log-key", files["key"], "--entry=" + files["entry41"], files["incl.json"]},
			"OK: entry 41", false},
		{"consistency", []string{"consistency", files["cons.json"], "--log-key", acme.vkey, "--old", files["old10"]},
			"OK: log agentsigna.test/t/acme at size 42 (root ", false},

		{"tampered hash", []string{"inclusion", files["tampered.json"], "--log-key", acme.vkey, "--entry", files["entry41"]}, "", false},
		{"wrong key", []string{"inclusion", files["proof"], "--log-key", other.vkey, "--entry", files["entry41"]}, "", false},
		{"wrong index", []string{"inclusion", files["wrongidx.json"], "--log-key", acme.vkey, "--leaf-hash", leafHash}, "", false},
		{"other entry", []string{"inclusion", files["proof"], "--log-key", acme.vkey, "--entry", files["entry40"]}, "", false},
		{"entry's bytes at another index", []string{"inclusion", files["twice"], "--log-key", acme.vkey, "--entry", files["entry41"]}, "", false},
		{"leaf_hash differs from entry", []string{"inclusion", files["incl.json"], "--log-key", acme.vkey, "--entry", files["entry40"]}, "", false},
		{"not a proof", []string{"inclusion", files["garbage"], "--log-key", acme.vkey, "--entry", files["entry41"]}, "", false},
		{"carrying another entry", []string{"inclusion", files["carrying40"], "--log-key", acme.vkey}, "", false},
		{"carrying the entry proven at another index", []string{"inclusion", files["carryingtwice"], "--log-key", acme.vkey}, "", false},
		{"carrying what is no entry", []string{"inclusion", files["carryingjunk"], "--log-key", acme.vkey}, "", false},
		{"entry not canonical", []string{"inclusion", files["proof"], "--log-key", acme.vkey, "--entry", files["garbage"]}, "", false},
		{"old checkpoint from another log", []string{"consistency", files["cons.json"], "--log-key", acme.vkey, "--old", files["otherold10"]}, "", false},
		{"old checkpoint of another size", []string{"consistency", files["cons.json"], "--log-key", acme.vkey, "--old", files["old11"]}, "", false},
		{"tampered consistency", []string{"consistency", files["constamp.json"], "--log-key", acme.vkey, "--old", files["old10"]}, "", false},
		{"consistency with wrong key", []string{"consistency", files["cons.json"], "--log-key", other.vkey, "--old", files["old10"]}, "", false},
		{"small-order log key", []string{"inclusion", files["forged"], "--log-key", smallKey, "--entry", files["entry41"]}, "", false},
		{"small-order log key in a file", []string{"inclusion", files["forged"], "--log-key", files["smallkey"], "--entry", files["entry41"]}, "", false},

		{"no subcommand", nil, "", true},
		{"unknown subcommand", []string{"inconsistency"}, "", true},
		{"both entry and leaf hash", []string{"inclusion", files["proof"], "--log-key", acme.vkey, "--entry", files["entry41"], "--leaf-hash", leafHash}, "", true},
		{"neither entry nor leaf hash", []string{"inclusion", files["proof"], "--log-key", acme.vkey}, "", true},
		{"no proof", []string{"inclusion", "--log-key", acme.vkey, "--leaf-hash", leafHash}, "", true},
		{"two proofs", []string{"inclusion", files["proof"], files["proof"], "--log-key", acme.vkey, "--leaf-hash", leafHash}, "", true},
		{"no log key", []string{"inclusion", files["proof"], "--leaf-hash", leafHash}, "", true},
		{"log key neither key nor file", []string{"inclusion", files["proof"], "--log-key", "nope", "--leaf-hash", leafHash}, "", true},
		{"bad leaf hash", []string{"inclusion", files["proof"], "--log-key", acme.vkey, "--leaf-hash", "AAAA"}, "", true},
		{"no old", []string{"consistency", files["cons.json"], "--log-key", acme.vkey}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runVerify(context.Background(), tc.args, &stdout, &stderr, envOf(nil))
			switch {
			case tc.wantOut != "":
				if err != nil || !strings.HasPrefix(stdout.String(), tc.wantOut) || strings.Count(stdout.String(), "\n") != 1 {
					t.Fatalf("runVerify = %v; stdout %q", err, stdout.String())
				}
			case tc.usage:
				if !errors.Is(err, errUsage) {
					t.Fatalf("runVerify = %v, want a usage error", err)
				}
			default:
				if err == nil || errors.Is(err, errUsage) || stdout.Len() > 0 {
					t.Fatalf("runVerify = %v; stdout %q; want a verification failure", err, stdout.String())
				}
				t.Logf("reason: %s", oneLine(err))
			}
		})
	}
}

// A checkpoint may carry witnesses' cosignatures (c2sp.org/tlog-cosignature),
// some large: the commands read checkpoints and proofs as far as the
// verifier's own bounds, not the few KB of a bare checkpoint.
func TestVerifyCommandsTakeCosignedCheckpoints(t *testing.T) {
	acme := newTestLedger(t, "agentsigna.test/t/acme", 42)
	dir := t.TempDir()
	incl := acme.inclusionJSON(t, 41, 42)
	cp := withCosignatures(acme.checkpoint(t, 42))
	if len(cp) <= 64<<10 || len(cp) > verify.MaxCheckpointSize {
		t.Fatalf("checkpoint of %d bytes: want it past 64 KiB and within %d", len(cp), verify.MaxCheckpointSize)
	}
	tlogProof := writeFile(t, dir, "41.tlog-proof", verify.Proof{Index: 41, Hashes: incl.Hashes, Checkpoint: cp}.Marshal())
	entry := writeFile(t, dir, "entry41", acme.leaves[41])
	cons := acme.consistencyJSON(t, 10, 42)
	cons.Checkpoint = string(cp)
	consFile := writeFile(t, dir, "cons.json", mustJSON(t, cons))
	old := writeFile(t, dir, "old10", withCosignatures(acme.checkpoint(t, 10)))
	for _, args := range [][]string{
		{"inclusion", tlogProof, "--log-key", acme.vkey, "--entry", entry},
		{"consistency", consFile, "--log-key", acme.vkey, "--old", old},
	} {
		var stdout bytes.Buffer
		if err := runVerify(context.Background(), args, &stdout, io.Discard, envOf(nil)); err != nil || !strings.HasPrefix(stdout.String(), "OK: ") {
			t.Errorf("verify %s = %v; stdout %q", args[0], err, stdout.String())
		}
	}
}

// withCosignatures is checkpoint with 20 signature lines of witnesses the
// verifier does not know, 4 KB each (a post-quantum signature's size),
// which a verifier skips (c2sp.org/signed-note): some 80 KB in all.
func withCosignatures(checkpoint []byte) []byte {
	cp := bytes.Clone(checkpoint)
	for i := range 20 {
		blob := make([]byte, 3000)
		_, _ = rand.Read(blob)
		cp = fmt.Appendf(cp, "— witness%d.example %s\n", i, base64.StdEncoding.EncodeToString(blob))
	}
	return cp
}

// The offline verifiers take what they trust from their command line
// only: a log key in the environment is not used (the check is a usage
// error without --log-key), whatever the other commands do.
func TestVerifyCommandTakesNothingFromTheEnvironment(t *testing.T) {
	acme := newTestLedger(t, "agentsigna.test/t/acme", 3)
	dir := t.TempDir()
	proofFile := writeFile(t, dir, "p.json", mustJSON(t, acme.inclusionJSON(t, 2, 3)))
	var stdout bytes.Buffer
	err := runVerify(context.Background(), []string{"inclusion", proofFile, "--leaf-hash", base64.StdEncoding.EncodeToString(verify.LeafHash(acme.leaves[2]))},
		&stdout, &bytes.Buffer{}, envOf(map[string]string{"AGENTSIGNA_LOG_KEY": acme.vkey}))
	if !errors.Is(err, errUsage) || stdout.Len() != 0 {
		t.Fatalf("runVerify with the log key in the environment only = %v; stdout %q", err, stdout.String())
	}
}

// The files the verify and audit commands read are files, and bounded: a
// device named by mistake (or by a server feeding an auditor) is refused
// at once, not read until memory runs out, and a file past its bound is
// refused as such.
func TestVerifyCommandsReadFilesWithinBounds(t *testing.T) {
	acme := newTestLedger(t, "agentsigna.test/t/acme", 3)
	dir := t.TempDir()
	proof := writeFile(t, dir, "proof", mustJSON(t, acme.inclusionJSON(t, 1, 3)))
	huge := writeFile(t, dir, "huge", bytes.Repeat([]byte(" "), verify.MaxProofSize+1))
	leafHash := base64.StdEncoding.EncodeToString(verify.LeafHash(acme.leaves[1]))
	const receipt = "eyJhbGciOiJFZERTQSJ9.eyJhIjoxfQ.AAAA"
	for _, tc := range []struct {
		name string
		run  func() error
		want string
	}{
		{"proof from a device", func() error {
			return runVerify(context.Background(), []string{"inclusion", "/dev/zero", "--log-key", acme.vkey, "--leaf-hash", leafHash}, io.Discard, io.Discard, envOf(nil))
		}, "/dev/zero: not a regular file"},
		{"log key from a device", func() error {
			return runVerify(context.Background(), []string{"inclusion", proof, "--log-key", "/dev/zero", "--leaf-hash", leafHash}, io.Discard, io.Discard, envOf(nil))
		}, "/dev/zero: not a regular file"},
		{"old checkpoint from a device", func() error {
			return runVerify(context.Background(), []string{"consistency", proof, "--log-key", acme.vkey, "--old", "/dev/zero"}, io.Discard, io.Discard, envOf(nil))
		}, "/dev/zero: not a regular file"},
		{"proof past its bound", func() error {
			return runVerify(context.Background(), []string{"inclusion", huge, "--log-key", acme.vkey, "--leaf-hash", leafHash}, io.Discard, io.Discard, envOf(nil))
		}, fmt.Sprintf("is larger than %d bytes", verify.MaxProofSize)},
		{"receipt's JWKS from a device", func() error {
			return runVerify(context.Background(), []string{"receipt", receipt, "--jwks", "/dev/zero"}, io.Discard, io.Discard, envOf(nil))
		}, "/dev/zero: not a regular file"},
		{"audit's JWKS from a device", func() error {
			return runAudit(context.Background(), []string{"verify", proof, "--log-key", acme.vkey, "--jwks", "/dev/zero"}, io.Discard, io.Discard, envOf(nil))
		}, "/dev/zero: not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}
