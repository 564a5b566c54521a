package verify

import (
	"encoding/base64"
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

// proofMembers is a proof's JSON as its members in order, each a name (as
// JSON string text, so it may hold escapes) and a value (as JSON text): a
// case replaces, adds or drops one and keeps the rest byte for byte.
type proofMembers [][2]string

func (m proofMembers) body() string {
	parts := make([]string, len(m))
	for i, nv := range m {
		parts[i] = `"` + nv[0] + `":` + nv[1]
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func (m proofMembers) index(t *testing.T, name string) int {
	for i, nv := range m {
		if nv[0] == name {
			return i
		}
	}
	t.Fatalf("no member %q in %s", name, m.body())
	return -1
}

// with gives name the value.
func (m proofMembers) with(t *testing.T, name, value string) proofMembers {
	m = append(proofMembers(nil), m...)
	m[m.index(t, name)][1] = value
	return m
}

// before adds a member in front of the member called at.
func (m proofMembers) before(t *testing.T, at, name, value string) proofMembers {
	i := m.index(t, at)
	return append(append(append(proofMembers(nil), m[:i]...), [2]string{name, value}), m[i:]...)
}

// plus adds a member at the end.
func (m proofMembers) plus(name, value string) proofMembers {
	return append(append(proofMembers(nil), m...), [2]string{name, value})
}

func (m proofMembers) without(t *testing.T, name string) proofMembers {
	i := m.index(t, name)
	return append(append(proofMembers(nil), m[:i]...), m[i+1:]...)
}

func jsonText(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A proof's JSON is read with its exact member names, each once, none
// unknown, none missing or null, nothing after it: bytes that any JSON
// reader takes for the same values. encoding/json alone took "INDEX",
// "Second" and "tree_ſize" (U+017F folds to s) for the real names, kept the
// last of duplicates, read null as zero, a hash's base64 with a newline in
// it and invalid UTF-8 (as U+FFFD).
func TestProofJSONReadsMembersExactly(t *testing.T) {
	key := newTestKey(t, testOrigin, 1)
	tr := newTestTree(t, 42)
	checkpoint := string(key.sign(t, 42, tr.root(42)))
	path, proof := refPath(41, tr.leaves), refProof(10, tr.leaves)
	incl := proofMembers{
		{"index", "41"}, {"tree_size", "42"}, {"leaf_hash", jsonText(t, tr.leaves[41])},
		{"hashes", jsonText(t, path)}, {"checkpoint", jsonText(t, checkpoint)},
	}
	cons := proofMembers{
		{"first", "10"}, {"second", "42"}, {"hashes", jsonText(t, proof)}, {"checkpoint", jsonText(t, checkpoint)},
	}
	// These are the bytes the server writes.
	if got := jsonText(t, InclusionProofJSON{Index: 41, TreeSize: 42, LeafHash: tr.leaves[41], Hashes: path, Checkpoint: checkpoint}); got != incl.body() {
		t.Fatalf("server's inclusion JSON is %s, not %s", got, incl.body())
	}
	if got := jsonText(t, ConsistencyProofJSON{First: 10, Second: 42, Hashes: proof, Checkpoint: checkpoint}); got != cons.body() {
		t.Fatalf("server's consistency JSON is %s, not %s", got, cons.body())
	}
	parseIncl := func(b string) error { _, err := ParseInclusionJSON([]byte(b)); return err }
	parseCons := func(b string) error { _, err := ParseConsistencyJSON([]byte(b)); return err }

	for name, body := range map[string]string{
		"inclusion":                  incl.body(),
		"inclusion without leaf":     incl.without(t, "leaf_hash").body(),
		"inclusion, a name escaped":  incl.before(t, "index", `\u0069ndex`, "41").without(t, "index").body(),
		"inclusion, members swapped": incl.without(t, "index").before(t, "checkpoint", "index", "41").body(),
	} {
		p, err := ParseInclusionJSON([]byte(body))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if _, err := p.Verify(key.vkey, tr.leaves[41]); err != nil || p.Index != 41 {
			t.Errorf("%s: index %d, %v", name, p.Index, err)
		}
	}
	if p, err := ParseConsistencyJSON([]byte(cons.body())); err != nil {
		t.Error(err)
	} else if _, err := p.Verify(key.vkey, key.checkpoint(t, tr, 10)); err != nil {
		t.Error(err)
	}

	for _, tc := range []struct {
		name  string
		parse func(string) error
		body  string
		want  string
	}{
		// Case variants: encoding/json read the last of them as the member.
		{"inclusion: a name in capitals beside it", parseIncl, incl.before(t, "index", "INDEX", "40").body(), `unknown member "INDEX"`},
		{"inclusion: a name in capitals after it", parseIncl, incl.before(t, "tree_size", "INDEX", "40").body(), `unknown member "INDEX"`},
		{"consistency: a name in mixed case beside it", parseCons, cons.before(t, "second", "Second", "41").body(), `unknown member "Second"`},
		{"consistency: a name in mixed case after it", parseCons, cons.with(t, "checkpoint", `"x"`).plus("Checkpoint", jsonText(t, checkpoint)).body(), `unknown member "Checkpoint"`},
		// A Unicode simple fold: encoding/json matched U+017F to s.
		{"inclusion: a name that folds to it", parseIncl, incl.before(t, "tree_size", `tree_\u017fize`, "43").body(), `unknown member "tree_ſize"`},
		{"consistency: a name that folds to it", parseCons, cons.before(t, "first", `fir\u017ft`, "9").body(), `unknown member "firſt"`},
		// Duplicates: encoding/json kept the last.
		{"inclusion: a duplicate index", parseIncl, incl.before(t, "index", "index", "40").body(), `duplicate object member name "index"`},
		{"inclusion: a duplicate checkpoint", parseIncl, incl.before(t, "checkpoint", "checkpoint", `"x"`).body(), `duplicate object member name "checkpoint"`},
		{"inclusion: a duplicate escaped", parseIncl, incl.before(t, "hashes", `ha\u0073hes`, "[]").body(), `duplicate object member name "hashes"`},
		{"consistency: a duplicate hashes", parseCons, cons.before(t, "hashes", "hashes", "[]").body(), `duplicate object member name "hashes"`},
		// Unknown members: a plain one was already refused.
		{"inclusion: an unknown member", parseIncl, incl.before(t, "index", "note", `"x"`).body(), `unknown member "note"`},
		{"consistency: an unknown member", parseCons, cons.before(t, "first", "leaf_hash", jsonText(t, tr.leaves[41])).body(), `unknown member "leaf_hash"`},
		// Null reads as zero; a missing member was already refused.
		{"inclusion: null index", parseIncl, incl.with(t, "index", "null").body(), `member "index" is null`},
		{"inclusion: null hashes", parseIncl, incl.with(t, "hashes", "null").body(), `member "hashes" is null`},
		{"inclusion: null checkpoint", parseIncl, incl.with(t, "checkpoint", "null").body(), `member "checkpoint" is null`},
		{"inclusion: null leaf_hash", parseIncl, incl.with(t, "leaf_hash", "null").body(), `member "leaf_hash" is null`},
		{"consistency: null first", parseCons, cons.with(t, "first", "null").body(), `member "first" is null`},
		{"consistency: null checkpoint", parseCons, cons.with(t, "checkpoint", "null").body(), `member "checkpoint" is null`},
		{"inclusion: missing checkpoint", parseIncl, incl.without(t, "checkpoint").body(), `missing member "checkpoint"`},
		{"inclusion: missing tree_size", parseIncl, incl.without(t, "tree_size").body(), `missing member "tree_size"`},
		{"consistency: missing hashes", parseCons, cons.without(t, "hashes").body(), `missing member "hashes"`},
		{"consistency: missing second", parseCons, cons.without(t, "second").body(), `missing member "second"`},
		// Values other readers take differently or refuse.
		{"inclusion: a newline in a hash's base64", parseIncl,
			incl.with(t, "hashes", jsonText(t, []string{base64.StdEncoding.EncodeToString(path[0])[:20] + "\n" + base64.StdEncoding.EncodeToString(path[0])[20:]})).body(), `"/hashes/0"`},
		{"inclusion: invalid UTF-8", parseIncl, incl.with(t, "checkpoint", "\"\xff"+jsonText(t, checkpoint)[1:]).body(), "invalid UTF-8"},
		{"inclusion: an array", parseIncl, "[" + incl.body() + "]", "not a JSON object"},
		{"consistency: null", parseCons, " null", "not a JSON object"},
		{"consistency: trailing data", parseCons, cons.body() + " {}", "after top-level value"},
		{"consistency: a second object", parseCons, cons.body() + cons.body(), "after top-level value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.parse(tc.body)
			if !errors.Is(err, ErrInvalidProof) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %s", err, tc.want)
			}
		})
	}
}
