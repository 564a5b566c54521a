//go:build unix

package secrets_test

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/secrets"
)

// A FIFO given as the master key file is refused at once: opening it
// plainly waits for a writer, and serve, which has its signal handler by
// then, could only be killed.
func TestLoadMasterKeyRefusesAFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, _, err := secrets.LoadMasterKey(secrets.LoadOptions{KeyFile: fifo}); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, secrets.ErrInsecureKeyFile) {
			t.Fatalf("err = %v, want ErrInsecureKeyFile", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("loading the key from a FIFO blocked")
	}
}
