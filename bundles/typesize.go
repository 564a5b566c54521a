package bundles

import "github.com/open-policy-agent/opa/v1/ast"

// maxTypeWork bounds what OPA's type checker may have to walk in one
// policy. The checker gives a rule whose value holds another rule that
// rule's type, and walks a rule's type whole (hasEmptyCollectionType),
// shared parts once per place: ten lines, each an array of the line before
// eight times, took 2.9 s to compile and an eleventh 16.7 s. Compiling has
// no deadline, so an upload would hold a core for hours.
//
// The measure (typeMeasure) is, over every rule, the size of the types of
// its value and of the terms of its expressions, a type counted with its
// shared parts once per place as the checker walks it. The policies this
// repository compiles measure at most a few tens of thousands; the type
// checker walks about 50 million nodes a second.
const maxTypeWork = 1 << 22

// checkTypeWork is a compiler stage that runs just before the type checker
// and refuses a policy whose measure passes maxTypeWork.
func checkTypeWork(c *ast.Compiler) *ast.Error {
	m := typeMeasure{rules: map[string][]*ast.Rule{}, sizes: map[string]int64{}}
	var all []*ast.Rule
	for _, mod := range c.Modules {
		ast.WalkRules(mod, func(r *ast.Rule) bool {
			if r.Module == nil {
				return false
			}
			path := r.Path().GroundPrefix().String()
			m.rules[path] = append(m.rules[path], r)
			all = append(all, r)
			return true // else branches are measured with their rule
		})
	}
	var total int64
	for _, r := range all {
		if total = saturate(total + m.ruleWork(r)); total > maxTypeWork {
			return ast.NewError(ast.CompileErr, r.Loc(),
				"rules hold rules that hold others so many times over that their types would take more than %d steps to check: keep such values in data, or build them in fewer levels", maxTypeWork)
		}
	}
	return nil
}

// typeMeasure measures the types the checker would build, from the terms
// that give them: a scalar or a builtin's output is one node (builtins
// declare small types), a collection one more than its elements, a
// reference to a rule the type of that rule's values, a variable the type
// of what binds it. It may count more than the checker builds, never less.
type typeMeasure struct {
	rules map[string][]*ast.Rule // by the ground prefix of their path
	sizes map[string]int64       // the type of the rules at a path, once measured
}

// ruleScope measures one rule: its local variables are unique within it
// once compiled.
type ruleScope struct {
	m    *typeMeasure
	vars map[ast.Var]int64
}

// newRuleScope sizes r's variables. A variable is bound by unification
// with a term, as the output of a call to a function rule (that rule's
// type: every variable the call is given counts it), or as a member of a
// collection (`some y in [r, r]`: the collection's type). A body is
// measured in order, each expression after the comprehensions inside it,
// so that a variable is measured before it is used; a second pass over the
// rule catches a variable used before the expression that binds it.
func (m *typeMeasure) newRuleScope(r *ast.Rule) *ruleScope {
	s := &ruleScope{m: m, vars: map[ast.Var]int64{}}
	for range 2 {
		for x := r; x != nil; x = x.Else {
			s.body(x.Body)
			s.nested(x.Head)
		}
	}
	return s
}

func (s *ruleScope) body(b ast.Body) {
	for _, e := range b {
		s.nested(e)
		s.expr(e)
	}
}

// nested measures the bodies of the comprehensions and every expressions
// in x, outermost first.
func (s *ruleScope) nested(x any) {
	ast.WalkTerms(x, func(t *ast.Term) bool {
		switch c := t.Value.(type) {
		case *ast.ArrayComprehension:
			s.body(c.Body)
			s.nested(c.Term)
		case *ast.SetComprehension:
			s.body(c.Body)
			s.nested(c.Term)
		case *ast.ObjectComprehension:
			s.body(c.Body)
			s.nested(c.Key)
			s.nested(c.Value)
		default:
			return false
		}
		return true
	})
	if e, ok := x.(*ast.Expr); ok {
		if every, ok := e.Terms.(*ast.Every); ok {
			size := s.size(every.Domain)
			s.unify(every.Key, size)
			s.unify(every.Value, size)
			s.body(every.Body)
		}
	}
}

func (s *ruleScope) expr(e *ast.Expr) {
	switch {
	case e.IsEquality() || e.IsAssignment():
		a, b := e.Operand(0), e.Operand(1)
		s.unify(a, s.size(b))
		s.unify(b, s.size(a))
	case e.IsCall():
		ops := e.Operands()
		switch e.Operator().String() {
		case ast.Member.Name, ast.MemberWithKey.Name:
			size := s.size(ops[len(ops)-1])
			for _, op := range ops[:len(ops)-1] {
				s.unify(op, size)
			}
		default:
			// A builtin's output has its declared, small type; a
			// function rule's, the rule's.
			if size := s.m.refType(e.Operator()); size > 0 {
				for _, op := range ops {
					s.unify(op, size)
				}
			}
		}
	}
}

// unify gives t, unified with a value of the type size, that size: a
// variable at least it, the variables of a collection that are not bound
// yet (destructuring) it. The data and input documents are not a rule's
// to bind.
func (s *ruleScope) unify(t *ast.Term, size int64) {
	if t == nil {
		return
	}
	if v, ok := t.Value.(ast.Var); ok {
		if !v.Equal(ast.DefaultRootDocument.Value) && !v.Equal(ast.InputRootDocument.Value) {
			s.vars[v] = max(s.vars[v], size)
		}
		return
	}
	switch t.Value.(type) {
	case *ast.Array, ast.Object, ast.Set:
		ast.WalkVars(t, func(v ast.Var) bool {
			if _, bound := s.vars[v]; !bound && !v.Equal(ast.DefaultRootDocument.Value) && !v.Equal(ast.InputRootDocument.Value) {
				s.vars[v] = max(1, size)
			}
			return false
		})
	}
}

// size is the size of t's type.
func (s *ruleScope) size(t *ast.Term) int64 {
	switch v := t.Value.(type) {
	case ast.Var:
		return max(1, s.vars[v])
	case ast.Ref:
		size := max(1, s.m.refType(v))
		if head, ok := v[0].Value.(ast.Var); ok {
			size = saturate(size + s.vars[head])
		}
		return size
	case *ast.Array, ast.Object, ast.Set:
		size := int64(1)
		ast.WalkTerms(v, func(e *ast.Term) bool {
			size = saturate(size + s.size(e))
			return true // s.size measured what is inside e
		})
		return size
	case *ast.ArrayComprehension:
		return saturate(1 + s.size(v.Term))
	case *ast.SetComprehension:
		return saturate(1 + s.size(v.Term))
	case *ast.ObjectComprehension:
		return saturate(1 + s.size(v.Key) + s.size(v.Value))
	}
	return 1
}

// ruleWork is the size of the types of r's values (else branches
// included) and of the terms of all its expressions.
func (m *typeMeasure) ruleWork(r *ast.Rule) int64 {
	s := m.newRuleScope(r)
	work := s.valueType(r)
	ast.WalkExprs(r, func(e *ast.Expr) bool {
		switch terms := e.Terms.(type) {
		case *ast.Term:
			work = saturate(work + s.size(terms))
		case []*ast.Term:
			for _, t := range terms {
				work = saturate(work + s.size(t))
			}
		}
		return false
	})
	return work
}

// valueType is the size of the type of r's key and value, else branches
// included.
func (s *ruleScope) valueType(r *ast.Rule) int64 {
	var size int64
	for ; r != nil; r = r.Else {
		if r.Head.Key != nil {
			size = saturate(size + s.size(r.Head.Key))
		}
		if r.Head.Value != nil {
			size = saturate(size + s.size(r.Head.Value))
		}
	}
	return size
}

// refType is the size of the type of the rules ref names, by its longest
// prefix that is a rule's path, or 0 when it names none.
func (m *typeMeasure) refType(ref ast.Ref) int64 {
	for n := len(ref); n > 0; n-- {
		prefix := ref[:n]
		if !prefix.IsGround() {
			continue
		}
		path := prefix.String()
		rules, ok := m.rules[path]
		if !ok {
			continue
		}
		if size, ok := m.sizes[path]; ok {
			return size
		}
		// CheckRecursion has refused cycles; count a reference back to a
		// rule being measured as one node.
		m.sizes[path] = 1
		var size int64
		for _, r := range rules {
			size = saturate(size + m.newRuleScope(r).valueType(r))
		}
		m.sizes[path] = size
		return size
	}
	return 0
}

// saturate keeps a measure from overflowing: two saturated measures and a
// node still sum below the int64 limit.
func saturate(n int64) int64 { return min(n, 1<<61) }

// typeWorkStage is checkTypeWork as a compiler stage.
func typeWorkStage() ast.CompilerStageDefinition {
	return ast.CompilerStageDefinition{
		Name:       "agentsigna.CheckTypeWork",
		MetricName: "compile_stage_agentsigna_check_type_work",
		Stage:      checkTypeWork,
	}
}
