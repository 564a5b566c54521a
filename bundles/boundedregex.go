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
// time linear in the text, times the size of the compiled program: about
// 10 ns per instruction and byte in the worst case on a 2-core machine, so
// MaxRegexWork is about 80 ms. Compiling costs about 450 bytes per
// instruction (a 33 KB pattern of "[a-z]{1000}" compiles to 3 million
// instructions: 1.3 s and 1.3 GiB), so MaxRegexInstructions keeps it to a
// few milliseconds. A pattern that checks an identifier, an IBAN or an
// e-mail address is tens to hundreds of instructions.
const (
	MaxRegexInstructions = 1 << 14
	MaxRegexWork         = 1 << 23 // instructions × (text bytes + 1)
	maxRegexPatternBytes = 1 << 16 // refused before it is parsed
)

// regexCall says which operands of a regex builtin are the pattern and
// the text it runs on.
type regexCall struct{ pattern, text int }

var regexBuiltins = map[string]regexCall{
	ast.RegexMatch.Name:                 {0, 1},
	ast.RegexSplit.Name:                 {0, 1},
	ast.RegexFind.Name:                  {0, 1},
	ast.RegexFindAllStringSubmatch.Name: {0, 1},
	ast.RegexReplace.Name:               {1, 0},
	ast.RegexTemplateMatch.Name:         {0, 1}, // the pattern is a template
}

// check returns the bound of a regex builtin: before OPA compiles the
// pattern, the program it compiles to and the work of running it on the
// text must be within the bounds. Operands that are not strings, or a
// pattern that does not parse, are left to OPA's own errors.
func (call regexCall) check(template bool) bound {
	return func(operands []*ast.Term) error {
		pattern, ok1 := operands[call.pattern].Value.(ast.String)
		text, ok2 := operands[call.text].Value.(ast.String)
		if !ok1 || !ok2 {
			return nil
		}
		var size int64
		var ok bool
		if template {
			size, ok = templateSize(operands, string(pattern))
		} else {
			size, ok = patternSize(string(pattern))
		}
		if !ok {
			return nil
		}
		return checkRegexCost(size, len(text))
	}
}

func checkRegexCost(size int64, textBytes int) error {
	if size > MaxRegexInstructions {
		return fmt.Errorf("the pattern compiles to about %d instructions, more than %d", size, MaxRegexInstructions)
	}
	if work := size * int64(textBytes+1); work > MaxRegexWork {
		return fmt.Errorf("a pattern of about %d instructions over %d bytes of text is more work (%d) than one call may do (%d)", size, textBytes, work, MaxRegexWork)
	}
	return nil
}

// patternSizes remembers the size of patterns already measured: a policy
// usually matches a few patterns many times.
var patternSizes struct {
	sync.Mutex
	m map[string]int64
}

const patternSizesKept = 1024

// patternSize returns Go's estimate of the size of the program pattern
// compiles to, or false when it does not parse (OPA reports that). A
// pattern longer than maxRegexPatternBytes measures as too large without
// being parsed.
func patternSize(pattern string) (int64, bool) {
	if len(pattern) > maxRegexPatternBytes {
		return MaxRegexInstructions + 1, true
	}
	patternSizes.Lock()
	size, ok := patternSizes.m[pattern]
	patternSizes.Unlock()
	if ok {
		return size, true
	}
	// regexp.Compile parses with syntax.Perl. Parsing is linear in the
	// pattern: repetitions stay one node until Simplify expands them.
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return 0, false
	}
	size = progSize(re)
	patternSizes.Lock()
	if patternSizes.m == nil || len(patternSizes.m) >= patternSizesKept {
		patternSizes.m = make(map[string]int64, patternSizesKept)
	}
	patternSizes.m[pattern] = size
	patternSizes.Unlock()
	return size, true
}

// progSize estimates the instructions re compiles to, as Go's parser does
// for its own size limit (regexp/syntax calcSize), saturating instead of
// overflowing.
func progSize(re *syntax.Regexp) int64 {
	const ceiling = 1 << 40
	var size int64
	switch re.Op {
	case syntax.OpLiteral:
		size = int64(len(re.Rune))
	case syntax.OpCapture, syntax.OpStar:
		size = 2 + progSize(re.Sub[0])
	case syntax.OpPlus, syntax.OpQuest:
		size = 1 + progSize(re.Sub[0])
	case syntax.OpConcat, syntax.OpAlternate:
		for _, sub := range re.Sub {
			size = min(ceiling, size+progSize(sub))
		}
		if re.Op == syntax.OpAlternate && len(re.Sub) > 1 {
			size += int64(len(re.Sub)) - 1
		}
	case syntax.OpRepeat:
		sub := progSize(re.Sub[0])
		switch {
		case re.Max == -1 && re.Min == 0:
			size = 2 + sub
		case re.Max == -1:
			size = 1 + int64(re.Min)*sub
		default:
			size = int64(re.Max)*sub + int64(re.Max-re.Min)
		}
	}
	return min(ceiling, max(1, size))
}

// templateSize measures the pattern regex.template_match builds from a
// template: the text outside the delimiters quoted, each part inside them a
// pattern of its own (OPA's generateRegexTemplate, forked from gorilla/mux),
// which OPA also compiles on its own. Delimiters that are not one byte each,
// or do not balance, are left to OPA's errors.
func templateSize(operands []*ast.Term, template string) (int64, bool) {
	start, ok1 := operands[2].Value.(ast.String)
	end, ok2 := operands[3].Value.(ast.String)
	if !ok1 || !ok2 || len(start) != 1 || len(end) != 1 {
		return 0, false
	}
	if len(template) > maxRegexPatternBytes {
		return MaxRegexInstructions + 1, true
	}
	var pattern strings.Builder
	pattern.WriteString("^")
	level, open, last := 0, 0, 0
	var largest int64
	for i := 0; i < len(template); i++ {
		switch template[i] {
		case start[0]:
			if level++; level == 1 {
				open = i
			}
		case end[0]:
			if level--; level < 0 {
				return 0, false
			}
			if level == 0 {
				part := template[open+1 : i]
				fmt.Fprintf(&pattern, "%s(%s)", regexp.QuoteMeta(template[last:open]), part)
				// OPA compiles each part on its own too (^part$).
				size, ok := patternSize(part)
				if !ok {
					return 0, false
				}
				largest = max(largest, size)
				last = i + 1
			}
		}
	}
	if level != 0 {
		return 0, false
	}
	pattern.WriteString(regexp.QuoteMeta(template[last:]))
	pattern.WriteString("$")
	size, ok := patternSize(pattern.String())
	return max(size, largest), ok
}
