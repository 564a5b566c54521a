//go:build unix

package secrets_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/secrets"
)

// A master key file another user owns is refused, given by flag or found
// in the data dir, directly or behind a symbolic link: its owner knows the
// key, and a root service would otherwise seal everything under a key
// planted in a data dir others may write in (found by review).
func TestMasterKeyOwnedByAnotherUserIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a file to another user needs root (chown); CI runs as root")
	}
	const nobody = 65534
	dir := t.TempDir()
	planted := filepath.Join(t.TempDir(), "planted.key")
	if err := os.WriteFile(planted, []byte(testKeyB64+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The control: owned by this process's user, it loads.
	if _, _, err := secrets.LoadMasterKey(secrets.LoadOptions{KeyFile: planted}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(planted, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(planted, filepath.Join(dir, secrets.DefaultKeyFileName)); err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string]secrets.LoadOptions{
		"--master-key-file":               {KeyFile: planted},
		"a data dir's master.key, linked": {DataDir: dir},
	} {
		_, _, err := secrets.LoadMasterKey(opts)
		if !errors.Is(err, secrets.ErrInsecureKeyFile) || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Errorf("%s: err = %v, want ErrInsecureKeyFile naming the owner", name, err)
		}
		if err != nil {
			assertNoKeyMaterial(t, err.Error(), testKeyB64)
		}
	}
}
