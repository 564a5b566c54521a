package store

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewIDShapeAndOrder(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	var ids []string
	seen := map[string]bool{}
	for i := range 2000 {
		// Across millisecond, second and year boundaries, a few per ms.
		at := t0.Add(time.Duration(i/3) * time.Millisecond)
		if i >= 1000 {
			at = at.AddDate(i-999, 0, 0)
		}
		id := newIDAt(PrefixDecision, at)
		if err := CheckID(PrefixDecision, id); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if seen[id] {
			t.Fatalf("%s made twice", id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	// Ids sort as their times: compare the time parts, since ids of one
	// millisecond are ordered by their random parts.
	timePart := func(id string) string { return id[len("dec_"):][:idTimeLen] }
	if !slices.IsSortedFunc(ids, func(a, b string) int { return strings.Compare(timePart(a), timePart(b)) }) {
		t.Fatal("ids do not sort in the order they were made")
	}
	a, b := NewID(PrefixDecision), NewID(PrefixDecision)
	if a == b || a[:len("dec_")+6] != b[:len("dec_")+6] {
		t.Fatalf("two ids made together: %s, %s", a, b)
	}
	if err := CheckID(PrefixReceipt, a); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a decision id accepted as a receipt id: %v", err)
	}
}
