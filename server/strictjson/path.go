package strictjson

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Keys are client data: a path shows at most maxKeyBytes of each key and at
// most maxPathBytes in all, escaped to printable ASCII, so an error message
// can neither carry a long value nor inject control characters into a log.
const (
	maxKeyBytes  = 32
	maxPathBytes = 256
)

// segment is one step of a JSON path: an object key or an array index.
type segment struct {
	key     string
	index   int
	isIndex bool
}

// formatPath renders segments as "$.a.b[2][\"odd key\"]", cut short with
// "..." before a segment that would take it past maxPathBytes.
func formatPath(segs []segment) string {
	var b strings.Builder
	b.WriteString("$")
	for _, s := range segs {
		var seg string
		if s.isIndex {
			seg = "[" + strconv.Itoa(s.index) + "]"
		} else {
			seg = keySegment(s.key)
		}
		if b.Len()+len(seg) > maxPathBytes {
			b.WriteString("...")
			break
		}
		b.WriteString(seg)
	}
	return b.String()
}

func keySegment(key string) string {
	short, truncated := truncate(key, maxKeyBytes)
	if !truncated && isIdentifier(short) {
		return "." + short
	}
	quoted := strconv.QuoteToASCII(short)
	if truncated {
		quoted = quoted[:len(quoted)-1] + `..."`
	}
	return "[" + quoted + "]"
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n], true
}

func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
