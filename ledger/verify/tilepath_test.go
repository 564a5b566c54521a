package verify

import (
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/transparency-dev/tessera/api/layout"
)

type tilePathCase struct {
	path         string
	ok           bool
	level        int
	index, width uint64
}

// tilePathCases reads testdata/tilepaths.txt.
func tilePathCases(t testing.TB) []tilePathCase {
	t.Helper()
	b, err := os.ReadFile("testdata/tilepaths.txt")
	if err != nil {
		t.Fatal(err)
	}
	var cases []tilePathCase
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "bad "):
			cases = append(cases, tilePathCase{path: strings.TrimPrefix(line, "bad ")})
		case strings.HasPrefix(line, "ok "):
			f := strings.Fields(line)
			level, err1 := strconv.Atoi(f[2])
			index, err2 := strconv.ParseUint(f[3], 10, 64)
			width, err3 := strconv.ParseUint(f[4], 10, 64)
			if len(f) != 5 || err1 != nil || err2 != nil || err3 != nil {
				t.Fatalf("bad line %q", line)
			}
			cases = append(cases, tilePathCase{path: f[1], ok: true, level: level, index: index, width: width})
		default:
			t.Fatalf("bad line %q", line)
		}
	}
	return cases
}

func TestParseTilePath(t *testing.T) {
	for _, tc := range tilePathCases(t) {
		t.Run(tc.path, func(t *testing.T) {
			level, index, width, err := ParseTilePath(tc.path)
			if !tc.ok {
				if !errors.Is(err, ErrInvalidTilePath) {
					t.Fatalf("ParseTilePath = %d %d %d, %v; want an error", level, index, width, err)
				}
				return
			}
			if err != nil || level != tc.level || index != tc.index || width != tc.width {
				t.Fatalf("ParseTilePath = %d %d %d, %v; want %d %d %d", level, index, width, err, tc.level, tc.index, tc.width)
			}
			var again string
			if level < 0 {
				again = EntriesPath(index, width)
			} else {
				again = TilePath(uint64(level), index, width)
			}
			if again != tc.path {
				t.Fatalf("written back as %q", again)
			}
		})
	}
}

// Our paths are tessera's (and so those of any c2sp.org/tlog-tiles client).
func TestTilePathMatchesTessera(t *testing.T) {
	for _, index := range []uint64{0, 1, 999, 1000, 1001, 999999, 1000000, 1234067, math.MaxUint64} {
		for _, width := range []uint64{1, 17, 255, 256} {
			p := uint8(width % 256)
			for _, level := range []uint64{0, 1, 5, 63} {
				if got, want := TilePath(level, index, width), layout.TilePath(level, index, p); got != want {
					t.Errorf("TilePath(%d, %d, %d) = %q, tessera %q", level, index, width, got, want)
				}
			}
			if got, want := EntriesPath(index, width), layout.EntriesPath(index, p); got != want {
				t.Errorf("EntriesPath(%d, %d) = %q, tessera %q", index, width, got, want)
			}
		}
	}
}

func TestTilePathPanics(t *testing.T) {
	for _, f := range []func(){
		func() { TilePath(64, 0, 256) },
		func() { TilePath(0, 0, 0) },
		func() { TilePath(0, 0, 257) },
		func() { EntriesPath(0, 0) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		}()
	}
}
