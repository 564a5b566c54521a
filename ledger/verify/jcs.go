package verify

// appendJCSString appends s as a JSON string serialized as RFC 8785 requires.
// s must be valid UTF-8 (checked by the caller).
//
// SPEC: RFC 8785 §3.2.2.2 — only '"', '\\' and U+0000–U+001F are escaped;
// U+0008, U+0009, U+000A, U+000C and U+000D use their two-character forms,
// the other control characters \u00xx with lower-case hex. Everything else,
// including '<', '>', '&', U+2028, U+2029 and all non-ASCII, is written as
// is (unlike encoding/json, which escapes those).
func appendJCSString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		start = i + 1
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			const hex = "0123456789abcdef"
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// jcsStringLen is len(appendJCSString(nil, s)).
func jcsStringLen(s string) int {
	n := 2 + len(s)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\' || c == '\b' || c == '\t' || c == '\n' || c == '\f' || c == '\r':
			n++
		case c < 0x20:
			n += 5
		}
	}
	return n
}
