// Package osfile opens the files an operator names on the command line:
// opened without blocking on a FIFO, regular files only (or, to read, a
// pipe), and read within a bound. A file that is not one says so in one
// line, rather than hanging the process or exhausting its memory. A pipe
// is read as cat reads it: until its writer closes it (a writer that
// never writes is waited for).
package osfile

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrNotRegular: the path names a FIFO, a device, a directory or a
// socket, not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// OpenRegular opens path for reading if it is a regular file (after
// symlinks). The check is made on the opened file, so the file checked is
// the file read; the open itself does not wait for a FIFO's writer.
func OpenRegular(path string) (*os.File, error) {
	f, _, err := open(path, false)
	return f, err
}

// ReadAtMost reads the file at path, of at most max bytes: a regular file,
// or a pipe (`--jwks <(curl …)`, /dev/stdin at the end of a pipeline),
// which is read until its writer closes it, or until max; a pipe without
// a writer reads as empty, at once. Anything else (a device, a directory,
// a socket) is ErrNotRegular.
func ReadAtMost(path string, max int64) ([]byte, error) {
	f, pipe, err := open(path, true)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if pipe {
		// Reads wait for the writer, as cat's do: Go does not poll a
		// FIFO on every platform (not on darwin), and a non-blocking
		// read there fails with EAGAIN before the writer has written.
		// Fd puts the descriptor in blocking mode.
		_ = f.Fd()
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b, nil
}

// open opens path without blocking and keeps it only if the opened file is
// a regular file, or a pipe when pipes is set (pipe says which).
func open(path string, pipes bool) (f *os.File, pipe bool, err error) {
	if f, err = openNonBlocking(path); err != nil {
		return nil, false, err
	}
	fi, err := f.Stat()
	if err == nil {
		pipe = fi.Mode()&os.ModeNamedPipe != 0
		if !fi.Mode().IsRegular() && !(pipes && pipe) {
			err = fmt.Errorf("%s: %w", path, ErrNotRegular)
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, false, err
	}
	return f, pipe, nil
}
