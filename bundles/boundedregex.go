package bundles

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Bounds on one call of a regex builtin. Go's regular expressions run in
// time linear in the text, times the size of the compiled program (about
// 10 ns per instruction and byte at worst on a 2-core machine, so
// maxRegexWork is about 80 ms), times the capture groups when the builtin
// asks for submatches (Go copies them on every step). Compiling costs
// about 450 bytes per instruction (a 33 KB pattern of "[a-z]{1000}"
// compiles to 3 million instructions: 1.3 s and 1.3 GiB), a character
// class keeps its ranges (16,000 "\pL" were 654 MiB; a one-pass program
// copies them, up to 32 bytes a range), and OPA keeps the last 100 patterns
// compiled: maxRegexInstructions and maxRegexRanges keep each to a few
// milliseconds and at most 4 MiB. The
// builtins that return every match, split or replacement build one value
// per match, so their text is bounded too (an empty pattern over 8 MB:
// 2.5 GiB), and a replacement's output (`$1` expanded 16,384 times over
// 64 KiB: 5.3 GiB). A pattern that checks an identifier, an IBAN or an
// e-mail address is tens to hundreds of instructions.
const (
	maxRegexInstructions = 1 << 14
	maxRegexWork         = 1 << 23 // instructions × (capture groups + 1) × (text bytes + 1)
	maxRegexText         = 1 << 16 // for the builtins that return every match
	maxRegexOutput       = 1 << 26 // regex.replace: (text + 1) × (replacement + 1)
	maxRegexPatternBytes = 1 << 12 // refused before it is parsed
	maxRegexRanges       = 1 << 17 // character class ranges, each repetition counted
)

// regexCall says which operands of a regex builtin are the pattern and
// the text it runs on, whether it returns every match, and whether it asks
// for submatches.
type regexCall struct {
	pattern, text int
	every         bool
	submatches    bool
}

var regexBuiltins = map[string]regexCall{
	ast.RegexMatch.Name:                 {pattern: 0, text: 1},
	ast.RegexTemplateMatch.Name:         {pattern: 0, text: 1}, // the pattern is a template
	ast.RegexSplit.Name:                 {pattern: 0, text: 1, every: true},
	ast.RegexFind.Name:                  {pattern: 0, text: 1, every: true},
	ast.RegexFindAllStringSubmatch.Name: {pattern: 0, text: 1, every: true, submatches: true},
	ast.RegexReplace.Name:               {pattern: 1, text: 0, every: true, submatches: true},
}

// check returns the bound of a regex builtin: before OPA compiles the
// pattern, the program it compiles to and the work of running it on the
// text must be within the bounds. Operands that are not strings, or a
// pattern that does not parse, are left to OPA's own errors.
func (call regexCall) check(name string) bound {
	template := name == ast.RegexTemplateMatch.Name
	replace := name == ast.RegexReplace.Name
	return func(operands []*ast.Term) error {
		pattern, ok1 := operands[call.pattern].Value.(ast.String)
		text, ok2 := operands[call.text].Value.(ast.String)
		if !ok1 || !ok2 {
			return nil
		}
		if call.every && len(text) > maxRegexText {
			return fmt.Errorf("a text of %d bytes is longer than one call may take (%d)", len(text), maxRegexText)
		}
		if replace {
			if repl, ok := operands[2].Value.(ast.String); ok {
				if out := int64(len(text)+1) * int64(len(repl)+1); out > maxRegexOutput {
					return fmt.Errorf("replacing in %d bytes with %d bytes could build more than one call may (%d)", len(text), len(repl), maxRegexOutput)
				}
			}
		}
		var m regexMeasure
		var ok bool
		if template {
			m, ok = templateMeasure(operands, string(pattern))
		} else {
			m, ok = patternMeasure(string(pattern))
		}
		if !ok {
			return nil
		}
		if !call.submatches {
			m.captures = 0
		}
		return checkRegexCost(m, len(text))
	}
}

// regexMeasure is what a pattern costs: the instructions it compiles to,
// its capture groups, and the ranges its character classes hold; or that
// it is longer than maxRegexPatternBytes, unparsed.
type regexMeasure struct {
	size, captures, ranges int64
	tooLong                bool
}

func checkRegexCost(m regexMeasure, textBytes int) error {
	if m.tooLong {
		return fmt.Errorf("the pattern is longer than %d bytes", maxRegexPatternBytes)
	}
	if m.size > maxRegexInstructions {
		return fmt.Errorf("the pattern compiles to about %d instructions, more than %d", m.size, maxRegexInstructions)
	}
	if m.ranges > maxRegexRanges {
		return fmt.Errorf("the pattern's character classes hold about %d ranges, more than %d", m.ranges, maxRegexRanges)
	}
	if work := m.size * (m.captures + 1) * int64(textBytes+1); work > maxRegexWork {
		return fmt.Errorf("a pattern of about %d instructions and %d groups over %d bytes of text is more work (%d) than one call may do (%d)", m.size, m.captures, textBytes, work, maxRegexWork)
	}
	return nil
}

// patternMeasures remembers patterns already measured: a policy usually
// matches a few patterns many times.
var patternMeasures struct {
	sync.Mutex
	m map[string]regexMeasure
}

const patternMeasuresKept = 1024

// patternMeasure returns Go's estimate of the size of the program pattern
// compiles to, and its capture groups, or false when it does not parse
// (OPA reports that). A pattern longer than maxRegexPatternBytes measures
// as too large without being parsed.
func patternMeasure(pattern string) (regexMeasure, bool) {
	if len(pattern) > maxRegexPatternBytes {
		return regexMeasure{tooLong: true}, true
	}
	return measurePattern(pattern)
}

// measurePattern is patternMeasure without the bound on the pattern's
// length (for the patterns a template builds, whose template is bounded).
func measurePattern(pattern string) (regexMeasure, bool) {
	patternMeasures.Lock()
	m, ok := patternMeasures.m[pattern]
	patternMeasures.Unlock()
	if ok {
		return m, true
	}
	// regexp.Compile parses with syntax.Perl. Parsing is linear in the
	// pattern: repetitions stay one node until Simplify expands them.
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return regexMeasure{}, false
	}
	size, ranges := progSize(re)
	m = regexMeasure{size: size, captures: int64(re.MaxCap()), ranges: ranges}
	patternMeasures.Lock()
	if patternMeasures.m == nil || len(patternMeasures.m) >= patternMeasuresKept {
		patternMeasures.m = make(map[string]regexMeasure, patternMeasuresKept)
	}
	patternMeasures.m[pattern] = m
	patternMeasures.Unlock()
	return m, true
}

// progSize estimates the instructions re compiles to, as Go's parser does
// for its own size limit (regexp/syntax calcSize), saturating instead of
// overflowing, and the ranges its character classes hold (each repeated
// class holds its own).
func progSize(re *syntax.Regexp) (size, ranges int64) {
	const ceiling = 1 << 40
	switch re.Op {
	case syntax.OpLiteral:
		size = int64(len(re.Rune))
	case syntax.OpCharClass:
		size, ranges = 1, int64(len(re.Rune)/2)
	case syntax.OpCapture, syntax.OpStar:
		size, ranges = progSize(re.Sub[0])
		size += 2
	case syntax.OpPlus, syntax.OpQuest:
		size, ranges = progSize(re.Sub[0])
		size++
	case syntax.OpConcat, syntax.OpAlternate:
		for _, sub := range re.Sub {
			s, r := progSize(sub)
			size, ranges = min(ceiling, size+s), min(ceiling, ranges+r)
		}
		if re.Op == syntax.OpAlternate && len(re.Sub) > 1 {
			size += int64(len(re.Sub)) - 1
		}
	case syntax.OpRepeat:
		sub, r := progSize(re.Sub[0])
		switch {
		case re.Max == -1 && re.Min == 0:
			size, ranges = 2+sub, r
		case re.Max == -1:
			size, ranges = 1+int64(re.Min)*sub, int64(re.Min+1)*r
		default:
			size, ranges = int64(re.Max)*sub+int64(re.Max-re.Min), int64(re.Max)*r
		}
	}
	return min(ceiling, max(1, size)), min(ceiling, ranges)
}

// templateMeasure measures what regex.template_match compiles from a
// template (OPA's generateRegexTemplate, forked from gorilla/mux): each
// part inside the delimiters on its own, as "^part$", on every call, then
// the whole, the text outside the delimiters quoted and each part a group.
// OPA compiles the parts in order and stops at the first that does not
// parse, so the parts measured before a failure still count. Delimiters
// that are not one byte each, or do not balance, are left to OPA's errors
// (it checks them before compiling anything).
func templateMeasure(operands []*ast.Term, template string) (regexMeasure, bool) {
	start, ok1 := operands[2].Value.(ast.String)
	end, ok2 := operands[3].Value.(ast.String)
	if !ok1 || !ok2 || len(start) != 1 || len(end) != 1 {
		return regexMeasure{}, false
	}
	if len(template) > maxRegexPatternBytes {
		return regexMeasure{tooLong: true}, true
	}
	var parts regexMeasure // what compiling every part costs, together
	measured := false
	failed := func() (regexMeasure, bool) { return parts, measured }
	var pattern strings.Builder
	pattern.WriteString("^")
	level, open, last := 0, 0, 0
	for i := 0; i < len(template); i++ {
		switch template[i] {
		case start[0]:
			if level++; level == 1 {
				open = i
			}
		case end[0]:
			if level--; level < 0 {
				return regexMeasure{}, false // OPA refuses it before compiling
			}
			if level == 0 {
				part := template[open+1 : i]
				fmt.Fprintf(&pattern, "%s(%s)", regexp.QuoteMeta(template[last:open]), part)
				m, ok := measurePattern("^" + part + "$")
				if !ok {
					return failed()
				}
				parts.size, parts.ranges, measured = parts.size+m.size, parts.ranges+m.ranges, true
				last = i + 1
			}
		}
	}
	if level != 0 {
		return regexMeasure{}, false
	}
	pattern.WriteString(regexp.QuoteMeta(template[last:]))
	pattern.WriteString("$")
	m, ok := measurePattern(pattern.String())
	if !ok {
		return failed()
	}
	return regexMeasure{size: m.size + parts.size, ranges: m.ranges + parts.ranges}, true
}
