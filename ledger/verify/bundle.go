package verify

import (
	"encoding/binary"
	"fmt"
)

// MarshalEntryBundle encodes entries as a c2sp.org/tlog-tiles entry bundle.
// It fails (ErrInvalidBundle) on more than 256 entries or an entry longer
// than 65,535 bytes, which the format cannot represent.
//
// SPEC: c2sp.org/tlog-tiles — "Log entries": a sequence of big-endian
// uint16 length-prefixed entries.
func MarshalEntryBundle(entries [][]byte) ([]byte, error) {
	if len(entries) > FullTileWidth {
		return nil, fmt.Errorf("%w: %d entries exceeds %d", ErrInvalidBundle, len(entries), FullTileWidth)
	}
	n := 0
	for i, e := range entries {
		if len(e) > MaxEntrySize {
			return nil, fmt.Errorf("%w: entry %d is %d bytes, more than %d", ErrInvalidBundle, i, len(e), MaxEntrySize)
		}
		n += 2 + len(e)
	}
	b := make([]byte, 0, n)
	for _, e := range entries {
		b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
		b = append(b, e...)
	}
	return b, nil
}

// ParseEntryBundle decodes a c2sp.org/tlog-tiles entry bundle. It rejects a
// truncated length or entry, and more than 256 entries. The entries alias b.
// Callers check that the count matches the bundle's width.
func ParseEntryBundle(b []byte) ([][]byte, error) {
	var entries [][]byte
	for len(b) > 0 {
		if len(entries) == FullTileWidth {
			return nil, fmt.Errorf("%w: more than %d entries", ErrInvalidBundle, FullTileWidth)
		}
		if len(b) < 2 {
			return nil, fmt.Errorf("%w: truncated length after entry %d", ErrInvalidBundle, len(entries))
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b)-2 < n {
			return nil, fmt.Errorf("%w: entry %d needs %d bytes, %d left", ErrInvalidBundle, len(entries), n, len(b)-2)
		}
		entries = append(entries, b[2:2+n:2+n])
		b = b[2+n:]
	}
	return entries, nil
}
