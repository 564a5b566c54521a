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

// formatPath renders segments as "$.a.b[2][\"odd key\"]".
func formatPath(segs []segment) string {
	var b strings.Builder
	b.WriteString("$")
	for _, s := range segs {
		if b.Len() >= maxPathBytes {
			b.WriteString("...")
			break
		}
		if s.isIndex {
			b.WriteString("[")
			b.WriteString(strconv.Itoa(s.index))
			b.WriteString("]")
			continue
		}
		writeKey(&b, s.key)
	}
	return b.String()
}

func writeKey(b *strings.Builder, key string) {
	short, truncated := truncate(key, maxKeyBytes)
	if !truncated && isIdentifier(short) {
		b.WriteString(".")
		b.WriteString(short)
		return
	}
	quoted := strconv.QuoteToASCII(short)
	if truncated {
		quoted = quoted[:len(quoted)-1] + `..."`
	}
	b.WriteString("[")
	b.WriteString(quoted)
	b.WriteString("]")
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
