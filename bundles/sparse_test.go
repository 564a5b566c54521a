package bundles

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"testing"
)

// rawTarHeader is a ustar header written by hand: archive/tar's Writer
// will not write the GNU sparse records an attacker would.
func rawTarHeader(name string, typ byte, size int64) []byte {
	h := make([]byte, 512)
	copy(h[0:100], name)
	copy(h[100:108], "0000644\x00")
	copy(h[108:116], "0000000\x00")
	copy(h[116:124], "0000000\x00")
	copy(h[124:136], fmt.Sprintf("%011o\x00", size))
	copy(h[136:148], "00000000000\x00")
	h[156] = typ
	copy(h[257:263], "ustar\x00")
	copy(h[263:265], "00")
	for i := 148; i < 156; i++ {
		h[i] = ' '
	}
	var sum int64
	for _, b := range h {
		sum += int64(b)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return h
}

// paxRecord is one "len key=value\n" PAX record.
func paxRecord(k, v string) string {
	s := " " + k + "=" + v + "\n"
	for n := len(s); ; {
		t := fmt.Sprintf("%d%s", n, s)
		if len(t) == n {
			return t
		}
		n = len(t)
	}
}

func padBlock(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

// sparseBundle is a .manifest and n GNU 1.0 sparse files (PAX), each all
// hole, realsize bytes long: a few hundred bytes of archive per file that
// archive/tar reads as realsize zeros.
func sparseBundle(t *testing.T, n int, realsize int64) []byte {
	t.Helper()
	manifest := []byte(`{"revision":"r1","roots":["tenant"]}`)
	tarb := append(rawTarHeader(".manifest", '0', int64(len(manifest))), padBlock(manifest)...)
	for i := range n {
		name := fmt.Sprintf("tenant/f%d.rego", i)
		pax := paxRecord("GNU.sparse.major", "1") + paxRecord("GNU.sparse.minor", "0") +
			paxRecord("GNU.sparse.name", name) + paxRecord("GNU.sparse.realsize", fmt.Sprint(realsize))
		tarb = append(tarb, rawTarHeader("PaxHeaders/"+name, 'x', int64(len(pax)))...)
		tarb = append(tarb, padBlock([]byte(pax))...)
		sparseMap := padBlock([]byte("0\n")) // no data fragments: all hole
		tarb = append(tarb, rawTarHeader(name, '0', int64(len(sparseMap)))...)
		tarb = append(tarb, sparseMap...)
	}
	tarb = append(tarb, make([]byte, 1024)...)
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	if _, err := gz.Write(tarb); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A sparse file is refused, small or not: its bytes are not in the
// stream, so the decompression budget would not count them. Forty of them
// in a 1.3 KB upload claimed 600 MiB, past a 16 MiB limit.
func TestReadRefusesSparseFiles(t *testing.T) {
	if _, err := readArchive(sparseBundle(t, 1, 10), DefaultLimits()); !errors.Is(err, ErrNonRegularEntry) {
		t.Errorf("a 10-byte sparse file: %v, want ErrNonRegularEntry", err)
	}
	bomb := sparseBundle(t, 40, 15<<20)
	files, err := readArchive(bomb, DefaultLimits())
	if err == nil || !errors.Is(err, ErrNonRegularEntry) && !errors.Is(err, ErrDecompressionLimit) {
		t.Fatalf("%d-byte archive of 40 sparse files of 15 MiB: %d files, %v", len(bomb), len(files), err)
	}
}
