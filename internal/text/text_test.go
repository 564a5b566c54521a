package text_test

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/agentsigna/agentsigna/internal/text"
)

// Each rule allows what its fields need and refuses the rest, naming the
// first rune it refuses.
func TestRules(t *testing.T) {
	const ok = ""
	for _, tc := range []struct {
		s                 string
		lines, line, name string // the error's words, or ok
	}{
		{"Pay INV-2291", ok, ok, ok},
		{"שלם חשבונית", ok, ok, ok},
		{"ａｌｉｃｅ 😀 é", ok, ok, ok},
		{"see\n\tthe\r\nthread", ok, "line break or tab U+000A", "line break or tab U+000A"},
		{"a\tb", ok, "line break or tab U+0009", "line break or tab U+0009"},
		{"a\u2028b", ok, "line break or tab U+2028", "line break or tab U+2028"},
		{"a\u2029b", ok, "line break or tab U+2029", "line break or tab U+2029"},
		{"שלם\u200f INV", ok, ok, "bidirectional mark U+200F"},
		{"\u200e", ok, ok, "bidirectional mark U+200E"},
		{"\u061c", ok, ok, "bidirectional mark U+061C"},
		{"pay\x00invoice", "control character U+0000", "control character U+0000", "control character U+0000"},
		{"pay\x1binvoice", "control character U+001B", "control character U+001B", "control character U+001B"},
		{"pay\x7f", "control character U+007F", "control character U+007F", "control character U+007F"},
		{"pay\u0085", "control character U+0085", "control character U+0085", "control character U+0085"},
		{"pay \u202eeciovni", "bidirectional control U+202E", "bidirectional control U+202E", "bidirectional control U+202E"},
		{"pay \u2066x\u2069", "bidirectional control U+2066", "bidirectional control U+2066", "bidirectional control U+2066"},
		{"pay \u202ax", "bidirectional control U+202A", "bidirectional control U+202A", "bidirectional control U+202A"},
		{"pay\xffinvoice", "not valid UTF-8", "not valid UTF-8", "not valid UTF-8"},
		{"pay\xe2\x80", "not valid UTF-8", "not valid UTF-8", "not valid UTF-8"},
		{"\ufffd is a real rune", ok, ok, ok},
	} {
		for _, rc := range []struct {
			rule text.Rule
			want string
		}{{text.Lines, tc.lines}, {text.Line, tc.line}, {text.Name, tc.name}} {
			err := rc.rule.Check(tc.s)
			switch {
			case rc.want == ok && err != nil:
				t.Errorf("rule %d refused %q: %v", rc.rule, tc.s, err)
			case rc.want != ok && (err == nil || !strings.Contains(err.Error(), rc.want)):
				t.Errorf("rule %d on %q: %v, want %q", rc.rule, tc.s, err, rc.want)
			}
		}
	}
}

// Fold makes one name of the ways to spell it that read alike, and keeps
// two names two.
func TestFold(t *testing.T) {
	for _, same := range [][2]string{
		{"alice", "Alice"},
		{"alice", " alice\u00a0"},
		{"alice", "ａｌｉｃｅ"},
		{"alice", "al\u200bice"}, // zero-width space
		{"alice", "al\u00adice"}, // soft hyphen
		{"alice", "alice\u200d"}, // zero-width joiner
		{"alice", "a\u2060lice"}, // word joiner
		{"alice", "\ufeffalice"}, // byte order mark
		{"alice", "alice\ufe0f"}, // variation selector
		{"alice", "ali\u034fce"}, // combining grapheme joiner
		{"alice", "alice\u200e"}, // left-to-right mark
		{"straße", "STRASSE"},    // full case folding
		{"é", "e\u0301"},         // composed and decomposed
		{"ﬁle", "file"},          // a ligature
	} {
		if a, b := text.Fold(same[0]), text.Fold(same[1]); a != b {
			t.Errorf("Fold(%q) = %q, Fold(%q) = %q: want one name", same[0], a, same[1], b)
		}
	}
	for _, two := range [][2]string{
		{"alice", "bob"},
		{"alice", "alice2"},
		{"al ice", "alice"}, // a space inside is a letter's worth
		{"alice", "аlice"},  // Cyrillic а: another letter (confusables are not folded)
	} {
		if text.Fold(two[0]) == text.Fold(two[1]) {
			t.Errorf("Fold makes %q and %q one name", two[0], two[1])
		}
	}
}

// Fold reaches its fixed point for every code point, and gives every
// case of a letter (unicode.SimpleFold's orbit) the same form.
func TestFoldIsIdempotent(t *testing.T) {
	bad := 0
	for r := rune(0); r <= unicode.MaxRune && bad < 10; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		once := text.Fold(string(r))
		if twice := text.Fold(once); twice != once {
			t.Errorf("Fold(%U) = %q, Fold of that %q", r, once, twice)
			bad++
		}
		if other := unicode.SimpleFold(r); other != r && text.Fold(string(other)) != once {
			t.Errorf("Fold(%U) = %q, Fold(%U) = %q: one letter, two names", r, once, other, text.Fold(string(other)))
			bad++
		}
	}
}

// A name names something: a letter or a digit, once folded.
func TestNamed(t *testing.T) {
	for s, want := range map[string]bool{
		"alice": true, "42": true, "ꮳ": true, "Ω": true, "bob smith": true,
		"": false, " ": false, "\u200b\u2060": false, "\u2800": false, "\u0301": false, "—": false, "***": false, "\ufe0f": false,
	} {
		if got := text.Named(s); got != want {
			t.Errorf("Named(%q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzFold(f *testing.F) {
	for _, s := range []string{"alice", "Ａｌｉｃｅ", "al\u200bice", "Ꮳꮳ", "ﬁ ß ǅ", "\u0345\u0399", "a\u0301\u0301", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		once := text.Fold(s)
		if twice := text.Fold(once); twice != once {
			t.Errorf("Fold(%q) = %q, Fold of that %q", s, once, twice)
		}
		text.Named(s)
		for _, r := range []text.Rule{text.Lines, text.Line, text.Name} {
			if err := r.Check(s); err == nil && !utf8.ValidString(s) {
				t.Errorf("rule %d took %q, not UTF-8", r, s)
			}
		}
	})
}
