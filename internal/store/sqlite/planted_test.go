//go:build unix

package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// In a data dir another user may write in, what that user plants is
// refused rather than used (found by review): a link in place of a
// database, dangling or not, a link in place of tenants/, and a database,
// WAL or index that user owns. Nothing is created or tightened through a
// link.
func TestPlantedFilesAreRefused(t *testing.T) {
	ctx := context.Background()
	// newDir is a data dir holding a store's files, closed.
	newDir := func(t *testing.T) string {
		dir := t.TempDir()
		s, err := Open(ctx, Config{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	refused := func(t *testing.T, dir, want string) {
		t.Helper()
		s, err := Open(ctx, Config{DataDir: dir})
		if err == nil {
			s.Close()
			t.Fatalf("Open succeeded, want %q", want)
		}
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("Open: %v, want %q", err, want)
		}
	}
	t.Run("platform.db a link to a file elsewhere", func(t *testing.T) {
		dir, elsewhere := t.TempDir(), filepath.Join(t.TempDir(), "p.db")
		if err := os.WriteFile(elsewhere, nil, 0o666); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(elsewhere, filepath.Join(dir, "platform.db")); err != nil {
			t.Fatal(err)
		}
		refused(t, dir, "platform.db is not a regular file")
		if fi, err := os.Stat(elsewhere); err != nil || fi.Size() != 0 || fi.Mode().Perm() != 0o666&^umask(t) {
			t.Fatalf("the link's target was used: %v, %v", fi, err)
		}
	})
	t.Run("platform.db a dangling link", func(t *testing.T) {
		dir, elsewhere := t.TempDir(), filepath.Join(t.TempDir(), "p.db")
		if err := os.Symlink(elsewhere, filepath.Join(dir, "platform.db")); err != nil {
			t.Fatal(err)
		}
		refused(t, dir, "platform.db is not a regular file")
		if _, err := os.Lstat(elsewhere); !os.IsNotExist(err) {
			t.Fatalf("a file was created through the link: %v", err)
		}
	})
	t.Run("tenants a link to a directory elsewhere", func(t *testing.T) {
		dir, elsewhere := t.TempDir(), t.TempDir()
		if err := os.Chmod(elsewhere, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(elsewhere, filepath.Join(dir, "tenants")); err != nil {
			t.Fatal(err)
		}
		refused(t, dir, "tenants is not a directory")
		if fi, err := os.Stat(elsewhere); err != nil || fi.Mode().Perm() != 0o755 {
			t.Fatalf("the link's target was changed: %v, %v", fi.Mode(), err)
		}
	})
	if os.Geteuid() != 0 {
		t.Log("files of another user need root (chown) to make; CI runs as root: not tried")
		return
	}
	for name, want := range map[string]string{
		"platform.db":     "platform.db is owned by another user",
		"platform.db-wal": "platform.db-wal is owned by another user",
		"tenants":         "tenants directory is owned by another user",
	} {
		t.Run(name+" another user's", func(t *testing.T) {
			dir := newDir(t)
			path := filepath.Join(dir, name)
			if _, err := os.Stat(path); os.IsNotExist(err) {
				if err := os.WriteFile(path, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chown(path, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			refused(t, dir, want)
		})
	}
}

func umask(t *testing.T) os.FileMode {
	probe := filepath.Join(t.TempDir(), "probe")
	if err := os.WriteFile(probe, nil, 0o777); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(probe)
	if err != nil {
		t.Fatal(err)
	}
	return 0o777 &^ fi.Mode().Perm()
}
