package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	formatsproof "github.com/transparency-dev/formats/proof"
)

// tlogProofFor returns a verified c2sp.org/tlog-proof for leaf index of a
// 7-leaf test log, and that log's key and tree.
func tlogProofFor(t testing.TB, index uint64, extra []byte) ([]byte, testKey, *testTree) {
	t.Helper()
	key := newTestKey(t, testOrigin, 1)
	tr := newTestTree(t, 7)
	p := Proof{Extra: extra, Index: index, Hashes: refPath(int(index), tr.leaves[:7]), Checkpoint: key.sign(t, 7, tr.root(7))}
	return p.Marshal(), key, tr
}

func proofSeeds(t testing.TB) [][]byte {
	good, _, _ := tlogProofFor(t, 3, nil)
	withExtra, _, _ := tlogProofFor(t, 6, []byte("extra data"))
	seeds := [][]byte{good, withExtra}
	for _, tc := range parseProofRejections(t) {
		seeds = append(seeds, tc.raw)
	}
	return seeds
}

func TestProofRoundTripAndInterop(t *testing.T) {
	for _, extra := range [][]byte{nil, []byte("extra data")} {
		raw, key, tr := tlogProofFor(t, 3, extra)
		p, err := ParseProof(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p.Marshal(), raw) || !bytes.Equal(p.Extra, extra) || p.Index != 3 {
			t.Fatalf("round trip %+v", p)
		}
		cp, index, err := VerifyProof(raw, key.vkey, tr.leaves[3])
		if err != nil || index != 3 || cp.Size() != 7 {
			t.Fatalf("VerifyProof = %v, %d, %v", cp, index, err)
		}
		// transparency-dev/formats writes the same bytes and reads ours.
		theirs := formatsproof.TLogProof{Index: p.Index, Checkpoint: p.Checkpoint, ExtraData: p.Extra}
		for _, h := range p.Hashes {
			theirs.Hashes = append(theirs.Hashes, [sha256.Size]byte(h))
		}
		if !bytes.Equal(theirs.Marshal(), raw) {
			t.Fatalf("formats marshals\n%s\nwe marshal\n%s", theirs.Marshal(), raw)
		}
		var back formatsproof.TLogProof
		if err := back.Unmarshal(raw); err != nil || back.Index != 3 || !bytes.Equal(back.Checkpoint, p.Checkpoint) {
			t.Fatalf("formats reads %+v, %v", back, err)
		}
	}
}

func TestVerifyProofRejects(t *testing.T) {
	raw, key, tr := tlogProofFor(t, 3, nil)
	other := newTestKey(t, "agentsigna.test/t/other", 2)
	for _, tc := range []struct {
		name   string
		raw    []byte
		vkey   string
		leaf   []byte
		target error
	}{
		{"wrong leaf", raw, key.vkey, tr.leaves[4], ErrInvalidProof},
		{"wrong key", raw, other.vkey, tr.leaves[3], ErrInvalidCheckpoint},
		{"wrong index", bytes.Replace(raw, []byte("index 3\n"), []byte("index 2\n"), 1), key.vkey, tr.leaves[3], ErrInvalidProof},
		{"index = size", bytes.Replace(raw, []byte("index 3\n"), []byte("index 7\n"), 1), key.vkey, tr.leaves[3], ErrInvalidProof},
		{"malformed", raw[1:], key.vkey, tr.leaves[3], ErrInvalidProof},
		{"tampered checkpoint", bytes.Replace(raw, []byte("\n7\n"), []byte("\n8\n"), 1), key.vkey, tr.leaves[3], ErrInvalidCheckpoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if cp, _, err := VerifyProof(tc.raw, tc.vkey, tc.leaf); !errors.Is(err, tc.target) || cp != nil {
				t.Fatalf("VerifyProof = %v, %v; want %v", cp, err, tc.target)
			}
		})
	}
}

type proofCase struct {
	name string
	raw  []byte
}

func parseProofRejections(t testing.TB) []proofCase {
	good, _, _ := tlogProofFor(t, 3, nil)
	s := string(good)
	lines := strings.SplitN(s, "\n", 4) // header, index, first hash, rest
	h := lines[2]
	hb, _ := base64.StdEncoding.DecodeString(h)
	nonCanonical := []byte(h)
	nonCanonical[42] = nextBase64Char(nonCanonical[42])
	return []proofCase{
		{"empty", nil},
		{"header only", []byte(tlogProofHeader + "\n")},
		{"other version", []byte(strings.Replace(s, "@v1", "@v2", 1))},
		{"header with CR", []byte(strings.Replace(s, "@v1\n", "@v1\r\n", 1))},
		{"leading blank line", []byte("\n" + s)},
		{"no index", []byte(strings.Replace(s, "index 3\n", "", 1))},
		{"index leading zero", []byte(strings.Replace(s, "index 3\n", "index 03\n", 1))},
		{"index with sign", []byte(strings.Replace(s, "index 3\n", "index +3\n", 1))},
		{"index negative", []byte(strings.Replace(s, "index 3\n", "index -3\n", 1))},
		{"index two spaces", []byte(strings.Replace(s, "index 3\n", "index  3\n", 1))},
		{"index overflow", []byte(strings.Replace(s, "index 3\n", "index 18446744073709551616\n", 1))},
		{"extra after index", []byte(strings.Replace(s, "index 3\n", "index 3\nextra YQ==\n", 1))},
		{"empty extra", []byte(strings.Replace(s, "index 3\n", "extra \nindex 3\n", 1))},
		{"extra not base64", []byte(strings.Replace(s, "index 3\n", "extra !!\nindex 3\n", 1))},
		{"extra unpadded", []byte(strings.Replace(s, "index 3\n", "extra YQ\nindex 3\n", 1))},
		{"two extras", []byte(strings.Replace(s, "index 3\n", "extra YQ==\nextra YQ==\nindex 3\n", 1))},
		{"hash 31 bytes", []byte(strings.Replace(s, h, base64.StdEncoding.EncodeToString(hb[:31]), 1))},
		{"hash 33 bytes", []byte(strings.Replace(s, h, base64.StdEncoding.EncodeToString(append(hb, 0)), 1))},
		{"hash base64url", []byte(strings.Replace(s, h, base64.URLEncoding.EncodeToString(hb)+"x", 1))},
		{"hash non-canonical", []byte(strings.Replace(s, h, string(nonCanonical), 1))},
		{"hash with trailing space", []byte(strings.Replace(s, h, h+" ", 1))},
		{"too many hashes", []byte(strings.Replace(s, h+"\n", strings.Repeat(h+"\n", MaxProofHashes+1), 1))},
		{"no blank line", []byte(tlogProofHeader + "\nindex 3\n" + h + "\n")},
		{"no checkpoint", []byte(tlogProofHeader + "\nindex 3\n" + h + "\n\n")},
		{"too big", append([]byte(s), bytes.Repeat([]byte("x"), MaxProofSize)...)},
	}
}

func TestParseProofRejects(t *testing.T) {
	for _, tc := range parseProofRejections(t) {
		t.Run(tc.name, func(t *testing.T) {
			if p, err := ParseProof(tc.raw); !errors.Is(err, ErrInvalidProof) {
				t.Fatalf("ParseProof = %+v, %v", p, err)
			}
		})
	}
}
