package store

import (
	"errors"
	"fmt"
	"testing"
)

// Optional: a wrapped ErrNotFound is no row, any other error stays one,
// and a row found is returned.
func TestOptional(t *testing.T) {
	if got, err := Optional(Agent{ID: "agt_1"}, nil); err != nil || got == nil || got.ID != "agt_1" {
		t.Errorf("found: %v, %v", got, err)
	}
	if got, err := Optional(Agent{}, fmt.Errorf("%w: agent", ErrNotFound)); err != nil || got != nil {
		t.Errorf("not found: %v, %v", got, err)
	}
	if got, err := Optional(Agent{ID: "agt_1"}, ErrUnavailable); !errors.Is(err, ErrUnavailable) || got != nil {
		t.Errorf("failed: %v, %v", got, err)
	}
}
