package bundles

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"strings"
	"time"
)

// PackFS builds the tar.gz of a policy directory, so that a directory goes
// through the same Read and Compile as an uploaded bundle (`agentsigna
// policy check DIR`, the demo seed).
//
// The directory is taken the way OPA reads a directory bundle (`opa run
// --bundle DIR`, `opa build -b DIR`): .manifest and .signatures.json at its
// root, every *.rego file (tests included, as opa build does) and every
// data.json/data.yaml file, at their paths; everything else (README.md,
// other JSON files, .git and other dot-directories) is left out. Unlike opa
// build, files are packed as they are (data files are not merged into one
// /data.json), so a .signatures.json made for the directory (`opa sign`)
// still verifies. A symbolic link is refused (ErrLinkEntry) rather than
// followed. The archive is deterministic: sorted paths, fixed modes and
// times.
func PackFS(fsys fs.FS, limits Limits) ([]byte, error) {
	if limits == (Limits{}) {
		limits = DefaultLimits()
	}
	if err := limits.validate(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	var total int64
	entries := 0
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		switch {
		case d.IsDir():
			if p != "." && strings.HasPrefix(name, ".") {
				return fs.SkipDir
			}
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			return fmt.Errorf("%w: %s is a symbolic link", ErrLinkEntry, p)
		case !d.Type().IsRegular():
			return nil
		}
		keep := strings.HasSuffix(name, ".rego") || name == dataFile || name == "data.yaml" || name == "data.yml" ||
			(p == name && (name == manifestFile || name == signaturesFile))
		if !keep {
			return nil
		}
		entries++
		if entries > limits.MaxEntries {
			return fmt.Errorf("%w: more than %d", ErrTooManyFiles, limits.MaxEntries)
		}
		if len(p)+1 > limits.MaxPathLength {
			return fmt.Errorf("%w: %s", ErrPathTooLong, p)
		}
		// Read no further than the budget left, plus a byte to tell it
		// was passed: a 3 GiB sparse file in the directory is refused
		// after 16 MiB read, not after all of it held in memory (found by
		// review).
		content, err := readAtMost(fsys, p, limits.MaxDecompressedBytes-total)
		if err != nil {
			return err
		}
		if total += int64(len(content)); total > limits.MaxDecompressedBytes {
			return fmt.Errorf("%w: more than %d bytes", ErrDecompressionLimit, limits.MaxDecompressedBytes)
		}
		hdr := &tar.Header{
			// A leading "/", as opa build writes entries and signs paths.
			Name:     "/" + path.Clean(p),
			Mode:     0o644,
			Size:     int64(len(content)),
			ModTime:  time.Unix(0, 0),
			Typeflag: tar.TypeReg,
			Format:   tar.FormatPAX,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err = tw.Write(content)
		return err
	})
	if err != nil {
		var rej *rejection
		if errors.As(err, &rej) {
			return nil, err
		}
		return nil, fmt.Errorf("bundles: reading the policy directory: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// readAtMost reads the file at p, or its first max+1 bytes when it is
// longer.
func readAtMost(fsys fs.FS, p string, max int64) ([]byte, error) {
	f, err := fsys.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if max == math.MaxInt64 {
		return io.ReadAll(f)
	}
	return io.ReadAll(io.LimitReader(f, max+1))
}
