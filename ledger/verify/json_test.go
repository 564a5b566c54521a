package verify

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestProofJSON(t *testing.T) {
	key := newTestKey(t, testOrigin, 1)
	other := newTestKey(t, "agentsigna.test/t/other", 2)
	tr := newTestTree(t, 42)
	incl := InclusionProofJSON{
		Index: 41, TreeSize: 42, LeafHash: tr.leaves[41],
		Hashes: refPath(41, tr.leaves), Checkpoint: string(key.sign(t, 42, tr.root(42))),
	}
	raw, err := json.Marshal(incl)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"tree_size":42,"leaf_hash":"`) {
		t.Fatalf("JSON %s", raw)
	}
	p, err := ParseInclusionJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	if cp, err := p.Verify(key.vkey, tr.leaves[41]); err != nil || cp.Size() != 42 {
		t.Fatalf("Verify = %v, %v", cp, err)
	}
	for name, err := range map[string]error{
		"other leaf": func() error { _, err := p.Verify(key.vkey, tr.leaves[40]); return err }(),
		"wrong key":  func() error { _, err := p.Verify(other.vkey, tr.leaves[41]); return err }(),
		"tree_size":  func() error { q := *p; q.TreeSize = 43; _, err := q.Verify(key.vkey, tr.leaves[41]); return err }(),
		"index": func() error {
			q := *p
			q.Index = 40
			q.LeafHash = nil
			_, err := q.Verify(key.vkey, tr.leaves[41])
			return err
		}(),
		"no leaf hash": func() error { _, err := p.Verify(key.vkey, nil); return err }(),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, body := range map[string]string{
		"unknown member":   `{"index":1,"tree_size":2,"hashes":[],"checkpoint":"x","extra":1}`,
		"missing hashes":   `{"index":1,"tree_size":2,"checkpoint":"x"}`,
		"missing index":    `{"tree_size":2,"hashes":[],"checkpoint":"x"}`,
		"short hash":       `{"index":1,"tree_size":2,"hashes":["AAAA"],"checkpoint":"x"}`,
		"short leaf hash":  `{"index":1,"tree_size":2,"leaf_hash":"AAAA","hashes":[],"checkpoint":"x"}`,
		"trailing data":    `{"index":1,"tree_size":2,"hashes":[],"checkpoint":"x"} {}`,
		"negative index":   `{"index":-1,"tree_size":2,"hashes":[],"checkpoint":"x"}`,
		"wrong-case name":  `{"Index":1,"tree_size":2,"hashes":[],"checkpoint":"x"}`,
		"not base64 hash":  `{"index":1,"tree_size":2,"hashes":["!"],"checkpoint":"x"}`,
		"not an object":    `[]`,
		"checkpoint bytes": `{"index":1,"tree_size":2,"hashes":[],"checkpoint":5}`,
	} {
		if _, err := ParseInclusionJSON([]byte(body)); !errors.Is(err, ErrInvalidProof) {
			t.Errorf("%s: %v", name, err)
		}
	}

	cons := ConsistencyProofJSON{First: 10, Second: 42, Hashes: refProof(10, tr.leaves), Checkpoint: string(key.sign(t, 42, tr.root(42)))}
	raw, err = json.Marshal(cons)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConsistencyJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	older := key.checkpoint(t, tr, 10)
	if newer, err := c.Verify(key.vkey, older); err != nil || newer.Size() != 42 {
		t.Fatalf("Verify = %v, %v", newer, err)
	}
	otherOlder, err := VerifyCheckpoint(other.sign(t, 10, tr.root(10)), other.vkey)
	if err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"older of another size": func() error { _, err := c.Verify(key.vkey, key.checkpoint(t, tr, 11)); return err }(),
		"older of another log":  func() error { _, err := c.Verify(key.vkey, otherOlder); return err }(),
		"unverified older":      func() error { _, err := c.Verify(key.vkey, &Checkpoint{size: 10}); return err }(),
		"second":                func() error { q := *c; q.Second = 41; _, err := q.Verify(key.vkey, older); return err }(),
		"wrong key":             func() error { _, err := c.Verify(other.vkey, older); return err }(),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseConsistencyJSON([]byte(`{"first":1,"second":2,"hashes":[]}`)); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("missing checkpoint: %v", err)
	}
}
