package migrations

import (
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
