package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// frame is one open object or array during the pre-pass.
type frame struct {
	object  bool
	wantKey bool   // object: the next string token is a key
	key     string // object: the key whose value is being read
	index   int    // array: the index of the element being read
	exact   map[string]struct{}
	folded  map[string]struct{}
}

// scanner is the token pre-pass: the depth limit, keys that repeat up to
// case, lone surrogate escapes, a top level that is not one object, and
// anything after it are refused here, on tokens, before anything is
// decoded, each with its path.
type scanner struct {
	data     []byte
	maxDepth int
	stack    []*frame
}

func (s *scanner) run() error {
	dec := json.NewDecoder(bytes.NewReader(s.data))
	// Numbers stay text: the pre-pass must not fail on 1e400.
	dec.UseNumber()
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return s.tokenError(err, start)
		}
		if len(s.stack) == 0 {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return newError(ErrNotObject, "$", start)
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			if err := s.delim(t, start); err != nil {
				return err
			}
			if len(s.stack) == 0 {
				return s.trailing(dec)
			}
		case string:
			if err := s.str(t, start, dec.InputOffset()); err != nil {
				return err
			}
		default:
			s.valueDone()
		}
	}
}

func (s *scanner) delim(d json.Delim, start int64) error {
	switch d {
	case '{', '[':
		if len(s.stack) >= s.maxDepth {
			return newError(ErrTooDeep, s.path(), start)
		}
		s.stack = append(s.stack, &frame{object: d == '{', wantKey: d == '{'})
	default: // '}' or ']': Token has already checked that it matches.
		s.stack = s.stack[:len(s.stack)-1]
		s.valueDone()
	}
	return nil
}

func (s *scanner) str(v string, start, end int64) error {
	if strings.ContainsRune(v, utf8.RuneError) && hasLoneSurrogate(s.literal(start, end)) {
		return newError(ErrInvalidUTF8, s.path(), start)
	}
	top := s.stack[len(s.stack)-1]
	if !top.object || !top.wantKey {
		s.valueDone()
		return nil
	}
	if top.exact == nil {
		top.exact = make(map[string]struct{})
		top.folded = make(map[string]struct{})
	}
	top.key, top.wantKey = v, false
	if _, dup := top.exact[v]; dup {
		return newError(ErrDuplicateKey, s.path(), start)
	}
	f := foldKey(v)
	if _, dup := top.folded[f]; dup {
		return newError(ErrDuplicateKey, s.path(), start)
	}
	top.exact[v], top.folded[f] = struct{}{}, struct{}{}
	return nil
}

// valueDone records that the open container received one complete value.
func (s *scanner) valueDone() {
	if len(s.stack) == 0 {
		return
	}
	top := s.stack[len(s.stack)-1]
	if top.object {
		top.wantKey = true
	} else {
		top.index++
	}
}

// trailing requires the input to end after the top-level value.
func (s *scanner) trailing(dec *json.Decoder) error {
	start := dec.InputOffset()
	if _, err := dec.Token(); err == io.EOF {
		return nil
	}
	return newError(ErrTrailingData, "", start)
}

func (s *scanner) tokenError(err error, start int64) error {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		return newError(ErrSyntax, "", syn.Offset)
	case errors.Is(err, io.EOF) && len(s.stack) == 0:
		return newError(ErrEmpty, "", -1)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return newError(ErrSyntax, "", int64(len(s.data)))
	default:
		// Token only fails with the errors above on an in-memory reader;
		// anything else is still the input's fault, and its text stays out.
		return newError(ErrSyntax, "", start)
	}
}

// path is the JSON path of the value or key being read.
func (s *scanner) path() string {
	segs := make([]segment, 0, len(s.stack))
	for _, f := range s.stack {
		switch {
		case !f.object:
			segs = append(segs, segment{index: f.index, isIndex: true})
		case !f.wantKey:
			segs = append(segs, segment{key: f.key})
		}
	}
	return formatPath(segs)
}

// literal returns the raw string literal of the token read between start and
// end: only whitespace, ':' or ',' precede its opening quote.
func (s *scanner) literal(start, end int64) []byte {
	raw := s.data[start:end]
	if i := bytes.IndexByte(raw, '"'); i >= 0 {
		return raw[i:]
	}
	return nil
}

// foldKey maps every key that encoding/json would match to the same struct
// field to the same string: each rune becomes the smallest rune of its
// simple case-folding orbit, which is what encoding/json's foldName does
// (so "K", "k" and the Kelvin sign U+212A collide, as they do there).
func foldKey(k string) string {
	var b strings.Builder
	b.Grow(len(k))
	for _, r := range k {
		for {
			next := unicode.SimpleFold(r)
			if next <= r {
				r = next
				break
			}
			r = next
		}
		b.WriteRune(r)
	}
	return b.String()
}

// hasLoneSurrogate reports whether a syntactically valid JSON string literal
// has a \u escape of a UTF-16 surrogate that is not half of a valid pair.
func hasLoneSurrogate(lit []byte) bool {
	for i := 0; i < len(lit); i++ {
		if lit[i] != '\\' {
			continue
		}
		i++ // the escaped character
		if i >= len(lit) || lit[i] != 'u' {
			continue
		}
		r, ok := hex4(lit, i+1)
		if !ok {
			return false // not reachable for a literal json accepted
		}
		i += 4 // last hex digit
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		case r >= 0xD800 && r <= 0xDBFF:
			if i+2 < len(lit) && lit[i+1] == '\\' && lit[i+2] == 'u' {
				if lo, ok := hex4(lit, i+3); ok && lo >= 0xDC00 && lo <= 0xDFFF {
					i += 6
					continue
				}
			}
			return true
		}
	}
	return false
}

func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[at : at+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
