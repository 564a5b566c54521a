package verify

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

const (
	// TileHeight is the number of tree levels a tile spans.
	TileHeight = 8
	// FullTileWidth is the number of hashes in a full tile, and of entries in a
	// full entry bundle.
	FullTileWidth = 1 << TileHeight
	// MaxTileLevel is the largest tile level c2sp.org/tlog-tiles allows.
	MaxTileLevel = 63
)

// TilePath returns the c2sp.org/tlog-tiles path of the tile at tile level
// level and index index holding width hashes: "tile/<L>/<N>" for a full tile
// (width 256), "tile/<L>/<N>.p/<W>" for a partial one. It panics if level >
// 63 or width is not in [1, 256]: those are programming errors, see
// [TileWidth] for the width of a tile in a tree of a given size.
//
// SPEC: c2sp.org/tlog-tiles — "Merkle Tree" (path syntax).
func TilePath(level, index, width uint64) string {
	if level > MaxTileLevel {
		panic(fmt.Sprintf("verify.TilePath: level %d > %d", level, MaxTileLevel))
	}
	return "tile/" + strconv.FormatUint(level, 10) + "/" + tileN(index, width)
}

// EntriesPath returns the c2sp.org/tlog-tiles path of the entry bundle with
// index index holding width entries: "tile/entries/<N>[.p/<W>]". It panics if
// width is not in [1, 256].
//
// SPEC: c2sp.org/tlog-tiles — "Log entries".
func EntriesPath(index, width uint64) string {
	return "tile/entries/" + tileN(index, width)
}

// tileN encodes <N>[.p/<W>]: N in 3-digit groups, all but the last
// prefixed with "x" (1234067 → x001/x234/067).
func tileN(index, width uint64) string {
	if width == 0 || width > FullTileWidth {
		panic(fmt.Sprintf("verify: tile width %d not in [1, %d]", width, FullTileWidth))
	}
	var groups []string
	for {
		groups = append(groups, fmt.Sprintf("%03d", index%1000))
		index /= 1000
		if index == 0 {
			break
		}
	}
	var b strings.Builder
	for i := len(groups) - 1; i > 0; i-- {
		b.WriteString("x" + groups[i] + "/")
	}
	b.WriteString(groups[0])
	if width < FullTileWidth {
		b.WriteString(".p/" + strconv.FormatUint(width, 10))
	}
	return b.String()
}

// TileWidth returns the number of hashes in the tile at tile level level and
// index index of a tree of treeSize leaves (the same for entry bundles with
// level 0): 256 for a full tile, 1–255 for the partial one, 0 if the tile
// does not exist at that size.
//
// SPEC: c2sp.org/tlog-tiles — "Partial Tiles": the partial tile at level l
// has floor(s / 256**l) mod 256 entries.
func TileWidth(level, index, treeSize uint64) uint64 {
	if level > MaxTileLevel {
		return 0
	}
	shift := TileHeight * level
	if shift >= 64 {
		return 0
	}
	atLevel := treeSize >> shift // hashes that exist at tree level 8·level
	switch full := atLevel / FullTileWidth; {
	case index < full:
		return FullTileWidth
	case index == full:
		return atLevel % FullTileWidth
	}
	return 0
}

// ParseTilePath parses a c2sp.org/tlog-tiles path, "tile/<L>/<N>[.p/<W>]" or
// "tile/entries/<N>[.p/<W>]" (level -1), and returns width 256 for a full
// tile. It accepts only the canonical encoding TilePath and EntriesPath
// produce: no leading slash, L without leading zeros and at most 63, N in
// exactly-3-digit groups with "x" on all but the last and no leading "x000"
// group, W in 1–255 without leading zeros, and nothing after. Errors wrap
// ErrInvalidTilePath.
func ParseTilePath(p string) (level int, index, width uint64, err error) {
	bad := func(why string) (int, uint64, uint64, error) {
		return 0, 0, 0, fmt.Errorf("%w: %q: %s", ErrInvalidTilePath, p, why)
	}
	rest, ok := strings.CutPrefix(p, "tile/")
	if !ok {
		return bad(`does not start with "tile/"`)
	}
	l, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return bad("no tile index")
	}
	if l == "entries" {
		level = -1
	} else {
		n, ok := ParseDecimal(l)
		if !ok || n > MaxTileLevel {
			return bad("level is not a decimal in 0-63")
		}
		level = int(n)
	}
	width = FullTileWidth
	if n, w, partial := strings.Cut(rest, ".p/"); partial {
		v, ok := ParseDecimal(w)
		if !ok || v == 0 || v >= FullTileWidth {
			return bad("partial width is not a decimal in 1-255")
		}
		rest, width = n, v
	}
	groups := strings.Split(rest, "/")
	for i, g := range groups {
		last := i == len(groups)-1
		if !last {
			var ok bool
			if g, ok = strings.CutPrefix(g, "x"); !ok {
				return bad(`index group without "x" before the last`)
			}
			if i == 0 && g == "000" {
				return bad("index has a leading zero group")
			}
		}
		if len(g) != 3 || !isDigits(g) {
			return bad("index group is not 3 digits")
		}
		d, _ := strconv.ParseUint(g, 10, 64)
		if index > (math.MaxUint64-d)/1000 {
			return bad("index overflows 64 bits")
		}
		index = index*1000 + d
	}
	return level, index, width, nil
}

// ParseDecimal parses canonical decimal: digits only, no leading zero
// unless the number is 0. Tile paths are read so, and the service reads
// every index and size a ledger route takes so: one spelling each.
func ParseDecimal(s string) (uint64, bool) {
	if s == "" || !isDigits(s) || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
