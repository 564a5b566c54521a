package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// demoCredentialsPath refuses, before anything is seeded, a demo path that
// is not a directory of ours alone: a file or a symlink where the
// directory goes. (A credentials file already there: the e2e test.)
func TestDemoCredentialsPathRefuses(t *testing.T) {
	t.Run("a file where the directory goes", func(t *testing.T) {
		data := t.TempDir()
		if err := os.WriteFile(filepath.Join(data, "demo"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := demoCredentialsPath(data); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Fatalf("err = %v, want 'not a directory'", err)
		}
	})
	t.Run("a symlink to a directory elsewhere", func(t *testing.T) {
		data, elsewhere := t.TempDir(), t.TempDir()
		if err := os.Symlink(elsewhere, filepath.Join(data, "demo")); err != nil {
			t.Fatal(err)
		}
		if _, err := demoCredentialsPath(data); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Fatalf("err = %v, want 'not a directory'", err)
		}
	})
	t.Run("a directory of its own", func(t *testing.T) {
		data := t.TempDir()
		path, err := demoCredentialsPath(data)
		if err != nil || path != filepath.Join(data, "demo", "credentials.json") {
			t.Fatalf("path %q, %v", path, err)
		}
		if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("demo directory: %v, %v; want 0700", fi, err)
		}
	})
}
