//go:build unix

package osfile

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadAtMost(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("twelve bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadAtMost(small, 12); err != nil || string(b) != "twelve bytes" {
		t.Fatalf("a file at the bound: %q, %v", b, err)
	}
	if _, err := ReadAtMost(small, 11); err == nil || !strings.Contains(err.Error(), "larger than 11 bytes") {
		t.Fatalf("a file past the bound: %v", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(small, link); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadAtMost(link, 12); err != nil || string(b) != "twelve bytes" {
		t.Fatalf("a symlink to a regular file: %q, %v", b, err)
	}
	if _, err := ReadAtMost(filepath.Join(dir, "missing"), 12); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing file: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// A pipe is read to its end, within the bound; one without a writer
	// reads as empty at once.
	done := make(chan error, 1)
	go func() {
		b, err := ReadAtMost(fifo, 1<<20)
		if err == nil && len(b) != 0 {
			err = errors.New("read " + string(b))
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("a FIFO without a writer: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a FIFO without a writer: the read blocked")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() { w.Write([]byte("piped")); w.Close() }()
	if b, err := ReadAtMost("/dev/fd/"+strconv.Itoa(int(r.Fd())), 5); err != nil || string(b) != "piped" {
		t.Fatalf("a pipe with a writer: %q, %v", b, err)
	}
	r.Close()
	if _, err := OpenRegular(fifo); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("OpenRegular of a FIFO: %v, want ErrNotRegular", err)
	}
	for name, path := range map[string]string{"a directory": dir, "a device": "/dev/zero"} {
		done := make(chan error, 1)
		go func() { _, err := ReadAtMost(path, 1<<20); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotRegular) {
				t.Errorf("%s: %v, want ErrNotRegular", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the read blocked", name)
		}
	}
}
