package verify

import (
	"bytes"
	"errors"
	"testing"
)

func TestEntryBundle(t *testing.T) {
	entries := [][]byte{[]byte("a"), {}, bytes.Repeat([]byte("z"), MaxEntrySize)}
	b, err := MarshalEntryBundle(entries)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte{0, 1, 'a', 0, 0, 0xff, 0xff, 'z'}) || len(b) != 3*2+1+MaxEntrySize {
		t.Fatalf("bundle %x…", b[:8])
	}
	back, err := ParseEntryBundle(b)
	if err != nil || !equalHashes(back, entries) {
		t.Fatalf("ParseEntryBundle: %v", err)
	}
	full := make([][]byte, FullTileWidth)
	for i := range full {
		full[i] = leafData(uint64(i))
	}
	b, err = MarshalEntryBundle(full)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := ParseEntryBundle(b); err != nil || len(back) != FullTileWidth {
		t.Fatalf("full bundle: %d, %v", len(back), err)
	}

	for name, bad := range map[string][]byte{
		"dangling byte":    {0},
		"truncated entry":  {0, 3, 'a', 'b'},
		"257 entries":      append(bytes.Clone(b), 0, 0),
		"trailing garbage": {0, 1, 'a', 7},
	} {
		if _, err := ParseEntryBundle(bad); !errors.Is(err, ErrInvalidBundle) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := MarshalEntryBundle(append(full, []byte("x"))); !errors.Is(err, ErrInvalidBundle) {
		t.Errorf("257 entries: %v", err)
	}
	if _, err := MarshalEntryBundle([][]byte{make([]byte, MaxEntrySize+1)}); !errors.Is(err, ErrInvalidBundle) {
		t.Errorf("entry too long: %v", err)
	}
}
