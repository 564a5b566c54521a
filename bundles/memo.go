package bundles

import (
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// maxMemoEntries bounds a memo; when it is full it starts over. The base
// policy's inputs repeat (a few action types, statuses and tiers per
// counterparty), so a few thousand entries hold the working set.
const maxMemoEntries = 4096

// memo remembers a policy's verdicts by the values of the input paths the
// policy reads, and nothing else. It is only built for a policy whose
// verdict provably depends on those values alone (see memoPaths): the same
// values then give the same verdict, so answering from the memo is the
// evaluation, not an approximation of it.
type memo struct {
	paths []ast.Ref // input paths, without the leading "input"

	mu      sync.Mutex
	entries map[int][]memoEntry // by hash of the key
	size    int
}

type memoEntry struct {
	key     []ast.Value // per path, nil when undefined
	verdict Verdict
}

// memoPaths returns the input paths modules read, or ok false when their
// verdict could depend on anything else: input read as a whole or through a
// variable key (`input`, `input[x]`), a `with` modifier, or a builtin OPA
// marks non-deterministic (time.now_ns, for one).
func memoPaths(modules map[string]*ast.Module) (paths []ast.Ref, ok bool) {
	ok = true
	seen := map[string]bool{}
	var vis *ast.GenericVisitor
	nondeterministic := func(op ast.Ref) {
		if b, found := ast.BuiltinMap[op.String()]; found && b.Nondeterministic {
			ok = false
		}
	}
	vis = ast.NewGenericVisitor(func(x any) bool {
		if !ok {
			return true
		}
		switch x := x.(type) {
		case *ast.Expr:
			if len(x.With) > 0 {
				ok = false
			}
			if x.IsCall() {
				nondeterministic(x.Operator())
			}
		case ast.Call:
			if len(x) > 0 {
				if op, isRef := x[0].Value.(ast.Ref); isRef {
					nondeterministic(op)
				}
			}
		case ast.Var:
			if x == ast.InputRootDocument.Value.(ast.Var) {
				ok = false // input outside a ref to one of its paths
			}
		case ast.Ref:
			if !x.HasPrefix(ast.InputRootRef) {
				return false // walk its terms
			}
			path := x[1:]
			if len(path) == 0 {
				ok = false
				return true
			}
			for _, t := range path {
				if _, isString := t.Value.(ast.String); !isString {
					ok = false
					return true
				}
			}
			if s := path.String(); !seen[s] {
				seen[s] = true
				paths = append(paths, path.Copy())
			}
			return true
		}
		return false
	})
	for _, m := range modules {
		vis.Walk(m)
	}
	if !ok {
		return nil, false
	}
	slices.SortFunc(paths, func(a, b ast.Ref) int { return a.Compare(b) })
	return paths, true
}

func newMemo(paths []ast.Ref) *memo {
	return &memo{paths: paths, entries: map[int][]memoEntry{}}
}

// key returns the values of the memo's paths in in, and their hash.
func (m *memo) key(in ast.Value) ([]ast.Value, int) {
	key := make([]ast.Value, len(m.paths))
	h := len(m.paths)
	for i, p := range m.paths {
		v, err := in.Find(p)
		if err == nil {
			key[i] = v
			h = h*31 + v.Hash()
		} else {
			h = h*31 + 7
		}
	}
	return key, h
}

func sameKey(a, b []ast.Value) bool {
	for i := range a {
		if (a[i] == nil) != (b[i] == nil) || (a[i] != nil && ast.Compare(a[i], b[i]) != 0) {
			return false
		}
	}
	return true
}

func (m *memo) get(key []ast.Value, h int) (Verdict, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.entries[h] {
		if sameKey(e.key, key) {
			return e.verdict.clone(), true
		}
	}
	return Verdict{}, false
}

func (m *memo) put(key []ast.Value, h int, v Verdict) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.size >= maxMemoEntries {
		clear(m.entries)
		m.size = 0
	}
	m.entries[h] = append(m.entries[h], memoEntry{key: key, verdict: v.clone()})
	m.size++
}

func (v Verdict) clone() Verdict {
	v.Deny = slices.Clone(v.Deny)
	v.Escalate = slices.Clone(v.Escalate)
	return v
}
