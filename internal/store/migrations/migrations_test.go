package migrations

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestEverySetListsInOrder(t *testing.T) {
	for _, set := range []Set{SQLitePlatform, SQLiteTenant, Postgres} {
		ms, err := List(set)
		if err != nil {
			t.Fatalf("%s: %v", set, err)
		}
		if len(ms) == 0 {
			t.Fatalf("%s: no migrations", set)
		}
		for i, m := range ms {
			if m.Version != i+1 || strings.TrimSpace(m.SQL) == "" {
				t.Errorf("%s: migration %d = %q (version %d)", set, i, m.Name, m.Version)
			}
		}
		latest, err := Latest(set)
		if err != nil || latest != len(ms) {
			t.Errorf("%s: Latest = %d, %v", set, latest, err)
		}
	}
	if _, err := List("nope"); err == nil {
		t.Error("unknown set listed")
	}
}

// Every migration carries the digest of its text, and CheckApplied finds
// an applied version whose recorded digest differs, or is missing.
func TestDigests(t *testing.T) {
	ms, err := List(SQLiteTenant)
	if err != nil {
		t.Fatal(err)
	}
	m := ms[0]
	if sum := sha256.Sum256([]byte(m.SQL)); m.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("%s: SHA256 %s is not the digest of its SQL", m.Name, m.SHA256)
	}
	if crlf := strings.ReplaceAll(m.SQL, "\n", "\r\n"); digest([]byte(crlf)) != m.SHA256 {
		t.Fatal("a CRLF checkout of the same migration has another digest")
	}
	for _, tc := range []struct {
		applied map[int]string
		ok      bool
	}{
		{map[int]string{}, true},
		{map[int]string{m.Version: m.SHA256}, true},
		{map[int]string{m.Version: m.SHA256, 999: "from a newer binary: not this check's"}, true},
		{map[int]string{m.Version: strings.ToUpper(m.SHA256)}, false},
		{map[int]string{m.Version: ""}, false},
	} {
		if err := CheckApplied(SQLiteTenant, tc.applied); (err == nil) != tc.ok {
			t.Errorf("CheckApplied(%v) = %v", tc.applied, err)
		}
	}
}
